//! The agent's client of the apiserver: JSON over HTTPS with a token or client certificate, list
//! and watch.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::{Stream, StreamExt};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub use crate::connection::{Connection, ConnectionError, Credential};

/// The longest an ordinary request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Connection(#[from] ConnectionError),
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

/// The HTTPS client of `connection`.
fn client(connection: &Connection) -> Result<reqwest::Client, ConnectionError> {
    Ok(connection.client_builder()?.build()?)
}

/// One watch event: `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK` or `ERROR`, and the object.
#[derive(Debug)]
pub struct Event {
    pub kind: String,
    pub object: Value,
}

/// A client of the apiserver. Cloning shares the connection pool, and a new credential
/// ([`Api::reconnect`]) is used by every clone.
#[derive(Clone)]
pub struct Api {
    client: Arc<ArcSwap<reqwest::Client>>,
    server: String,
}

impl Api {
    pub fn new(connection: &Connection) -> Result<Api, ApiError> {
        Ok(Api {
            client: Arc::new(ArcSwap::from_pointee(client(connection)?)),
            server: connection.server.clone(),
        })
    }

    /// Requests from now on use `connection`'s credential and CA (a rotated client
    /// certificate); those under way finish with the old one.
    pub fn reconnect(&self, connection: &Connection) -> Result<(), ApiError> {
        self.client.store(Arc::new(client(connection)?));
        Ok(())
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, &Value)>,
    ) -> Result<Value, ApiError> {
        let mut request = self
            .client
            .load()
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
            .load()
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
