//! The agent's serving certificate, as the kubelet's `serverTLSBootstrap`: a key made on the
//! node, a `kubernetes.io/kubelet-serving` request for the Node's addresses made as the node,
//! kept 0600 in the node directory, presented through a resolver swapped at renewal.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;
use serde_json::Value;

use crate::api::Api;
use crate::bootstrap::{self, BootstrapError};
use crate::rotation::{self, RotationError};

#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    #[error(transparent)]
    Rotation(#[from] RotationError),
    #[error("the serving certificate and key: {0}")]
    Unusable(String),
    #[error("the serving certificate does not cover {0}")]
    Uncovered(String),
    #[error("the serving certificate expired")]
    Expired,
    #[error("the Node reports no address for a serving certificate")]
    NoAddress,
}

/// Where, under the node directory, the certificate and its key are kept (PEM, one file, 0600),
/// as the kubelet's `pki/kubelet-server-current.pem`.
pub const FILE: &str = "pki/kubelet-server-current.pem";

/// The serving certificate the agent's TLS server presents, swapped at runtime. Until the first
/// is issued there is none, and handshakes fail (as the kubelet's do before it has one).
#[derive(Debug, Default)]
pub struct Resolver(ArcSwapOption<CertifiedKey>);

impl rustls::server::ResolvesServerCert for Resolver {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.load_full()
    }
}

impl Resolver {
    /// Presents the certificate (and chain) of the PEM `cert_pem` with the key of the PEM
    /// `key_pem` (both may be the same text) from the next handshake on; a key that is not the
    /// certificate's is refused and the current certificate stays.
    pub fn set(&self, cert_pem: &str, key_pem: &str) -> Result<(), ServingError> {
        self.0.store(Some(Arc::new(certified(cert_pem, key_pem)?)));
        Ok(())
    }
}

/// The certificate (and chain) of the PEM `cert_pem` with the key of the PEM `key_pem`, which
/// must be the certificate's.
fn certified(cert_pem: &str, key_pem: &str) -> Result<CertifiedKey, ServingError> {
    let bad = |e: &dyn std::fmt::Display| ServingError::Unusable(e.to_string());
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| bad(&e))?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, key, &provider).map_err(|e| bad(&e))
}

/// The names a node's serving certificate is for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl Names {
    /// Upstream's `addressesToHostnamesAndIPs` of a Node's `status.addresses`: `Hostname` as a
    /// DNS name (or an IP if it is one), `InternalIP` and `ExternalIP` as IPs, `InternalDNS`
    /// and `ExternalDNS` as DNS names; each once, sorted. Here a DNS name must also be a valid
    /// one (it goes into the certificate and is matched by TLS clients).
    pub fn of_addresses(addresses: &Value) -> Names {
        let mut names = Names::default();
        for address in addresses.as_array().into_iter().flatten() {
            let text = address["address"].as_str().unwrap_or_default();
            let ip = text.parse::<IpAddr>().ok();
            let dns = || {
                matches!(ServerName::try_from(text), Ok(ServerName::DnsName(_)))
                    .then(|| text.to_string())
            };
            match address["type"].as_str().unwrap_or_default() {
                "Hostname" => match ip {
                    Some(ip) => names.ips.push(ip),
                    None => names.dns.extend(dns()),
                },
                "InternalIP" | "ExternalIP" => names.ips.extend(ip),
                "InternalDNS" | "ExternalDNS" => names.dns.extend(dns()),
                _ => {}
            }
        }
        names.dns.sort();
        names.dns.dedup();
        names.ips.sort();
        names.ips.dedup();
        names
    }

    fn server_names(&self) -> impl Iterator<Item = ServerName<'static>> + '_ {
        let dns = self
            .dns
            .iter()
            .filter_map(|d| ServerName::try_from(d.clone()).ok());
        dns.chain(self.ips.iter().map(|ip| ServerName::from(*ip)))
    }
}

/// The usage a serving certificate is checked for.
fn server_auth() -> webpki::KeyUsage {
    webpki::KeyUsage::server_auth()
}

/// That the PEM certificate `cert_pem` is valid for every name of `names`.
fn covers(cert_pem: &str, names: &Names) -> Result<(), ServingError> {
    let bad = |e: &dyn std::fmt::Display| ServingError::Unusable(e.to_string());
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| bad(&e))?;
    let cert = webpki::EndEntityCert::try_from(&der).map_err(|e| bad(&e))?;
    for name in names.server_names() {
        cert.verify_is_valid_for_subject_name(&name)
            .map_err(|_| ServingError::Uncovered(name.to_str().into_owned()))?;
    }
    Ok(())
}

/// That the PEM text `text` (a certificate and its key) can be served for `names`: the
/// certificate a serving certificate of the CA `ca_pem`, not expired, for every name, its key
/// its own.
fn check(text: &str, ca_pem: &str, names: &Names) -> Result<(), ServingError> {
    let (_, to) = rotation::lifetime(text, ca_pem, server_auth())?;
    if to <= SystemTime::now() {
        return Err(ServingError::Expired);
    }
    covers(text, names)?;
    certified(text, text).map(drop)
}

/// Keeps the agent's serving certificate: the one kept from an earlier run while it is good,
/// else (and at 80 % of its lifetime) a new one, asked for as the node.
pub struct Serving {
    pub api: Api,
    /// The node directory's [`FILE`].
    pub path: PathBuf,
    pub node: String,
    pub names: Names,
    /// The cluster CA (PEM) the certificate must chain to.
    pub ca_pem: String,
    pub resolver: Arc<Resolver>,
}

impl Serving {
    /// Runs forever: a failure is logged and tried again.
    pub async fn run(self) {
        rotation::forever("serving", || self.renew_when_due()).await;
    }

    /// Presents the kept certificate (if good) until it is due, then asks for, keeps and
    /// presents a new one.
    async fn renew_when_due(&self) -> Result<(), ServingError> {
        if self.names == Names::default() {
            return Err(ServingError::NoAddress);
        }
        if let Some(kept) = self.kept() {
            self.resolver.set(&kept, &kept)?;
            rotation::until_due(&kept, &self.ca_pem, server_auth()).await?;
        }
        let params = bootstrap::node_request(&self.node, &self.names.dns, &self.names.ips)?;
        let (cert, key) = bootstrap::certificate(&self.api, &bootstrap::SERVING, params).await?;
        let text = format!("{}\n{key}", cert.trim_end());
        check(&text, &self.ca_pem, &self.names)?;
        bootstrap::write_private(&self.path, &text)?;
        self.resolver.set(&text, &text)
    }

    /// The certificate and key kept in [`Serving::path`], if they can still be served.
    fn kept(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        match check(&text, &self.ca_pem, &self.names) {
            Ok(()) => Some(text),
            Err(e) => {
                tracing::info!(path = %self.path.display(), reason = %e, "not reusing the kept serving certificate");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::bootstrap::tests::{self as certs, new_ca};

    /// A serving certificate of `ca` for `names` valid from `from` to `to`, and its key.
    fn issue(
        ca: &rcgen::Certificate,
        ca_key: &rcgen::KeyPair,
        names: &[&str],
        from: u64,
        to: u64,
    ) -> (String, String) {
        let purpose = rcgen::ExtendedKeyUsagePurpose::ServerAuth;
        certs::issue(ca, ca_key, purpose, names, (from, to))
    }

    /// In 2033.
    const LATER: u64 = 2_000_000_000;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an IP")
    }

    #[test]
    fn the_names_are_the_nodes_addresses_as_upstream_reads_them() {
        let addresses = json!([
            {"type": "InternalIP", "address": "10.0.0.2"},
            {"type": "Hostname", "address": "worker-1"},
            {"type": "Hostname", "address": "10.0.0.3"},
            {"type": "ExternalIP", "address": "not-an-ip"},
            {"type": "InternalDNS", "address": "worker-1"},
            {"type": "ExternalDNS", "address": "bad name!"},
            {"type": "Other", "address": "10.9.9.9"},
            {"type": "InternalIP", "address": ""},
        ]);
        assert_eq!(
            Names::of_addresses(&addresses),
            Names {
                dns: vec!["worker-1".into()],
                ips: vec![ip("10.0.0.2"), ip("10.0.0.3")],
            }
        );
        assert_eq!(Names::of_addresses(&json!(null)), Names::default());
    }

    #[test]
    fn the_request_is_a_nodes_serving_request_for_its_names() {
        let params =
            bootstrap::node_request("n1", &["worker-1".into()], &[ip("10.0.0.2")]).expect("params");
        let subject: Vec<_> = params.distinguished_name.iter().collect();
        assert_eq!(
            subject,
            [
                (
                    &rcgen::DnType::CommonName,
                    &rcgen::DnValue::Utf8String("system:node:n1".into())
                ),
                (
                    &rcgen::DnType::OrganizationName,
                    &rcgen::DnValue::Utf8String("system:nodes".into())
                ),
            ]
        );
        assert_eq!(
            params.subject_alt_names,
            [
                rcgen::SanType::DnsName("worker-1".try_into().expect("ia5")),
                rcgen::SanType::IpAddress(ip("10.0.0.2")),
            ]
        );
        let object = bootstrap::request_object(&bootstrap::SERVING, "PEM");
        assert_eq!(
            object["spec"]["signerName"],
            "kubernetes.io/kubelet-serving"
        );
        assert_eq!(
            object["spec"]["usages"],
            json!(["digital signature", "server auth"])
        );
        assert_eq!(object["spec"]["request"], "UEVN");
        assert_eq!(object["kind"], "CertificateSigningRequest");
    }

    /// The DER certificate a client verifying against `ca_pem` for `name` gets from a server
    /// presenting what `resolver` holds; `None` when the handshake fails.
    async fn served(resolver: Arc<Resolver>, ca_pem: &str, name: &str) -> Option<Vec<u8>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("ca"))
            .expect("root");
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let (near, far) = tokio::io::duplex(64 * 1024);
        let name = ServerName::try_from(name.to_string()).expect("name");
        let (_, client) = tokio::join!(acceptor.accept(far), connector.connect(name, near));
        let client = client.ok()?;
        let certs = client.get_ref().1.peer_certificates()?;
        certs.first().map(|c| c.to_vec())
    }

    fn der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .expect("pem")
            .to_vec()
    }

    #[tokio::test]
    async fn the_resolver_serves_nothing_then_what_it_was_last_given() {
        let (ca, ca_key) = new_ca();
        let resolver = Arc::new(Resolver::default());
        assert_eq!(served(resolver.clone(), &ca.pem(), "10.0.0.2").await, None);
        let (first, first_key) = issue(&ca, &ca_key, &["10.0.0.2"], 0, LATER);
        resolver.set(&first, &first_key).expect("set");
        let got = served(resolver.clone(), &ca.pem(), "10.0.0.2").await;
        assert_eq!(got, Some(der(&first)));
        let (second, second_key) = issue(&ca, &ca_key, &["10.0.0.2"], 0, LATER);
        resolver
            .set(&second, &first_key)
            .expect_err("another certificate's key");
        let got = served(resolver.clone(), &ca.pem(), "10.0.0.2").await;
        assert_eq!(
            got,
            Some(der(&first)),
            "a refused swap keeps the current one"
        );
        let both = format!("{second}{second_key}");
        resolver.set(&both, &both).expect("set");
        let got = served(resolver.clone(), &ca.pem(), "10.0.0.2").await;
        assert_eq!(got, Some(der(&second)));
    }

    #[test]
    fn a_kept_certificate_is_served_again_only_while_it_is_good() {
        let (ca, ca_key) = new_ca();
        let names = Names {
            dns: vec!["worker-1".into()],
            ips: vec![ip("10.0.0.2")],
        };
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let kept = |cert: (String, String)| format!("{}{}", cert.0, cert.1);
        let good = kept(issue(
            &ca,
            &ca_key,
            &["worker-1", "10.0.0.2"],
            now - 600,
            now + 3600,
        ));
        check(&good, &ca.pem(), &names).expect("good");
        let expired = kept(issue(
            &ca,
            &ca_key,
            &["worker-1", "10.0.0.2"],
            now - 600,
            now - 60,
        ));
        assert!(matches!(
            check(&expired, &ca.pem(), &names),
            Err(ServingError::Expired)
        ));
        let narrower = kept(issue(&ca, &ca_key, &["10.0.0.2"], now - 600, now + 3600));
        assert!(matches!(
            check(&narrower, &ca.pem(), &names),
            Err(ServingError::Uncovered(name)) if name == "worker-1"
        ));
        let (other, other_key) = new_ca();
        let foreign = kept(issue(
            &other,
            &other_key,
            &["worker-1", "10.0.0.2"],
            now - 600,
            now + 3600,
        ));
        assert!(matches!(
            check(&foreign, &ca.pem(), &names),
            Err(ServingError::Rotation(_))
        ));
        let (cert, _) = issue(
            &ca,
            &ca_key,
            &["worker-1", "10.0.0.2"],
            now - 600,
            now + 3600,
        );
        let (_, wrong_key) = issue(&ca, &ca_key, &["worker-1"], now - 600, now + 3600);
        assert!(matches!(
            check(&format!("{cert}{wrong_key}"), &ca.pem(), &names),
            Err(ServingError::Unusable(_))
        ));
    }
}
