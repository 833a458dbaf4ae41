//! The serving identity: a self-generated CA and serving certificate, the admin token, client certificates, and the kubeconfigs that use them.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use rand::Rng;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("reading or writing {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("loading the serving key: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("{0} holds no usable PEM")]
    Pem(String),
    #[error(
        "{0} holds a token shorter than {MIN_TOKEN_LEN} characters: write a longer one, or remove the pki directory to generate a new identity"
    )]
    ShortToken(String),
    #[error("--tls-san {0}: neither an IP address nor a DNS name")]
    BadName(String),
    #[error("the CA key is not kept in {0}: client certificates cannot be issued")]
    NoCaKey(String),
    #[error("{0}")]
    BadSubject(String),
}

/// How long a client certificate is valid (kubeadm's one year).
const CLIENT_CERT_DAYS: i64 = 365;
/// The longest user or group name put in a client certificate (X.509's `ub-common-name` is 64;
/// Kubernetes does not bound it, so neither do we beyond a sane size).
const MAX_SUBJECT_LEN: usize = 253;

/// The shortest admin token accepted from the token file (we generate 40 characters).
pub const MIN_TOKEN_LEN: usize = 32;

/// Creates `dir` (and its parents) readable by its owner only.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Writes `path` readable by its owner only, atomically: a temporary file, synced, renamed
/// over it, so a crash leaves the old file or the new one, never a half-written one.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    // A bare file name's parent is "": the current directory.
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::File::open(parent)?.sync_all()
}

/// What the serving certificate is valid for: the names clients reach the API server by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    dns: BTreeSet<String>,
    ips: BTreeSet<IpAddr>,
}

impl Default for Names {
    /// The names every API server answers to: localhost and the `kubernetes` Service's DNS names.
    fn default() -> Self {
        let dns = [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ];
        Names {
            dns: dns.iter().map(|d| d.to_string()).collect(),
            ips: [
                IpAddr::from([127, 0, 0, 1]),
                IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
            ]
            .into_iter()
            .collect(),
        }
    }
}

impl Names {
    /// Adds an address.
    pub fn ip(&mut self, ip: IpAddr) {
        if !ip.is_unspecified() {
            self.ips.insert(ip);
        }
    }

    /// Adds `name`: an IP address, or a DNS name (lower-cased; a leading `*.` allowed, as
    /// kube-apiserver's `--tls-sni-cert-key` names).
    pub fn add(&mut self, name: &str) -> Result<(), TlsError> {
        if let Ok(ip) = name.parse::<IpAddr>() {
            self.ip(ip);
            return Ok(());
        }
        let lower = name.to_ascii_lowercase();
        let host = lower.strip_prefix("*.").unwrap_or(&lower);
        if !wasmkube_model::validation::is_dns1123_subdomain(host) {
            return Err(TlsError::BadName(name.to_string()));
        }
        self.dns.insert(lower);
        Ok(())
    }

    /// One name a line, as recorded beside the certificate (`server.names`).
    fn render(&self) -> String {
        let dns = self.dns.iter().map(|d| format!("DNS:{d}\n"));
        let ips = self.ips.iter().map(|ip| format!("IP:{ip}\n"));
        dns.chain(ips).collect()
    }

    fn params(&self) -> Result<CertificateParams, TlsError> {
        let mut params = CertificateParams::new(self.dns.iter().cloned().collect::<Vec<_>>())?;
        params
            .subject_alt_names
            .extend(self.ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params
            .distinguished_name
            .push(DnType::CommonName, "wasmkube-apiserver");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        Ok(params)
    }
}

/// The CA's private key, kept so that the serving certificate can be issued for new names.
const CA_KEY_FILE: &str = "ca.key";
/// The names the serving certificate was issued for, one a line.
const NAMES_FILE: &str = "server.names";

/// The CA's name and constraints.
fn ca_params() -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "wasmkube-ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    Ok(params)
}

/// The PEM files and token kept in the data directory.
pub struct Identity {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub token: String,
    /// The CA's key, to issue client certificates; `None` for an identity made before it was kept.
    ca_key_pem: Option<String>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Identity {
    /// Loads the identity from `dir`, generating and saving it on first start. A serving
    /// certificate issued for other `names` (a new address, a new `--tls-san`) is issued anew
    /// by the same CA, so kubeconfigs and nodes that trust the CA keep working.
    ///
    /// A directory with the CA (its certificate and key) and the token but no serving
    /// certificate, as `wasmkube join --control-plane` writes it, gets one issued by that CA.
    pub fn load_or_create(dir: &Path, names: &Names) -> Result<Identity, TlsError> {
        let exists = |file: &str| dir.join(file).exists();
        let shared = ["ca.crt", CA_KEY_FILE, "token"];
        let serving = ["server.crt", "server.key"];
        if !serving.iter().all(|f| exists(f)) && shared.iter().all(|f| exists(f)) {
            let mut identity = Identity::load_shared(dir)?;
            let ca_key = KeyPair::from_pem(identity.ca_key_pem.as_deref().unwrap_or_default())?;
            identity.issue(dir, names, &ca_key)?;
            return Ok(identity);
        }
        if !["ca.crt", "token"]
            .iter()
            .chain(&serving)
            .all(|f| exists(f))
        {
            return Identity::generate(dir, names);
        }
        let mut identity = Identity::load(dir)?;
        let recorded = std::fs::read_to_string(dir.join(NAMES_FILE)).unwrap_or_default();
        if recorded != names.render() {
            match identity.ca_key_pem.clone() {
                Some(ca_key) => {
                    let ca_key = KeyPair::from_pem(&ca_key)?;
                    identity.issue(dir, names, &ca_key)?;
                }
                None => tracing::warn!(
                    dir = %dir.display(),
                    "the serving certificate was made without a kept CA key and cannot be \
                     issued for new names; remove the directory to make a new identity"
                ),
            }
        }
        Ok(identity)
    }

    /// Loads the identity saved in `dir` as it is.
    pub fn load(dir: &Path) -> Result<Identity, TlsError> {
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).map_err(io(&dir.join(f)));
        Ok(Identity {
            cert_pem: read("server.crt")?,
            key_pem: read("server.key")?,
            ..Identity::load_shared(dir)?
        })
    }

    /// The CA, its key if kept, and the token saved in `dir`: what every control-plane host of
    /// a cluster shares; no serving certificate.
    fn load_shared(dir: &Path) -> Result<Identity, TlsError> {
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).map_err(io(&dir.join(f)));
        let token = read("token")?.trim().to_string();
        if token.len() < MIN_TOKEN_LEN {
            return Err(TlsError::ShortToken(
                dir.join("token").display().to_string(),
            ));
        }
        let ca_key_pem = match std::fs::read_to_string(dir.join(CA_KEY_FILE)) {
            Ok(ca_key) => Some(ca_key),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&dir.join(CA_KEY_FILE))(e)),
        };
        Ok(Identity {
            ca_pem: read("ca.crt")?,
            cert_pem: String::new(),
            key_pem: String::new(),
            token,
            ca_key_pem,
        })
    }

    /// A new CA, serving certificate and token, saved in `dir`.
    fn generate(dir: &Path, names: &Names) -> Result<Identity, TlsError> {
        let ca_key = KeyPair::generate()?;
        let ca = ca_params()?.self_signed(&ca_key)?;
        let token: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(40)
            .map(char::from)
            .collect();
        let mut identity = Identity {
            ca_pem: ca.pem(),
            cert_pem: String::new(),
            key_pem: String::new(),
            token,
            ca_key_pem: Some(ca_key.serialize_pem()),
        };
        create_private_dir(dir).map_err(io(dir))?;
        for (file, text) in [
            (CA_KEY_FILE, ca_key.serialize_pem()),
            ("ca.crt", identity.ca_pem.clone()),
            ("token", identity.token.clone()),
        ] {
            let path = dir.join(file);
            write_private(&path, text.as_bytes()).map_err(io(&path))?;
        }
        identity.issue(dir, names, &ca_key)?;
        Ok(identity)
    }

    /// Issues a serving certificate for `names` signed by the CA of `ca_key` and saves it; the
    /// record of its names is written last, so a crash in between means issuing again.
    fn issue(&mut self, dir: &Path, names: &Names, ca_key: &KeyPair) -> Result<(), TlsError> {
        // The CA certificate made again from the same name and key signs as the one on disk.
        let ca = ca_params()?.self_signed(ca_key)?;
        let key = KeyPair::generate()?;
        let cert = names.params()?.signed_by(&key, &ca, ca_key)?;
        self.cert_pem = cert.pem();
        self.key_pem = key.serialize_pem();
        for (file, text) in [
            ("server.key", &self.key_pem),
            ("server.crt", &self.cert_pem),
            (NAMES_FILE, &names.render()),
        ] {
            let path = dir.join(file);
            write_private(&path, text.as_bytes()).map_err(io(&path))?;
        }
        Ok(())
    }

    /// The cluster CA able to sign node certificate requests; `None` for an identity made before
    /// the CA key was kept.
    pub fn authority(&self) -> Result<Option<crate::certificates::Authority>, TlsError> {
        let Some(key) = self.ca_key_pem.as_deref() else {
            return Ok(None);
        };
        crate::certificates::Authority::new(ca_params()?, key)
            .map(Some)
            .map_err(|e| TlsError::Pem(format!("{CA_KEY_FILE}: {e}")))
    }

    /// A rustls server config serving this identity (HTTP/2 and HTTP/1.1).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let certs = rustls_pemfile_certs(&self.cert_pem)?;
        let key = rustls::pki_types::PrivateKeyDer::try_from(
            pem_body(&self.key_pem).ok_or_else(|| TlsError::Pem("server.key".into()))?,
        )
        .map_err(|e| TlsError::Pem(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(self.client_verifier()?)
        .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Verifies client certificates against the cluster CA; clients without one still connect
    /// (to authenticate with a token, or to be told 401).
    fn client_verifier(
        &self,
    ) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        let ca = pem_body(&self.ca_pem).ok_or_else(|| TlsError::Pem("ca.crt".into()))?;
        roots.add(rustls::pki_types::CertificateDer::from(ca))?;
        rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Pem(format!("the CA as client root: {e}")))
    }

    /// A client certificate and its key (PEM) for `user` in `group` (the subject's CN and O,
    /// as Kubernetes reads them), valid for a year, signed by the cluster CA.
    pub fn issue_client(
        &self,
        user: &str,
        group: Option<&str>,
    ) -> Result<(String, String), TlsError> {
        for name in std::iter::once(user).chain(group) {
            if name.is_empty()
                || name.len() > MAX_SUBJECT_LEN
                || name.chars().any(|c| c.is_control())
            {
                return Err(TlsError::BadSubject(format!(
                    "{name:?}: a user or group is 1 to {MAX_SUBJECT_LEN} printable characters"
                )));
            }
        }
        let ca_key = self
            .ca_key_pem
            .as_deref()
            .ok_or_else(|| TlsError::NoCaKey(CA_KEY_FILE.into()))?;
        let ca_key = KeyPair::from_pem(ca_key)?;
        let ca = ca_params()?.self_signed(&ca_key)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, user);
        if let Some(group) = group {
            params
                .distinguished_name
                .push(DnType::OrganizationName, group);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = chrono::Utc::now();
        let day = |t: chrono::DateTime<chrono::Utc>| {
            use chrono::Datelike as _;
            rcgen::date_time_ymd(t.year(), t.month() as u8, t.day() as u8)
        };
        params.not_before = day(now - chrono::Duration::days(1));
        params.not_after = day(now + chrono::Duration::days(CLIENT_CERT_DAYS));
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca, &ca_key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A kubeconfig for the API server at `server` (`https://HOST:PORT`) as `user` in `group`,
    /// with a new client certificate.
    pub fn client_kubeconfig(
        &self,
        server: &str,
        user: &str,
        group: Option<&str>,
    ) -> Result<String, TlsError> {
        let (cert, key) = self.issue_client(user, group)?;
        let b64 = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem);
        let credentials = format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(&cert),
            b64(&key)
        );
        Ok(self.render_kubeconfig(server, &credentials))
    }

    /// The admin kubeconfig: a client certificate `CN=kubernetes-admin, O=system:masters`, as
    /// kubeadm's admin.conf; the admin token for an identity made before the CA key was kept.
    pub fn admin_kubeconfig(&self, server: &str) -> Result<String, TlsError> {
        if self.ca_key_pem.is_none() {
            tracing::warn!("no CA key kept: the admin kubeconfig uses the admin token");
            return Ok(self.render_kubeconfig(server, &format!("    token: {}\n", self.token)));
        }
        self.client_kubeconfig(server, ADMIN_USER, Some(crate::auth::user::MASTERS))
    }

    fn render_kubeconfig(&self, server: &str, credentials: &str) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: wasmkube\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: user\n  user:\n{credentials}contexts:\n- name: wasmkube\n  context:\n    cluster: wasmkube\n    user: user\n    namespace: default\ncurrent-context: wasmkube\n"
        )
    }
}

/// The user of the admin kubeconfig's certificate (kubeadm's).
pub const ADMIN_USER: &str = "kubernetes-admin";

/// The user of the certificate the apiserver presents to node agents (kubeadm's
/// `apiserver-kubelet-client`, here in no group: it may do nothing in the API).
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";

/// The DER bytes of the first PEM block.
fn pem_body(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

fn rustls_pemfile_certs(
    pem: &str,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, TlsError> {
    let der = pem_body(pem).ok_or_else(|| TlsError::Pem("server.crt".into()))?;
    Ok(vec![rustls::pki_types::CertificateDer::from(der)])
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("exists")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn a_bare_file_name_is_written_in_the_current_directory() {
        let dir = tempfile::tempdir().expect("temp dir");
        let here = std::env::current_dir().expect("cwd");
        std::env::set_current_dir(dir.path()).expect("cd");
        let written = write_private(Path::new("bare.txt"), b"x");
        std::env::set_current_dir(here).expect("cd back");
        written.expect("written");
        assert_eq!(
            std::fs::read(dir.path().join("bare.txt")).expect("read"),
            b"x"
        );
    }

    #[test]
    fn the_identity_is_private_and_a_short_token_is_refused() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("pki");
        let names = Names::default();
        let identity = Identity::load_or_create(&dir, &names).expect("generated");
        assert_eq!(mode(&dir), 0o700);
        for file in [
            "ca.crt",
            "ca.key",
            "server.crt",
            "server.key",
            "server.names",
            "token",
        ] {
            assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
        }
        let again = Identity::load_or_create(&dir, &names).expect("loaded");
        assert_eq!(again.token, identity.token);
        assert_eq!(
            again.cert_pem, identity.cert_pem,
            "the same names: not issued again"
        );
        std::fs::write(dir.join("token"), "\n").expect("emptied");
        let err = Identity::load_or_create(&dir, &names)
            .err()
            .expect("refused");
        assert!(matches!(err, TlsError::ShortToken(_)), "{err}");
    }

    /// Whether the serving certificate of `identity` verifies, for `name`, against its CA.
    fn valid_for(identity: &Identity, name: &str) -> bool {
        use rustls::client::WebPkiServerVerifier;
        use rustls::client::danger::ServerCertVerifier as _;
        use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
        let der = |pem: &str| CertificateDer::from(pem_body(pem).expect("a PEM block"));
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der(&identity.ca_pem)).expect("the CA");
        let verifier = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .expect("a verifier");
        let name = ServerName::try_from(name.to_string()).expect("a server name");
        verifier
            .verify_server_cert(&der(&identity.cert_pem), &[], &name, &[], UnixTime::now())
            .is_ok()
    }

    #[test]
    fn client_certificates_name_their_user_and_group() {
        let root = tempfile::tempdir().expect("tempdir");
        let identity =
            Identity::load_or_create(&root.path().join("pki"), &Names::default()).expect("made");
        let (cert, _key) = identity
            .issue_client("alice", Some("devs"))
            .expect("issued");
        let user =
            crate::auth::CertificateUser::from_der(&pem_body(&cert).expect("PEM")).expect("a user");
        assert_eq!(user.0.name, "alice");
        assert_eq!(
            user.0.groups,
            vec!["devs", crate::auth::user::AUTHENTICATED]
        );
        for bad in ["", "a\nb"] {
            let err = identity.issue_client(bad, None).expect_err("refused");
            assert!(matches!(err, TlsError::BadSubject(_)), "{err}");
        }
        let admin = identity
            .admin_kubeconfig("https://127.0.0.1:6443")
            .expect("written");
        assert!(admin.contains("client-certificate-data: "), "{admin}");
        assert!(!admin.contains(&identity.token));
        assert!(
            identity.server_config().is_ok(),
            "serves with the client verifier"
        );
    }

    /// What `join --control-plane` writes (the CA, its key and the token, no serving
    /// certificate) gets a serving certificate of that CA, not a new CA.
    #[test]
    fn a_shared_ca_without_a_serving_certificate_issues_one() {
        let root = tempfile::tempdir().expect("tempdir");
        let first =
            Identity::load_or_create(&root.path().join("a"), &Names::default()).expect("generated");
        let dir = root.path().join("b");
        create_private_dir(&dir).expect("made");
        for file in ["ca.crt", "ca.key", "token"] {
            std::fs::copy(root.path().join("a").join(file), dir.join(file)).expect("copied");
        }
        let mut names = Names::default();
        names.add("192.0.2.8").expect("an address");
        let second = Identity::load_or_create(&dir, &names).expect("issued");
        assert_eq!(second.ca_pem, first.ca_pem, "the same CA");
        assert_eq!(second.token, first.token);
        assert_ne!(second.cert_pem, first.cert_pem);
        assert!(valid_for(&second, "192.0.2.8"));
        assert_eq!(mode(&dir.join("server.key")), 0o600);
        let again = Identity::load_or_create(&dir, &names).expect("loaded");
        assert_eq!(again.cert_pem, second.cert_pem, "kept once issued");
    }

    #[test]
    fn new_names_get_a_certificate_from_the_same_ca() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("pki");
        let first = Identity::load_or_create(&dir, &Names::default()).expect("generated");
        assert!(valid_for(&first, "127.0.0.1"));
        assert!(valid_for(&first, "kubernetes.default.svc"));
        assert!(!valid_for(&first, "api.example.test"));
        assert!(!valid_for(&first, "192.0.2.7"));

        let mut names = Names::default();
        names.add("API.example.test").expect("a DNS name");
        names.add("192.0.2.7").expect("an address");
        names.ip("0.0.0.0".parse().expect("an address"));
        let second = Identity::load_or_create(&dir, &names).expect("issued again");
        assert_eq!(second.ca_pem, first.ca_pem, "the CA stays");
        assert_eq!(second.token, first.token);
        assert_ne!(second.key_pem, first.key_pem);
        for name in ["api.example.test", "192.0.2.7", "127.0.0.1", "localhost"] {
            assert!(valid_for(&second, name), "{name}");
        }
        assert!(
            !std::fs::read_to_string(dir.join("server.names"))
                .expect("recorded")
                .contains("0.0.0.0")
        );

        for bad in ["-bad-", "a..b", "x/y", ""] {
            let err = names.add(bad).expect_err("refused");
            assert!(matches!(err, TlsError::BadName(_)), "{bad}: {err}");
        }
    }
}
