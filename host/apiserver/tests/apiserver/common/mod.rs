//! The harness of the API tests: a server on an embedded store in a temp dir, driven through `app()` with `oneshot`.

// The controller crate's gc and nodes suites use the parts this crate's suites do not.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use wasmkube_apiserver::{ClusterConfig, Server, app};
use wasmkube_store::embedded::EmbeddedStore;

/// The bearer token of the test servers.
pub const TOKEN: &str = "secret";

pub struct Api {
    pub server: Arc<Server>,
    _dir: tempfile::TempDir,
}

impl Api {
    /// A server with the `default` namespace.
    pub async fn new() -> Api {
        Self::with_config(ClusterConfig::default()).await
    }

    /// A server for the cluster `cluster` describes, with the `default` namespace.
    pub async fn with_config(cluster: ClusterConfig) -> Api {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(&dir.path().join("store.redb")).expect("store opens");
        let server = Server::with_config(store, Some(TOKEN.into()), cluster)
            .await
            .expect("server starts");
        let api = Api { server, _dir: dir };
        let (code, _) = api
            .call(
                "POST",
                "/api/v1/namespaces",
                Some(json!({"metadata": {"name": "default"}})),
            )
            .await;
        assert_eq!(code, StatusCode::CREATED);
        api
    }

    pub async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = app(self.server.clone())
            .oneshot(request)
            .await
            .expect("infallible");
        let code = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.raw(
            method,
            path,
            "application/json",
            body.map(|b| b.to_string()).unwrap_or_default(),
        )
        .await
    }

    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: String,
    ) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("Authorization", format!("Bearer {TOKEN}"))
            .header("Content-Type", content_type)
            .body(Body::from(body))
            .expect("valid request");
        self.send(request).await
    }
}

/// Tokio time that stands still until the test advances it (`tokio::time::advance`). Paused
/// time alone jumps to the next timer whenever the runtime waits, and it waits on every store
/// write (the embedded store's writer is a thread of its own); a blocking task in flight keeps
/// it from jumping. Needs a current-thread runtime that is not paused yet.
pub struct FrozenTime {
    _release: std::sync::mpsc::Sender<()>,
}

impl FrozenTime {
    pub fn new() -> FrozenTime {
        tokio::time::pause();
        let (release, held) = std::sync::mpsc::channel::<()>();
        tokio::task::spawn_blocking(move || {
            // Returns once the sender is dropped with the `FrozenTime`.
            let _ = held.recv();
        });
        FrozenTime { _release: release }
    }
}

/// Waits, in real time (up to 10 s), until `check` holds, letting the server's tasks run;
/// panics naming `what` otherwise. Works whether tokio time is frozen or not.
pub async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        pause_for_real(Duration::from_millis(5)).await;
    }
    panic!("{what}: never happened");
}

/// Lets the server's tasks run for `real` wall-clock time, whatever tokio time does.
pub async fn pause_for_real(real: Duration) {
    tokio::task::spawn_blocking(move || std::thread::sleep(real))
        .await
        .expect("sleeps");
}
