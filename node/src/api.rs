//! The agent's client of the apiservers: JSON over HTTPS with a token or client certificate, list
//! and watch, failing over to the next apiserver when one does not answer.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::{Stream, StreamExt};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub use crate::connection::{Connection, ConnectionError, Credential};
use crate::servers::Servers;

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

/// A client of the apiservers. Cloning shares the connection pool and the choice of server, and
/// a new credential ([`Api::reconnect`]) is used by every clone.
///
/// A request goes to the server in use; when it cannot connect, times out or gets a 5xx, the
/// server rests (see [`Servers`]) and the next one is in use. The request itself is sent again
/// to the next server unless it is a create that may have reached the failed one.
#[derive(Clone)]
pub struct Api {
    client: Arc<ArcSwap<reqwest::Client>>,
    servers: Arc<Servers>,
}

/// Whether an answer or error means the server is unwell, not the request wrong.
fn server_failed(result: &Result<reqwest::Response, reqwest::Error>) -> bool {
    match result {
        Ok(response) => response.status().is_server_error(),
        Err(e) => e.is_connect() || e.is_timeout() || e.is_request(),
    }
}

impl Api {
    pub fn new(connection: &Connection) -> Result<Api, ApiError> {
        Ok(Api {
            client: Arc::new(ArcSwap::from_pointee(client(connection)?)),
            servers: Arc::new(Servers::new(connection.servers())),
        })
    }

    /// The response of the first server that answers `request` (given a base URL) without
    /// failing; or the last failure. A create goes on to the next server only if it never
    /// reached the failed one.
    async fn exchange(
        &self,
        method: &Method,
        request: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> (usize, Result<reqwest::Response, reqwest::Error>) {
        let client = self.client.load_full();
        let mut order = self.servers.order().into_iter();
        let mut index = order.next().unwrap_or_default();
        loop {
            let result = request(&client, self.servers.url(index)).send().await;
            if !server_failed(&result) {
                self.servers.answered(index);
                return (index, result);
            }
            self.servers.failed(index);
            let unsent = matches!(&result, Err(e) if e.is_connect());
            match order.next() {
                Some(next) if *method != Method::POST || unsent => index = next,
                _ => return (index, result),
            }
        }
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
        let body = body.map(|(content_type, body)| (content_type, body.to_string()));
        let request = |client: &reqwest::Client, server: &str| {
            let request = client
                .request(method.clone(), format!("{server}{path}"))
                .timeout(REQUEST_TIMEOUT);
            match &body {
                Some((content_type, body)) => request
                    .header(CONTENT_TYPE, *content_type)
                    .body(body.clone()),
                None => request,
            }
        };
        let transport = |source| ApiError::Transport {
            method: method.clone(),
            path: path.to_string(),
            source,
        };
        let (index, response) = self.exchange(&method, request).await;
        let response = response.map_err(transport)?;
        let status = response.status();
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(e) => {
                self.servers.failed(index);
                return Err(transport(e));
            }
        };
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
        let (index, response) = self
            .exchange(&Method::GET, |client, server| {
                client.get(format!("{server}{full}"))
            })
            .await;
        let response = response.map_err(|source| ApiError::Transport {
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
            server: (self.servers.clone(), index),
        })
    }
}

/// An open watch: newline-delimited JSON events off the response body.
pub struct Watch {
    body: std::pin::Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: Vec<u8>,
    path: String,
    /// The server it is open on, told when the watch breaks.
    server: (Arc<Servers>, usize),
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
                    let (servers, index) = &self.server;
                    servers.failed(*index);
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::routing::get;

    use super::*;

    /// A server on a free port answering `status` to everything, counting the requests.
    async fn serve(status: StatusCode) -> (String, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let answer = move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async move { (status, axum::Json(json!({"message": "m"}))) }
        };
        let app = axum::Router::new().route("/x", get(answer.clone()).post(answer));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{address}"), hits)
    }

    /// A port nothing listens on.
    fn dead() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", listener.local_addr().expect("address"))
    }

    fn api(servers: &[&str]) -> Api {
        let mut connection =
            Connection::to(servers[0], Credential::Anonymous, None).expect("connection");
        connection
            .add_servers(servers[1..].iter().copied())
            .expect("servers");
        Api::new(&connection).expect("api")
    }

    #[tokio::test]
    async fn a_request_fails_over_and_sticks_to_the_server_that_answers() {
        let (unwell, unwell_hits) = serve(StatusCode::SERVICE_UNAVAILABLE).await;
        let (well, well_hits) = serve(StatusCode::OK).await;
        let api = api(&[&dead(), &unwell, &well]);
        assert!(api.get("/x").await.expect("failed over").is_some());
        assert!(api.get("/x").await.expect("stuck").is_some());
        assert_eq!(unwell_hits.load(Ordering::SeqCst), 1);
        assert_eq!(well_hits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_create_that_reached_a_failing_server_is_not_sent_again() {
        let (unwell, unwell_hits) = serve(StatusCode::INTERNAL_SERVER_ERROR).await;
        let (well, well_hits) = serve(StatusCode::CREATED).await;
        let api = api(&[&unwell, &well]);
        let e = api.create("/x", &json!({})).await.expect_err("a 500");
        assert_eq!(e.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
        assert_eq!(well_hits.load(Ordering::SeqCst), 0);
        // The next one goes to the other server; one that never connected goes on at once.
        api.create("/x", &json!({}))
            .await
            .expect("the other server");
        assert_eq!(unwell_hits.load(Ordering::SeqCst), 1);
        let api = self::api(&[&dead(), &well]);
        api.create("/x", &json!({}))
            .await
            .expect("past a dead server");
        assert_eq!(well_hits.load(Ordering::SeqCst), 2);
    }
}
