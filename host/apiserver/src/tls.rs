//! The serving identity: a self-generated CA and serving certificate, the admin token, and the kubeconfig that uses them.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use rand::Rng;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};

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
}

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
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// The PEM files and token kept in the data directory.
pub struct Identity {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub token: String,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Identity {
    /// Loads the identity from `dir`, generating and saving it on first start.
    pub fn load_or_create(dir: &Path) -> Result<Identity, TlsError> {
        let files = ["ca.crt", "server.crt", "server.key", "token"].map(|f| dir.join(f));
        if files.iter().all(|f| f.exists()) {
            let read = |p: &Path| std::fs::read_to_string(p).map_err(io(p));
            let token = read(&files[3])?.trim().to_string();
            if token.len() < MIN_TOKEN_LEN {
                return Err(TlsError::ShortToken(files[3].display().to_string()));
            }
            return Ok(Identity {
                ca_pem: read(&files[0])?,
                cert_pem: read(&files[1])?,
                key_pem: read(&files[2])?,
                token,
            });
        }
        let identity = Identity::generate()?;
        create_private_dir(dir).map_err(io(dir))?;
        for (path, text) in files.iter().zip([
            &identity.ca_pem,
            &identity.cert_pem,
            &identity.key_pem,
            &identity.token,
        ]) {
            write_private(path, text.as_bytes()).map_err(io(path))?;
        }
        Ok(identity)
    }

    fn generate() -> Result<Identity, TlsError> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "wasmkube-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![
            "localhost".to_string(),
            "kubernetes".into(),
            "kubernetes.default".into(),
            "kubernetes.default.svc".into(),
        ])?;
        params.subject_alt_names.push(SanType::IpAddress(
            "127.0.0.1"
                .parse()
                .map_err(|_| rcgen::Error::CouldNotParseCertificate)?,
        ));
        params
            .distinguished_name
            .push(DnType::CommonName, "wasmkube-apiserver");
        let cert = params.signed_by(&key, &ca, &ca_key)?;
        let token: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(40)
            .map(char::from)
            .collect();
        Ok(Identity {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            token,
        })
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
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// An admin kubeconfig for `https://127.0.0.1:{port}`.
    pub fn kubeconfig(&self, port: u16) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: wasmkube\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority-data: {ca}\nusers:\n- name: admin\n  user:\n    token: {}\ncontexts:\n- name: wasmkube\n  context:\n    cluster: wasmkube\n    user: admin\n    namespace: default\ncurrent-context: wasmkube\n",
            self.token
        )
    }
}

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
    fn the_identity_is_private_and_a_short_token_is_refused() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("pki");
        let identity = Identity::load_or_create(&dir).expect("generated");
        assert_eq!(mode(&dir), 0o700);
        for file in ["ca.crt", "server.crt", "server.key", "token"] {
            assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
        }
        let again = Identity::load_or_create(&dir).expect("loaded");
        assert_eq!(again.token, identity.token);
        std::fs::write(dir.join("token"), "\n").expect("emptied");
        let err = Identity::load_or_create(&dir).err().expect("refused");
        assert!(matches!(err, TlsError::ShortToken(_)), "{err}");
    }
}
