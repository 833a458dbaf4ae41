//! Where the apiservers are and how to prove who we are: a bearer token or a client
//! certificate, read from a kubeconfig's current context, and the HTTPS client that presents it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error("the apiserver address {0:?} is not an http(s) URL of at most 512 bytes")]
    BadServer(String),
    #[error("more than {MAX_SERVERS} apiserver addresses")]
    TooManyServers,
    #[error("the bearer token is not a valid header value")]
    BadToken,
    #[error("building the HTTPS client: {0}")]
    Client(#[from] reqwest::Error),
}

/// How the client proves who it is.
#[derive(Clone)]
pub enum Credential {
    /// A bearer token.
    Token(String),
    /// A client certificate (the subject's CN the user, O its groups) and its private key, PEM.
    Certificate { cert_pem: String, key_pem: String },
    /// None: `system:anonymous`, which may read `kube-public/cluster-info` and nothing else.
    Anonymous,
}

impl std::fmt::Debug for Credential {
    /// Says which kind, never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Token(_) => f.write_str("Token(..)"),
            Credential::Certificate { .. } => f.write_str("Certificate(..)"),
            Credential::Anonymous => f.write_str("Anonymous"),
        }
    }
}

/// The kubeconfig cluster extension that names the other apiservers a node agent fails over
/// to: `extensions: [{name: servers.wasmkube.io, extension: {servers: [URL, ...]}}]` (kubectl
/// ignores it and uses `server`).
pub const SERVERS_EXTENSION: &str = "servers.wasmkube.io";

/// The most apiserver addresses a connection may name.
pub const MAX_SERVERS: usize = 16;

/// How long connecting to an apiserver may take before the next one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the apiservers are and how to prove who we are.
#[derive(Clone, Debug)]
pub struct Connection {
    /// `https://HOST:PORT`, no trailing slash: the apiserver (or the load balancer in front of
    /// several) tried first.
    pub server: String,
    /// The other apiservers, in the order they are tried when `server` fails; none of them is
    /// `server`.
    pub more_servers: Vec<String>,
    pub credential: Credential,
    /// The PEM CA the server's certificate chains to; `None` trusts any certificate.
    pub ca_pem: Option<String>,
}

impl Connection {
    /// The cluster and user of a kubeconfig's current context (its first if it names none): a
    /// token or a client certificate, given inline (`*-data`) or as files, relative to the
    /// kubeconfig's directory as kubectl reads them.
    pub fn from_kubeconfig(path: &Path) -> Result<Connection, ConnectionError> {
        let text = read(path)?;
        let bad = |message: String| ConnectionError::Kubeconfig {
            path: path.display().to_string(),
            message,
        };
        let config: Value = serde_yaml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let named = |list: &str, name: Option<&str>| {
            let entries = config[list].as_array().into_iter().flatten();
            match name {
                Some(name) => entries.into_iter().find(|e| e["name"] == name),
                None => entries.into_iter().next(),
            }
        };
        let current = config["current-context"].as_str().filter(|c| !c.is_empty());
        let context = named("contexts", current).map(|c| &c["context"]);
        let cluster = named("clusters", context.and_then(|c| c["cluster"].as_str()))
            .map(|c| &c["cluster"])
            .ok_or_else(|| bad("names no cluster".into()))?;
        let user = named("users", context.and_then(|c| c["user"].as_str()))
            .map(|u| &u["user"])
            .ok_or_else(|| bad("names no user".into()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let pem = |entry: &Value, field: &str| -> Result<Option<String>, ConnectionError> {
            if let Some(data) = entry[format!("{field}-data")].as_str() {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .map_err(|_| bad(format!("{field}-data is not base64")))?;
                return String::from_utf8(bytes)
                    .map(Some)
                    .map_err(|_| bad(format!("{field}-data is not PEM text")));
            }
            entry[field]
                .as_str()
                .map(|file| read(&dir.join(PathBuf::from(file))))
                .transpose()
        };
        let server = cluster["server"]
            .as_str()
            .ok_or_else(|| bad("names no server".into()))?;
        let credential = match (
            user["token"].as_str(),
            pem(user, "client-certificate")?,
            pem(user, "client-key")?,
        ) {
            (_, Some(cert_pem), Some(key_pem)) => Credential::Certificate { cert_pem, key_pem },
            (Some(token), _, _) => Credential::Token(token.to_string()),
            _ => return Err(bad("has no token and no client certificate and key".into())),
        };
        let more: Vec<&str> = cluster["extensions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["name"] == SERVERS_EXTENSION)
            .flat_map(|e| e["extension"]["servers"].as_array().into_iter().flatten())
            .map(|s| {
                s.as_str()
                    .ok_or_else(|| bad(format!("{SERVERS_EXTENSION}: not a string")))
            })
            .collect::<Result<_, _>>()?;
        let mut connection =
            Connection::to(server, credential, pem(cluster, "certificate-authority")?)?;
        connection.add_servers(more)?;
        Ok(connection)
    }

    /// A connection to the apiserver `server` (checked: an http(s) URL).
    pub fn to(
        server: &str,
        credential: Credential,
        ca_pem: Option<String>,
    ) -> Result<Connection, ConnectionError> {
        Ok(Connection {
            server: server_url(server)?,
            more_servers: Vec::new(),
            credential,
            ca_pem,
        })
    }

    /// Adds `servers` (checked: http(s) URLs) to those tried after `server`, leaving out any
    /// already named.
    pub fn add_servers<'a>(
        &mut self,
        servers: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), ConnectionError> {
        for server in servers {
            let server = server_url(server)?;
            if server != self.server && !self.more_servers.contains(&server) {
                if self.more_servers.len() + 1 >= MAX_SERVERS {
                    return Err(ConnectionError::TooManyServers);
                }
                self.more_servers.push(server);
            }
        }
        Ok(())
    }

    /// Every apiserver, `server` first.
    pub fn servers(&self) -> Vec<String> {
        std::iter::once(self.server.clone())
            .chain(self.more_servers.iter().cloned())
            .collect()
    }

    /// This connection as a kubeconfig that kubectl reads too: the CA and the credential
    /// inline, the other servers in the [`SERVERS_EXTENSION`].
    pub fn kubeconfig(&self) -> String {
        let b64 = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem);
        let mut cluster = format!("    server: '{}'\n", self.server);
        if let Some(ca_pem) = &self.ca_pem {
            cluster += &format!("    certificate-authority-data: {}\n", b64(ca_pem));
        }
        if !self.more_servers.is_empty() {
            let list: Vec<String> = self.more_servers.iter().map(|s| format!("'{s}'")).collect();
            cluster += &format!(
                "    extensions:\n    - name: {SERVERS_EXTENSION}\n      extension:\n        servers: [{}]\n",
                list.join(", ")
            );
        }
        let user = match &self.credential {
            Credential::Token(token) => format!("    token: {}\n", serde_json::json!(token)),
            Credential::Certificate { cert_pem, key_pem } => format!(
                "    client-certificate-data: {}\n    client-key-data: {}\n",
                b64(cert_pem),
                b64(key_pem)
            ),
            Credential::Anonymous => String::new(),
        };
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: wasmkube\n  cluster:\n{cluster}users:\n- name: node\n  user:\n{user}contexts:\n- name: node\n  context: {{cluster: wasmkube, user: node}}\ncurrent-context: node\n"
        )
    }

    /// An HTTPS client (rustls) that trusts the CA (or, with none, any certificate) and presents
    /// the credential, to be finished by the caller.
    pub fn client_builder(&self) -> Result<reqwest::ClientBuilder, ConnectionError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_keepalive(Duration::from_secs(30));
        builder = match &self.ca_pem {
            Some(pem) => builder
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes())?),
            None => builder.danger_accept_invalid_certs(true),
        };
        Ok(match &self.credential {
            Credential::Token(token) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| ConnectionError::BadToken)?;
                value.set_sensitive(true);
                builder.default_headers(HeaderMap::from_iter([(AUTHORIZATION, value)]))
            }
            Credential::Certificate { cert_pem, key_pem } => {
                let both = format!("{}\n{}", cert_pem.trim_end(), key_pem);
                builder.identity(reqwest::Identity::from_pem(both.as_bytes())?)
            }
            Credential::Anonymous => builder,
        })
    }
}

/// `server` as an apiserver address: an http(s) URL with a host, no trailing slash. Quotes and
/// whitespace are refused, so that it can be written into a kubeconfig as it is.
fn server_url(server: &str) -> Result<String, ConnectionError> {
    let bad = || ConnectionError::BadServer(server.chars().take(80).collect());
    let trimmed = server.trim_end_matches('/');
    if trimmed.len() > 512
        || trimmed.contains(['\'', '"', '\\'])
        || trimmed.contains(char::is_whitespace)
    {
        return Err(bad());
    }
    let url = reqwest::Url::parse(trimmed).map_err(|_| bad())?;
    if !matches!(url.scheme(), "https" | "http") || url.host().is_none() {
        return Err(bad());
    }
    Ok(trimmed.to_string())
}

fn read(path: &Path) -> Result<String, ConnectionError> {
    std::fs::read_to_string(path).map_err(|source| ConnectionError::Read {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIC\n-----END PRIVATE KEY-----\n";

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    fn write(dir: &Path, yaml: &str) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(&path, yaml).expect("write");
        path
    }

    #[test]
    fn inline_client_certificate_of_the_current_context() {
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster: {{server: https://other:1}}\n- name: c\n  cluster:\n    server: https://10.0.0.1:6443/\n    certificate-authority-data: {ca}\nusers:\n- name: other\n  user: {{token: nope}}\n- name: u\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\ncontexts:\n- name: other\n  context: {{cluster: other, user: other}}\n- name: mine\n  context: {{cluster: c, user: u}}\ncurrent-context: mine\n",
            ca = b64(CERT),
            cert = b64(CERT),
            key = b64(KEY)
        );
        let c = Connection::from_kubeconfig(&write(dir.path(), &yaml)).expect("parse");
        assert_eq!(c.server, "https://10.0.0.1:6443");
        assert_eq!(c.ca_pem.as_deref(), Some(CERT));
        let Credential::Certificate { cert_pem, key_pem } = c.credential else {
            panic!("not a certificate: {:?}", c.credential);
        };
        assert_eq!((cert_pem.as_str(), key_pem.as_str()), (CERT, KEY));
    }

    #[test]
    fn certificate_files_relative_to_the_kubeconfig() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("pki")).expect("mkdir");
        std::fs::write(dir.path().join("pki/client.pem"), format!("{CERT}{KEY}")).expect("w");
        std::fs::write(dir.path().join("ca.crt"), CERT).expect("w");
        let yaml = "clusters:\n- name: c\n  cluster: {server: 'https://h:1', certificate-authority: ca.crt}\nusers:\n- name: u\n  user: {client-certificate: pki/client.pem, client-key: pki/client.pem}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n";
        let c = Connection::from_kubeconfig(&write(dir.path(), yaml)).expect("parse");
        assert_eq!(c.ca_pem.as_deref(), Some(CERT));
        assert!(
            matches!(&c.credential, Credential::Certificate { cert_pem, .. } if cert_pem.contains(KEY))
        );
    }

    #[test]
    fn token_and_no_current_context() {
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = "clusters:\n- name: c\n  cluster: {server: 'https://h:1'}\nusers:\n- name: u\n  user: {token: abc}\n";
        let c = Connection::from_kubeconfig(&write(dir.path(), yaml)).expect("parse");
        assert!(matches!(&c.credential, Credential::Token(t) if t == "abc"));
        assert_eq!(c.ca_pem, None);
        assert_eq!(format!("{:?}", c.credential), "Token(..)");
    }

    #[test]
    fn no_credential_or_bad_data_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let none = "clusters:\n- name: c\n  cluster: {server: 'https://h:1'}\nusers:\n- name: u\n  user: {client-certificate-data: x}\n";
        let e = Connection::from_kubeconfig(&write(dir.path(), none)).expect_err("no key");
        assert!(
            e.to_string()
                .contains("client-certificate-data is not base64"),
            "{e}"
        );
        let half = format!(
            "clusters:\n- name: c\n  cluster: {{server: 'https://h:1'}}\nusers:\n- name: u\n  user: {{client-certificate-data: {}}}\n",
            b64(CERT)
        );
        let e = Connection::from_kubeconfig(&write(dir.path(), &half)).expect_err("no key");
        assert!(
            e.to_string().contains("no token and no client certificate"),
            "{e}"
        );
        let missing = "clusters:\n- name: c\n  cluster: {server: 'https://h:1'}\nusers:\n- name: u\n  user: {client-certificate: gone.pem, client-key: gone.pem}\n";
        let e = Connection::from_kubeconfig(&write(dir.path(), missing)).expect_err("missing");
        assert!(e.to_string().contains("gone.pem"), "{e}");
    }

    #[test]
    fn more_servers_come_from_the_extension_and_bad_ones_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = format!(
            "clusters:\n- name: c\n  cluster:\n    server: https://a:1/\n    extensions:\n    - name: other\n      extension: {{servers: ['https://x:1']}}\n    - name: {SERVERS_EXTENSION}\n      extension: {{servers: ['https://b:1', 'https://a:1', 'http://c:2/']}}\nusers:\n- name: u\n  user: {{token: t}}\n"
        );
        let c = Connection::from_kubeconfig(&write(dir.path(), &yaml)).expect("parse");
        assert_eq!(c.servers(), ["https://a:1", "https://b:1", "http://c:2"]);
        let written = c.kubeconfig();
        let again = Connection::from_kubeconfig(&write(dir.path(), &written)).expect("again");
        assert_eq!(again.servers(), c.servers());
        assert!(matches!(again.credential, Credential::Token(t) if t == "t"));

        let not_text = yaml.replace("'http://c:2/'", "3");
        let e = Connection::from_kubeconfig(&write(dir.path(), &not_text)).expect_err("3");
        assert!(e.to_string().contains("not a string"), "{e}");
        let mut c = Connection::to("https://a", Credential::Anonymous, None).expect("a");
        for bad in [
            "ftp://b",
            "https://",
            "b:1",
            "https://b c",
            "https://b'",
            &format!("https://{}", "b".repeat(600)),
        ] {
            let e = c.add_servers([bad]).expect_err(bad);
            assert!(matches!(e, ConnectionError::BadServer(_)), "{bad}: {e}");
        }
        let many: Vec<String> = (0..MAX_SERVERS).map(|i| format!("https://h{i}")).collect();
        let e = c
            .add_servers(many.iter().map(String::as_str))
            .expect_err("too many");
        assert!(matches!(e, ConnectionError::TooManyServers), "{e}");
    }

    #[test]
    fn a_client_presents_a_real_certificate_and_refuses_a_broken_one() {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(Vec::<String>::new())
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let mut connection = Connection {
            server: "https://127.0.0.1:1".into(),
            more_servers: Vec::new(),
            credential: Credential::Certificate {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            },
            ca_pem: Some(cert.pem()),
        };
        connection
            .client_builder()
            .expect("builder")
            .build()
            .expect("client");
        connection.credential = Credential::Certificate {
            cert_pem: cert.pem(),
            key_pem: String::new(),
        };
        let built = connection
            .client_builder()
            .and_then(|b| Ok(b.build()?))
            .map(drop);
        assert!(
            matches!(built, Err(ConnectionError::Client(_))),
            "{built:?}"
        );
        connection.credential = Credential::Token("a\nb".into());
        assert!(matches!(
            connection.client_builder(),
            Err(ConnectionError::BadToken)
        ));
    }
}
