//! The agent's client of the apiserver: JSON over HTTPS with a bearer token, list and watch.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use futures::{Stream, StreamExt};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The longest an ordinary request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the kubeconfig {0}")]
    Kubeconfig(String),
    #[error("building the HTTPS client: {0}")]
    Client(reqwest::Error),
    #[error("{method} {path}: {source}")]
    Transport {
        method: Method,
        path: String,
        source: reqwest::Error,
    },
    #[error("{method} {path}: {status}: {message}")]
    Status {
        method: Method,
        path: String,
        status: StatusCode,
        message: String,
    },
}

impl ApiError {
    /// The HTTP status the apiserver answered with, if it answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Where the apiserver is and how to prove who we are.
#[derive(Clone, Debug)]
pub struct Connection {
    pub server: String,
    pub token: String,
    /// The PEM CA the server's certificate chains to; `None` trusts any certificate.
    pub ca_pem: Option<String>,
}

impl Connection {
    /// The first cluster and user of a kubeconfig (as `wasmkube server` writes one).
    pub fn from_kubeconfig(path: &Path) -> Result<Connection, ApiError> {
        let text = std::fs::read_to_string(path).map_err(|source| ApiError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let config: Value = serde_yaml::from_str(&text)
            .map_err(|e| ApiError::Kubeconfig(format!("{}: {e}", path.display())))?;
        let field = |pointer: &str| config.pointer(pointer).and_then(Value::as_str);
        let server = field("/clusters/0/cluster/server")
            .ok_or_else(|| ApiError::Kubeconfig(format!("{} names no server", path.display())))?;
        let token = field("/users/0/user/token")
            .ok_or_else(|| ApiError::Kubeconfig(format!("{} has no token", path.display())))?;
        let ca_pem = field("/clusters/0/cluster/certificate-authority-data")
            .map(|data| {
                base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .ok_or_else(|| {
                        ApiError::Kubeconfig(format!(
                            "{}: certificate-authority-data is not base64 PEM",
                            path.display()
                        ))
                    })
            })
            .transpose()?;
        Ok(Connection {
            server: server.trim_end_matches('/').to_string(),
            token: token.to_string(),
            ca_pem,
        })
    }
}

/// One watch event: `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK` or `ERROR`, and the object.
#[derive(Debug)]
pub struct Event {
    pub kind: String,
    pub object: Value,
}

/// A client of the apiserver. Cloning shares the connection pool.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    server: String,
}

impl Api {
    pub fn new(connection: &Connection) -> Result<Api, ApiError> {
        let mut headers = HeaderMap::new();
        let mut token = HeaderValue::from_str(&format!("Bearer {}", connection.token))
            .map_err(|_| ApiError::Kubeconfig("token is not a valid header value".into()))?;
        token.set_sensitive(true);
        headers.insert(AUTHORIZATION, token);
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .default_headers(headers)
            .tcp_keepalive(Duration::from_secs(30));
        builder = match &connection.ca_pem {
            Some(pem) => builder.tls_built_in_root_certs(false).add_root_certificate(
                reqwest::Certificate::from_pem(pem.as_bytes()).map_err(ApiError::Client)?,
            ),
            None => builder.danger_accept_invalid_certs(true),
        };
        Ok(Api {
            client: builder.build().map_err(ApiError::Client)?,
            server: connection.server.clone(),
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, &Value)>,
    ) -> Result<Value, ApiError> {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.server))
            .timeout(REQUEST_TIMEOUT);
        if let Some((content_type, body)) = body {
            request = request
                .header(CONTENT_TYPE, content_type)
                .body(body.to_string());
        }
        let transport = |source| ApiError::Transport {
            method: method.clone(),
            path: path.to_string(),
            source,
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            let message = value
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            return Err(ApiError::Status {
                method,
                path: path.to_string(),
                status,
                message,
            });
        }
        Ok(value)
    }

    pub async fn get(&self, path: &str) -> Result<Option<Value>, ApiError> {
        match self.send(Method::GET, path, None).await {
            Ok(value) => Ok(Some(value)),
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn create(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        self.send(Method::POST, path, Some(("application/json", body)))
            .await
    }

    pub async fn replace(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        self.send(Method::PUT, path, Some(("application/json", body)))
            .await
    }

    /// A JSON merge patch (RFC 7386).
    pub async fn merge_patch(&self, path: &str, patch: &Value) -> Result<Value, ApiError> {
        self.send(
            Method::PATCH,
            path,
            Some(("application/merge-patch+json", patch)),
        )
        .await
    }

    /// Deletes with a grace period; a missing object is not an error.
    pub async fn delete(&self, path: &str, grace_seconds: i64) -> Result<(), ApiError> {
        let options = json!({"apiVersion": "v1", "kind": "DeleteOptions",
            "gracePeriodSeconds": grace_seconds});
        match self
            .send(Method::DELETE, path, Some(("application/json", &options)))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A list: its items and the resourceVersion to watch from.
    pub async fn list(&self, path: &str) -> Result<(Vec<Value>, String), ApiError> {
        let list = self.send(Method::GET, path, None).await?;
        let version = list
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("0")
            .to_string();
        let items = match list.get("items") {
            Some(Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        };
        Ok((items, version))
    }

    /// Watches `path` (which carries its own query, e.g. a field selector) from `version`.
    pub async fn watch(&self, path: &str, version: &str) -> Result<Watch, ApiError> {
        let separator = if path.contains('?') { '&' } else { '?' };
        let full = format!(
            "{path}{separator}watch=true&allowWatchBookmarks=true&resourceVersion={version}"
        );
        let response = self
            .client
            .get(format!("{}{full}", self.server))
            .send()
            .await
            .map_err(|source| ApiError::Transport {
                method: Method::GET,
                path: full.clone(),
                source,
            })?;
        let status = response.status();
        if !status.is_success() {
            let message = response.text().await.unwrap_or_default();
            return Err(ApiError::Status {
                method: Method::GET,
                path: full,
                status,
                message,
            });
        }
        Ok(Watch {
            body: Box::pin(response.bytes_stream()),
            buffer: Vec::new(),
            path: full,
        })
    }
}

/// An open watch: newline-delimited JSON events off the response body.
pub struct Watch {
    body: std::pin::Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: Vec<u8>,
    path: String,
}

impl Watch {
    /// The next event; `None` when the server closed the watch.
    pub async fn next(&mut self) -> Option<Result<Event, ApiError>> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                let Ok(event) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                let kind = event["type"].as_str().unwrap_or_default().to_string();
                let object = event.get("object").cloned().unwrap_or(Value::Null);
                return Some(Ok(Event { kind, object }));
            }
            match self.body.next().await? {
                Ok(chunk) => self.buffer.extend_from_slice(&chunk),
                Err(source) => {
                    return Some(Err(ApiError::Transport {
                        method: Method::GET,
                        path: self.path.clone(),
                        source,
                    }));
                }
            }
        }
    }
}
