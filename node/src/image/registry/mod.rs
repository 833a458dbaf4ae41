//! An OCI distribution (Docker Registry HTTP API v2) client: manifests and blobs, checked
//! against their digests, with bearer-token or basic authentication.

mod auth;
mod check;
mod session;

use std::net::IpAddr;
use std::time::Duration;

use reqwest::{Method, StatusCode};

pub use auth::{Credential, Keychain};
pub use session::{Download, Session};

/// How long to wait for a registry to accept a connection: an unreachable one fails quickly.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a response may go without sending anything (a layer download may take longer).
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest manifest or index accepted.
pub(crate) const MAX_MANIFEST: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("building the registry client: {0}")]
    Client(reqwest::Error),
    #[error("{0:?} is not a registry/repository reference")]
    Reference(String),
    #[error("{method} {url}: {reason}")]
    Request {
        method: Method,
        url: String,
        reason: String,
    },
    #[error("{method} {url}: {status}{detail}")]
    Status {
        method: Method,
        url: String,
        status: StatusCode,
        detail: String,
    },
    #[error("{url}: unauthorized: {reason}")]
    Unauthorized { url: String, reason: String },
    #[error("{url}: the registry named no digest for the manifest")]
    NoDigest { url: String },
    #[error("{digest}: the registry sent more than the {expected} bytes of its descriptor")]
    TooLong { digest: String, expected: u64 },
    #[error("{digest}: the registry sent {size} bytes, expected {expected}")]
    Size {
        digest: String,
        expected: u64,
        size: u64,
    },
    #[error("{digest}: the registry sent bytes hashing to {actual}")]
    Digest { digest: String, actual: String },
    #[error("{digest}: only sha256 digests can be checked")]
    Algorithm { digest: String },
    #[error("manifest {manifest} is {size} bytes, more than the {MAX_MANIFEST} accepted")]
    ManifestTooLarge { manifest: String, size: u64 },
}

/// A normalized image reference taken apart: `registry/repository:tag` or `…@digest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]` as written (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    pub repository: String,
    /// The tag or the digest.
    pub object: String,
}

impl Reference {
    /// Parses a reference in the form [`super::normalize`] gives.
    pub fn parse(normalized: &str) -> Result<Reference, RegistryError> {
        let invalid = || RegistryError::Reference(normalized.to_string());
        let (registry, rest) = normalized.split_once('/').ok_or_else(invalid)?;
        let (repository, object) = rest
            .split_once('@')
            .or_else(|| rest.rsplit_once(':'))
            .ok_or_else(invalid)?;
        if registry.is_empty() || repository.is_empty() || object.is_empty() {
            return Err(invalid());
        }
        Ok(Reference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            object: object.to_string(),
        })
    }
}

/// Talks to registries: one HTTP client (its connections kept) for all of them.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    /// Registries (`host[:port]`) reached over plain HTTP besides the loopback ones.
    insecure: Vec<String>,
}

impl Client {
    pub fn new(insecure: Vec<String>) -> Result<Client, RegistryError> {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("wasmkube/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(RegistryError::Client)?;
        Ok(Client { http, insecure })
    }

    /// A session with the repository of `reference`, authenticating with `credential` when the
    /// registry asks for it.
    pub fn session(&self, reference: &Reference, credential: Option<Credential>) -> Session<'_> {
        let base = format!(
            "{}/v2/{}",
            endpoint(&reference.registry, &self.insecure),
            reference.repository
        );
        Session::new(&self.http, base, reference.repository.clone(), credential)
    }
}

/// The scheme and host to reach a registry at: Docker Hub's API is on registry-1.docker.io;
/// loopback registries and the `insecure` ones are spoken to over plain HTTP.
fn endpoint(registry: &str, insecure: &[String]) -> String {
    if registry == "docker.io" {
        return "https://registry-1.docker.io".to_string();
    }
    let host = match registry.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => registry.split(':').next().unwrap_or_default(),
    };
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback || insecure.iter().any(|i| i == registry) {
        format!("http://{registry}")
    } else {
        format!("https://{registry}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_taken_apart() {
        let r = Reference::parse("docker.io/library/busybox:latest").expect("a reference");
        assert_eq!(
            (
                r.registry.as_str(),
                r.repository.as_str(),
                r.object.as_str()
            ),
            ("docker.io", "library/busybox", "latest")
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("127.0.0.1:5000/demo/busybox@{digest}"))
            .expect("a reference");
        assert_eq!(
            (
                r.registry.as_str(),
                r.repository.as_str(),
                r.object.as_str()
            ),
            ("127.0.0.1:5000", "demo/busybox", digest.as_str())
        );
        assert!(Reference::parse("busybox").is_err());
        assert!(Reference::parse("docker.io/busybox").is_err());
    }

    #[test]
    fn endpoints_by_registry() {
        let insecure = vec!["registry.lan:5000".to_string()];
        assert_eq!(
            endpoint("docker.io", &insecure),
            "https://registry-1.docker.io"
        );
        assert_eq!(
            endpoint("127.0.0.1:5000", &insecure),
            "http://127.0.0.1:5000"
        );
        assert_eq!(endpoint("localhost", &insecure), "http://localhost");
        assert_eq!(endpoint("[::1]:5000", &insecure), "http://[::1]:5000");
        assert_eq!(
            endpoint("registry.lan:5000", &insecure),
            "http://registry.lan:5000"
        );
        assert_eq!(endpoint("registry.lan", &insecure), "https://registry.lan");
        assert_eq!(endpoint("quay.io", &insecure), "https://quay.io");
    }
}
