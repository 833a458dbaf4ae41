//! The harness of the API tests: a server on an embedded store in a temp dir, driven through `app()` with `oneshot`.

use std::sync::Arc;

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use wasmkube_apiserver::{Server, app};
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
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(&dir.path().join("store.redb")).expect("store opens");
        let server = Server::new(store, Some(TOKEN.into()))
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
