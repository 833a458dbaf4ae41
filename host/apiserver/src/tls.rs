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
            return Ok(Identity {
                ca_pem: read(&files[0])?,
                cert_pem: read(&files[1])?,
                key_pem: read(&files[2])?,
                token: read(&files[3])?.trim().to_string(),
            });
        }
        let identity = Identity::generate()?;
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        for (path, text) in files.iter().zip([
            &identity.ca_pem,
            &identity.cert_pem,
            &identity.key_pem,
            &identity.token,
        ]) {
            std::fs::write(path, text).map_err(io(path))?;
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
