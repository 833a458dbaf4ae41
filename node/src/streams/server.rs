//! Serving the agent's API over HTTPS (HTTP/1.1 with upgrades), with the serving certificate
//! the cluster CA issued the node (none yet: no handshake). Only the apiserver is served: a
//! client certificate of the cluster CA whose subject is `CN=kube-apiserver-kubelet-client`
//! and nothing else.

use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::{Streams, router};
use crate::serving::Resolver;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("listening on port {port} for the agent API: {source}")]
    Bind { port: u16, source: std::io::Error },
    #[error("the agent's TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("the cluster CA, to verify the apiserver's client certificate: {0}")]
    Ca(String),
}

/// The user of the apiserver's client certificate for node agents (kubeadm's
/// `apiserver-kubelet-client`): the only client the agent serves.
pub const APISERVER_USER: &str = "kube-apiserver-kubelet-client";

/// The DER contents of an X.509 Name (without its outer SEQUENCE) that is one common name,
/// UTF8String, of fewer than 100 bytes: how the cluster CA's certificates name their subject.
fn common_name_only(name: &str) -> Vec<u8> {
    let len = |n: usize| u8::try_from(n).unwrap_or(u8::MAX);
    let value = [&[0x0c, len(name.len())][..], name.as_bytes()].concat();
    let attribute = [
        &[0x30, len(value.len() + 5), 0x06, 0x03, 0x55, 0x04, 0x03][..],
        &value,
    ]
    .concat();
    [&[0x31, len(attribute.len())][..], &attribute].concat()
}

/// Whether the (CA-verified) DER certificate `der` is the apiserver's.
fn is_apiserver(der: &rustls::pki_types::CertificateDer<'_>) -> bool {
    webpki::EndEntityCert::try_from(der)
        .is_ok_and(|cert| cert.subject() == common_name_only(APISERVER_USER).as_slice())
}

/// Whether the client of a finished handshake is the apiserver.
fn admitted(connection: &rustls::ServerConnection) -> bool {
    connection
        .peer_certificates()
        .and_then(<[_]>::first)
        .is_some_and(is_apiserver)
}

/// Listens on `port` on every address; 0, or a port already taken (another agent on this
/// machine), gets a free one: the Node publishes whichever it is.
pub async fn bind(port: u16) -> Result<TcpListener, ServeError> {
    match TcpListener::bind(("0.0.0.0", port)).await {
        Err(e) if port != 0 && e.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::warn!(
                port,
                "the agent API's port is taken; listening on a free one"
            );
            TcpListener::bind(("0.0.0.0", 0))
                .await
                .map_err(|source| ServeError::Bind { port: 0, source })
        }
        bound => bound.map_err(|source| ServeError::Bind { port, source }),
    }
}

/// The serving certificate `resolver` holds, served as HTTP/1.1 only (upgrades), to clients with
/// a certificate of the cluster CA `ca_pem`.
fn tls_config(
    resolver: Arc<Resolver>,
    ca_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, ServeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for der in rustls::pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(der.map_err(|e| ServeError::Ca(e.to_string()))?)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| ServeError::Ca(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves the API on `listener` to the apiserver (its client certificate verified against the
/// cluster CA `ca_pem`) with the certificate `resolver` holds, until it fails.
pub async fn serve(
    listener: TcpListener,
    streams: Arc<Streams>,
    resolver: Arc<Resolver>,
    ca_pem: &str,
) -> Result<(), ServeError> {
    let acceptor = TlsAcceptor::from(tls_config(resolver, ca_pem)?);
    let app = router(streams);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accepting an agent API connection");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "agent API TLS handshake failed");
                    return;
                }
            };
            if !admitted(tls.get_ref().1) {
                tracing::warn!(%peer, "refused an agent API client that is not the apiserver");
                return;
            }
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "agent API connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(
        subject: &[(rcgen::DnType, &str)],
    ) -> rustls::pki_types::CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (kind, value) in subject {
            params.distinguished_name.push(kind.clone(), *value);
        }
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").der().clone()
    }

    /// A handshake with an agent of the CA `ca_pem` serving what `resolver` holds, by a client
    /// that verifies it for `10.0.0.2` and presents `identity`: `None` when it fails, else
    /// whether the agent admits the client.
    async fn handshake(
        ca_pem: &str,
        resolver: &Arc<Resolver>,
        identity: Option<(rcgen::Certificate, rcgen::KeyPair)>,
    ) -> Option<bool> {
        use rustls::pki_types::pem::PemObject as _;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        let ca = rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes());
        roots.add(ca.expect("the CA")).expect("a root");
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let client = match identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    vec![cert.der().clone()],
                    rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
                )
                .expect("client cert"),
            None => builder.with_no_client_auth(),
        };
        let config = tls_config(resolver.clone(), ca_pem).expect("tls");
        let acceptor = TlsAcceptor::from(config);
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let (near, far) = tokio::io::duplex(64 * 1024);
        let name = rustls::pki_types::ServerName::try_from("10.0.0.2").expect("name");
        let (server, client) = tokio::join!(acceptor.accept(far), connector.connect(name, near));
        // The server verifies the client's certificate after the client's last flight.
        drop(client);
        server.ok().map(|tls| admitted(tls.get_ref().1))
    }

    fn issued(
        ca: &rcgen::Certificate,
        ca_key: &rcgen::KeyPair,
        cn: &str,
    ) -> (rcgen::Certificate, rcgen::KeyPair) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate().expect("key");
        (params.signed_by(&key, ca, ca_key).expect("cert"), key)
    }

    #[tokio::test]
    async fn the_agent_admits_the_apiservers_certificate_of_its_ca_only() {
        let (ca, ca_key) = crate::bootstrap::tests::new_ca();
        let resolver = Arc::new(Resolver::default());
        let purpose = rcgen::ExtendedKeyUsagePurpose::ServerAuth;
        let during = (0, 2_000_000_000);
        let (cert, key) =
            crate::bootstrap::tests::issue(&ca, &ca_key, purpose, &["10.0.0.2"], during);
        let apiserver = || issued(&ca, &ca_key, APISERVER_USER);
        // No serving certificate yet: no handshake, even for the apiserver.
        assert_eq!(
            handshake(&ca.pem(), &resolver, Some(apiserver())).await,
            None
        );
        resolver.set(&cert, &key).expect("serving certificate");
        assert_eq!(
            handshake(&ca.pem(), &resolver, Some(apiserver())).await,
            Some(true)
        );
        let admin = issued(&ca, &ca_key, "kubernetes-admin");
        assert_eq!(
            handshake(&ca.pem(), &resolver, Some(admin)).await,
            Some(false)
        );
        assert_eq!(handshake(&ca.pem(), &resolver, None).await, None);
        let (other, other_key) = crate::bootstrap::tests::new_ca();
        let forged = issued(&other, &other_key, APISERVER_USER);
        assert_eq!(handshake(&ca.pem(), &resolver, Some(forged)).await, None);
        assert!(tls_config(resolver, "").is_err());
    }

    #[test]
    fn only_the_apiservers_subject_is_served() {
        use rcgen::DnType::{CommonName, OrganizationName};
        assert!(is_apiserver(&certificate(&[(CommonName, APISERVER_USER)])));
        for other in [
            vec![(CommonName, "kubernetes-admin")],
            vec![(CommonName, "system:node:n1")],
            vec![
                (CommonName, APISERVER_USER),
                (OrganizationName, "system:masters"),
            ],
            vec![(OrganizationName, APISERVER_USER)],
            vec![],
        ] {
            assert!(!is_apiserver(&certificate(&other)), "{other:?}");
        }
        assert!(!is_apiserver(&rustls::pki_types::CertificateDer::from(
            vec![0x30, 0x00]
        )));
    }
}
