//! A node's own certificates, as kubeadm's discovery and the kubelet's TLS bootstrap do it: the
//! cluster CA read from `kube-public/cluster-info` and checked against its pin, then a new key
//! and a CertificateSigningRequest (for its client certificate made with a bootstrap token; for
//! its serving certificate, as itself) waited for.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::api::{Api, ApiError, Connection, Credential};

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("the CA pin {0:?} is not sha256: and 64 hexadecimal digits")]
    BadPin(String),
    #[error("kube-public/cluster-info: {0}")]
    Discovery(String),
    #[error("the cluster CA's public key hash is {found}, not the pinned {pinned}")]
    PinMismatch { pinned: String, found: String },
    #[error("making the node's key or certificate request: {0}")]
    Key(#[from] rcgen::Error),
    #[error("the certificate request {name}: {reason}")]
    Refused { name: String, reason: String },
    #[error("the certificate request {0} was not issued within {WAIT:?}")]
    Timeout(String),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

const CLUSTER_INFO: &str = "/api/v1/namespaces/kube-public/configmaps/cluster-info";
const REQUESTS: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
/// The signer of node client certificates.
const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// How long a request may stay unsigned (an administrator may have to approve it).
const WAIT: Duration = Duration::from_secs(900);
/// How often an unsigned request is read again.
const POLL: Duration = Duration::from_secs(2);

/// kubeadm's `--discovery-token-ca-cert-hash` of the PEM CA certificate `ca_pem`: `sha256:` and
/// the hex SHA-256 of its SubjectPublicKeyInfo.
pub fn ca_pin(ca_pem: &str) -> Result<String, BootstrapError> {
    let unreadable = |e: &dyn std::fmt::Display| BootstrapError::Discovery(format!("the CA: {e}"));
    let der: rustls::pki_types::CertificateDer<'_> =
        rustls::pki_types::pem::PemObject::from_pem_slice(ca_pem.as_bytes())
            .map_err(|e| unreadable(&e))?;
    let cert = webpki::EndEntityCert::try_from(&der).map_err(|e| unreadable(&e))?;
    let digest = Sha256::digest(cert.subject_public_key_info().as_ref());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("sha256:{hex}"))
}

/// The cluster CA (PEM) of the apiserver at `server`: `cluster-info` read anonymously without
/// trusting the server's certificate, its CA checked against `pin`, then read again over TLS
/// verified by that CA, which must give the same CA.
pub async fn discover(server: &str, pin: &str) -> Result<String, BootstrapError> {
    let pinned = pin.to_ascii_lowercase();
    let hex = pinned.strip_prefix("sha256:").unwrap_or_default();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(BootstrapError::BadPin(pin.to_string()));
    }
    let anonymous = |ca_pem: Option<String>| {
        Connection::to(server, Credential::Anonymous, ca_pem).map_err(ApiError::from)
    };
    let ca_pem = cluster_ca(&Api::new(&anonymous(None)?)?).await?;
    let found = ca_pin(&ca_pem)?;
    if found != pinned {
        return Err(BootstrapError::PinMismatch { pinned, found });
    }
    let verified = cluster_ca(&Api::new(&anonymous(Some(ca_pem.clone()))?)?).await?;
    if verified != ca_pem {
        return Err(BootstrapError::Discovery(
            "a different CA when read over TLS verified by the pinned one".into(),
        ));
    }
    Ok(ca_pem)
}

/// The CA of the kubeconfig in `cluster-info`.
async fn cluster_ca(api: &Api) -> Result<String, BootstrapError> {
    let bad = |what: &str| BootstrapError::Discovery(what.to_string());
    let info = api
        .get(CLUSTER_INFO)
        .await?
        .ok_or_else(|| bad("not found"))?;
    let kubeconfig: Value = info["data"]["kubeconfig"]
        .as_str()
        .and_then(|text| serde_yaml::from_str(text).ok())
        .ok_or_else(|| bad("data.kubeconfig is not a kubeconfig"))?;
    kubeconfig
        .pointer("/clusters/0/cluster/certificate-authority-data")
        .and_then(Value::as_str)
        .and_then(|data| base64::engine::general_purpose::STANDARD.decode(data).ok())
        .and_then(|pem| String::from_utf8(pem).ok())
        .ok_or_else(|| bad("the kubeconfig has no certificate-authority-data"))
}

/// What a node asks the cluster CA for: a signer, the certificate's usages, and the prefix of
/// the request's name.
pub struct Kind {
    pub signer: &'static str,
    pub usages: &'static [&'static str],
    generate_name: &'static str,
}

/// A node's client certificate (the kubelet's bootstrap and client rotation).
pub const CLIENT: Kind = Kind {
    signer: CLIENT_SIGNER,
    usages: &["digital signature", "client auth"],
    generate_name: "node-csr-",
};

/// A node's serving certificate (the kubelet's `serverTLSBootstrap`); an ECDSA key needs no
/// `key encipherment`.
pub const SERVING: Kind = Kind {
    signer: "kubernetes.io/kubelet-serving",
    usages: &["digital signature", "server auth"],
    generate_name: "csr-",
};

/// The request's subject and names: `CN=system:node:NAME, O=system:nodes`, with `dns_names`
/// and `ips` as subject alternative names.
pub fn node_request(
    node: &str,
    dns_names: &[String],
    ips: &[std::net::IpAddr],
) -> Result<rcgen::CertificateParams, BootstrapError> {
    let mut params = rcgen::CertificateParams::new(dns_names.to_vec())?;
    params
        .subject_alt_names
        .extend(ips.iter().map(|ip| rcgen::SanType::IpAddress(*ip)));
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("system:node:{node}"));
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    Ok(params)
}

/// The CertificateSigningRequest of `kind` for the PEM request `request_pem`.
pub fn request_object(kind: &Kind, request_pem: &str) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD.encode(request_pem);
    json!({"apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"generateName": kind.generate_name},
        "spec": {"request": b64, "signerName": kind.signer, "usages": kind.usages}})
}

/// A new key (ECDSA P-256), and a certificate of `kind` for it as `params` says, asked for as
/// `api`'s user and waited for: the certificate and the key, PEM.
pub async fn certificate(
    api: &Api,
    kind: &Kind,
    params: rcgen::CertificateParams,
) -> Result<(String, String), BootstrapError> {
    let key = rcgen::KeyPair::generate()?;
    let request = params.serialize_request(&key)?.pem()?;
    let created = api
        .create(REQUESTS, &request_object(kind, &request))
        .await?;
    let name = created
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    tracing::info!(request = %name, signer = kind.signer, "asked for a certificate");
    let cert = issued(api, created, &name).await?;
    Ok((cert, key.serialize_pem()))
}

/// A new key, and a client certificate for it as `system:node:NAME` in `system:nodes` from the
/// node client signer, asked for as `api`'s user (a bootstrap token; or the node itself, to
/// renew): the certificate and the key, PEM.
pub async fn client_certificate(api: &Api, node: &str) -> Result<(String, String), BootstrapError> {
    certificate(api, &CLIENT, node_request(node, &[], &[])?).await
}

/// The certificate of the request `csr` once it is issued, read again until it is (or it is
/// denied, fails, or goes away).
async fn issued(api: &Api, mut csr: Value, name: &str) -> Result<String, BootstrapError> {
    let refused = |reason: String| BootstrapError::Refused {
        name: name.to_string(),
        reason,
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let conditions = csr.pointer("/status/conditions").and_then(Value::as_array);
        if let Some(c) = conditions
            .into_iter()
            .flatten()
            .find(|c| (c["type"] == "Denied" || c["type"] == "Failed") && c["status"] != "False")
        {
            return Err(refused(format!(
                "{}: {}",
                c["type"].as_str().unwrap_or_default(),
                c["message"].as_str().unwrap_or_default()
            )));
        }
        if let Some(data) = csr
            .pointer("/status/certificate")
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
        {
            return base64::engine::general_purpose::STANDARD
                .decode(data)
                .ok()
                .and_then(|pem| String::from_utf8(pem).ok())
                .ok_or_else(|| refused("status.certificate is not base64 PEM".into()));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(BootstrapError::Timeout(name.to_string()));
        }
        tokio::time::sleep(POLL).await;
        csr = api
            .get(&format!("{REQUESTS}/{name}"))
            .await?
            .ok_or_else(|| refused("deleted before it was issued".into()))?;
    }
}

/// Writes `text` to `path` readable by its owner only, atomically (a temporary file in the
/// same directory, renamed over it).
pub fn write_private(path: &Path, text: &str) -> Result<(), BootstrapError> {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    let failed = |source| BootstrapError::Write {
        path: path.display().to_string(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(failed)?;
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(failed)?;
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(failed)?;
    file.write_all(text.as_bytes()).map_err(failed)?;
    file.as_file().sync_all().map_err(failed)?;
    file.persist(path).map_err(|e| failed(e.error))?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A new CA and its key.
    pub(crate) fn new_ca() -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test-ca");
        (params.self_signed(&key).expect("ca"), key)
    }

    /// A certificate of `ca` for `system:node:n1` and `purpose`, with `names` (IPs or DNS
    /// names), valid from `from` to `to` (seconds since the epoch): it and its key, PEM.
    pub(crate) fn issue(
        ca: &rcgen::Certificate,
        ca_key: &rcgen::KeyPair,
        purpose: rcgen::ExtendedKeyUsagePurpose,
        names: &[&str],
        (from, to): (u64, u64),
    ) -> (String, String) {
        let (ips, dns): (Vec<&str>, Vec<&str>) = names
            .iter()
            .partition(|n| n.parse::<std::net::IpAddr>().is_ok());
        let dns: Vec<String> = dns.iter().map(|d| d.to_string()).collect();
        let ips: Vec<std::net::IpAddr> = ips.iter().filter_map(|i| i.parse().ok()).collect();
        let mut params = node_request("n1", &dns, &ips).expect("params");
        params.extended_key_usages = vec![purpose];
        let at = |s: u64| rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(s);
        params.not_before = at(from);
        params.not_after = at(to);
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, ca, ca_key).expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn the_pin_is_the_hash_of_the_public_key_info() {
        let key = rcgen::KeyPair::generate().expect("key");
        let ca = rcgen::CertificateParams::new(Vec::<String>::new())
            .expect("params")
            .self_signed(&key)
            .expect("ca");
        let digest = Sha256::digest(key.public_key_der());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(ca_pin(&ca.pem()).expect("pin"), format!("sha256:{hex}"));
        assert!(ca_pin("not a certificate").is_err());
    }

    #[tokio::test]
    async fn a_malformed_pin_is_refused_before_any_request() {
        for pin in [
            "",
            "sha256:",
            "sha256:zz",
            "md5:00",
            &format!("sha256:{}", "0".repeat(63)),
        ] {
            let e = discover("https://127.0.0.1:1", pin).await.expect_err(pin);
            assert!(matches!(e, BootstrapError::BadPin(_)), "{pin}: {e}");
        }
    }

    #[test]
    fn the_kubeconfig_reads_back_as_the_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node/kubeconfig");
        let mut written = Connection::to(
            "https://h:6443/",
            Credential::Certificate {
                cert_pem: "CERT\n".into(),
                key_pem: "KEY\n".into(),
            },
            Some("CA\n".into()),
        )
        .expect("connection");
        written
            .add_servers(["https://b:6443", "https://h:6443", "http://c"])
            .expect("servers");
        write_private(&path, &written.kubeconfig()).expect("write");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let connection = Connection::from_kubeconfig(&path).expect("read");
        assert_eq!(
            connection.servers(),
            ["https://h:6443", "https://b:6443", "http://c"]
        );
        assert_eq!(connection.ca_pem.as_deref(), Some("CA\n"));
        assert!(matches!(
            connection.credential,
            Credential::Certificate { cert_pem, key_pem } if cert_pem == "CERT\n" && key_pem == "KEY\n"
        ));
    }
}
