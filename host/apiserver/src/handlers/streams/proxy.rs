//! Requests handed on to a node agent over HTTPS, its serving certificate verified against the
//! cluster CA for the address dialled: plain ones streamed back, upgraded ones (WebSocket,
//! SPDY) spliced byte for byte once both sides switched protocols.

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::{HeaderMap, StatusCode, header};
use hyper_util::rt::TokioIo;

use super::Agent;
use crate::error::ApiError;

/// Headers that belong to one hop, or that the proxy sets itself.
fn hop_by_hop(name: &header::HeaderName) -> bool {
    [
        header::HOST,
        header::AUTHORIZATION,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
    ]
    .contains(name)
}

/// The TLS settings for node agents: HTTP/1.1 (upgrades); the agent's serving certificate must
/// chain to the cluster CA `ca_pem` (and be valid for the address dialled, which the
/// connection checks); the apiserver's client certificate and key `client_pem`, if any, are
/// presented.
fn agent_tls(ca_pem: &str, client_pem: Option<&str>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(der.map_err(|e| format!("the cluster CA: {e}"))?)
            .map_err(|e| format!("the cluster CA: {e}"))?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let mut config = match client_pem {
        Some(pem) => {
            let unreadable =
                |e: &dyn std::fmt::Display| format!("the kubelet client certificate: {e}");
            let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| unreadable(&e))?;
            let key = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| unreadable(&e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| unreadable(&e))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A client of `agent` that verifies its serving certificate and presents the apiserver's
/// client certificate. Without a cluster CA no agent can be verified, and none is reached.
fn client(agent: &Agent) -> Result<reqwest::Client, ApiError> {
    let failed = |e: String| {
        ApiError::Internal(format!(
            "the client for the agent of node {}: {e}",
            agent.node
        ))
    };
    let ca_pem = agent
        .ca_pem
        .as_deref()
        .ok_or_else(|| failed("no cluster CA to verify its serving certificate".into()))?;
    let tls = agent_tls(ca_pem, agent.client_pem.as_deref()).map_err(failed)?;
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .http1_only()
        .build()
        .map_err(|e| failed(e.to_string()))
}

/// The rustls error a request failed with, if it did: where hyper and reqwest keep it, inside
/// an I/O error (inside another).
fn tls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = error.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    let io = error.downcast_ref::<std::io::Error>()?;
    io.get_ref().and_then(|inner| tls_error(inner))
}

/// Why a request to the agent failed, in Go's words (`Get "URL": tls: failed to verify
/// certificate ...`), naming the node.
fn unreachable(
    agent: &Agent,
    method: &http::Method,
    url: &str,
    error: &reqwest::Error,
) -> ApiError {
    let method = method.as_str();
    let mut op = method.get(..1).unwrap_or_default().to_string();
    op.push_str(&method.get(1..).unwrap_or_default().to_ascii_lowercase());
    let mut causes = Vec::new();
    // reqwest's own message repeats the URL: its causes say more.
    let mut next: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(e) = next {
        match tls_error(e) {
            Some(tls @ rustls::Error::InvalidCertificate(_)) => {
                return ApiError::Internal(format!(
                    "{op} \"{url}\": tls: failed to verify the serving certificate of node {}: {tls}",
                    agent.node
                ));
            }
            Some(tls) => {
                return ApiError::Internal(format!(
                    "{op} \"{url}\": tls: the handshake with the agent of node {} failed: {tls} \
                     (an agent refuses every handshake until its serving certificate is issued: \
                     see kubectl get csr)",
                    agent.node
                ));
            }
            None => {}
        }
        causes.push(e.to_string());
        next = e.source();
    }
    if causes.is_empty() {
        causes.push(error.to_string());
    }
    ApiError::Internal(format!(
        "{op} \"{url}\": reaching the agent of node {}: {}",
        agent.node,
        causes.join(": ")
    ))
}

async fn send(
    agent: &Agent,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, ApiError> {
    let (client, request) = request.build_split();
    let request = request.map_err(|e| ApiError::Internal(e.to_string()))?;
    let (method, url) = (request.method().clone(), request.url().to_string());
    client
        .execute(request)
        .await
        .map_err(|e| unreachable(agent, &method, &url, &e))
}

/// The agent's answer as ours: its status, content type and body, streamed.
fn pass_on(response: reqwest::Response) -> Result<Response, ApiError> {
    let mut reply = Response::builder().status(response.status());
    if let Some(content_type) = response.headers().get(header::CONTENT_TYPE) {
        reply = reply.header(header::CONTENT_TYPE, content_type);
    }
    reply
        .body(Body::from_stream(response.bytes_stream()))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// `GET path` on the agent, its answer streamed back.
pub async fn get(agent: &Agent, path: &str) -> Result<Response, ApiError> {
    let response = send(agent, client(agent)?.get(format!("{}{path}", agent.base))).await?;
    pass_on(response)
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("upgrade"))
}

/// Hands an upgrade request on to the agent; when it switches protocols, so do we, and the two
/// connections are joined. Anything else it answers is passed back.
pub async fn upgrade(
    agent: &Agent,
    path: &str,
    mut request: Request,
) -> Result<Response, ApiError> {
    if !is_upgrade(request.headers()) {
        return Err(ApiError::BadRequest("Upgrade request required".into()));
    }
    let ours = hyper::upgrade::on(&mut request);
    let mut forward =
        client(agent)?.request(request.method().clone(), format!("{}{path}", agent.base));
    for (name, value) in request.headers() {
        if !hop_by_hop(name) {
            forward = forward.header(name, value);
        }
    }
    let response = send(agent, forward).await?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return pass_on(response);
    }
    let mut reply = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (name, value) in response.headers() {
        reply = reply.header(name, value);
    }
    let theirs = response.upgrade();
    tokio::spawn(async move {
        match tokio::join!(ours, theirs) {
            (Ok(ours), Ok(mut theirs)) => {
                let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(ours), &mut theirs).await;
            }
            (Err(e), _) => tracing::debug!(error = %e, "the client's upgrade failed"),
            (_, Err(e)) => tracing::debug!(error = %e, "the node agent's upgrade failed"),
        }
    });
    reply
        .body(Body::empty())
        .map_err(|e| ApiError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    fn new_ca(name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        (params.self_signed(&key).expect("ca"), key)
    }

    /// A serving certificate for `ip`, from `ca` or (with none) self-signed, and its key.
    fn serving(
        ca: Option<&(rcgen::Certificate, rcgen::KeyPair)>,
        ip: &str,
    ) -> (rcgen::Certificate, rcgen::KeyPair) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress(ip.parse().expect("ip")));
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = match ca {
            Some((ca, ca_key)) => params.signed_by(&key, ca, ca_key),
            None => params.self_signed(&key),
        };
        (cert.expect("cert"), key)
    }

    /// A server with no certificate to present, as an agent before its own is issued.
    #[derive(Debug)]
    struct NoCertificate;

    impl rustls::server::ResolvesServerCert for NoCertificate {
        fn resolve(
            &self,
            _: rustls::server::ClientHello<'_>,
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            None
        }
    }

    /// An agent on a loopback port that presents `identity` (or nothing) and answers every
    /// request `ok`.
    async fn fake_agent(identity: Option<(rcgen::Certificate, rcgen::KeyPair)>) -> u16 {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth();
        let config = match identity {
            Some((cert, key)) => {
                let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
                builder
                    .with_single_cert(vec![cert.der().clone()], key)
                    .expect("config")
            }
            None => builder.with_cert_resolver(Arc::new(NoCertificate)),
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    continue;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                let _ = tls.write_all(reply).await;
                let _ = tls.shutdown().await;
            }
        });
        port
    }

    fn agent(port: u16, ca: Option<&rcgen::Certificate>) -> Agent {
        Agent {
            node: "n1".into(),
            base: format!("https://127.0.0.1:{port}"),
            ca_pem: ca.map(rcgen::Certificate::pem),
            client_pem: None,
        }
    }

    const PATH: &str = "/containerLogs/default/p/c";

    /// The message of the error `get` fails with.
    async fn refusal(agent: &Agent) -> String {
        match get(agent, PATH).await {
            Err(ApiError::Internal(message)) => message,
            Err(other) => panic!("not an internal error: {other}"),
            Ok(response) => panic!("reached: {}", response.status()),
        }
    }

    #[tokio::test]
    async fn only_an_agent_certified_by_the_cluster_ca_for_its_address_is_reached() {
        let ca = new_ca("cluster-ca");
        let port = fake_agent(Some(serving(Some(&ca), "127.0.0.1"))).await;
        let response = get(&agent(port, Some(&ca.0)), PATH).await.expect("reached");
        assert_eq!(response.status(), StatusCode::OK);

        let verify =
            "tls: failed to verify the serving certificate of node n1: invalid peer certificate";
        for (identity, why) in [
            (serving(None, "127.0.0.1"), "UnknownIssuer"),
            (
                serving(Some(&new_ca("another-ca")), "127.0.0.1"),
                "UnknownIssuer",
            ),
            (serving(Some(&ca), "127.0.0.2"), "not valid for name"),
        ] {
            let port = fake_agent(Some(identity)).await;
            let message = refusal(&agent(port, Some(&ca.0))).await;
            let url = format!("Get \"https://127.0.0.1:{port}{PATH}\": ");
            assert!(message.starts_with(&url), "{message}");
            assert!(
                message.contains(verify) && message.contains(why),
                "{message}"
            );
        }

        let port_without = fake_agent(None).await;
        let message = refusal(&agent(port_without, Some(&ca.0))).await;
        assert!(
            message.contains("tls: the handshake with the agent of node n1 failed:")
                && message.contains("until its serving certificate is issued"),
            "{message}"
        );

        let message = refusal(&agent(port, None)).await;
        assert!(message.contains("no cluster CA"), "{message}");
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let message = refusal(&agent(closed, Some(&ca.0))).await;
        assert!(
            message.contains("reaching the agent of node n1:") && !message.contains("tls:"),
            "{message}"
        );
    }

    #[test]
    fn the_clients_own_certificate_must_be_readable() {
        let (ca, _) = new_ca("cluster-ca");
        assert!(agent_tls(&ca.pem(), None).is_ok());
        assert!(agent_tls(&ca.pem(), Some("no PEM here")).is_err());
        assert!(
            agent_tls(
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                None
            )
            .is_err()
        );
    }
}
