//! Garbage collection and namespace lifecycle through the API: Background, Foreground and Orphan.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use wasmkube_apiserver::{Server, app, controllers};
use wasmkube_store::embedded::EmbeddedStore;

async fn call(server: &Arc<Server>, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", "application/json")
        .body(Body::from(if body.is_null() {
            String::new()
        } else {
            body.to_string()
        }))
        .expect("valid request");
    let response = app(server.clone())
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

async fn setup() -> (Arc<Server>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).expect("store opens");
    let server = Server::new(store, None).await.expect("server starts");
    controllers::spawn(server.clone());
    for ns in ["default", "team"] {
        call(
            &server,
            "POST",
            "/api/v1/namespaces",
            json!({"metadata": {"name": ns}}),
        )
        .await;
    }
    (server, dir)
}

/// Creates `owner` and two ConfigMaps owned by it; returns the owner's uid.
async fn family(server: &Arc<Server>, ns: &str) -> String {
    let (_, owner) = call(
        server,
        "POST",
        &format!("/api/v1/namespaces/{ns}/configmaps"),
        json!({"metadata": {"name": "owner"}}),
    )
    .await;
    let uid = owner["metadata"]["uid"].as_str().expect("uid").to_string();
    for child in ["child-a", "child-b"] {
        let body = json!({"metadata": {"name": child, "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}]}});
        let (code, _) = call(
            server,
            "POST",
            &format!("/api/v1/namespaces/{ns}/configmaps"),
            body,
        )
        .await;
        assert_eq!(code, StatusCode::CREATED);
    }
    uid
}

async fn names(server: &Arc<Server>, ns: &str) -> Vec<String> {
    let (_, list) = call(
        server,
        "GET",
        &format!("/api/v1/namespaces/{ns}/configmaps"),
        Value::Null,
    )
    .await;
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["metadata"]["name"].as_str().map(String::from))
        .collect()
}

async fn until(server: &Arc<Server>, ns: &str, want: &[&str]) {
    for _ in 0..200 {
        if names(server, ns).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{ns} holds {:?}, wanted {want:?}", names(server, ns).await);
}

#[tokio::test]
async fn background_deletes_dependents_after_the_owner() {
    let (server, _dir) = setup().await;
    family(&server, "default").await;
    let (code, _) = call(
        &server,
        "DELETE",
        "/api/v1/namespaces/default/configmaps/owner",
        Value::Null,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    until(&server, "default", &[]).await;
}

#[tokio::test]
async fn orphan_keeps_dependents_without_the_reference() {
    let (server, _dir) = setup().await;
    family(&server, "default").await;
    call(
        &server,
        "DELETE",
        "/api/v1/namespaces/default/configmaps/owner",
        json!({"propagationPolicy": "Orphan"}),
    )
    .await;
    until(&server, "default", &["child-a", "child-b"]).await;
    let (_, child) = call(
        &server,
        "GET",
        "/api/v1/namespaces/default/configmaps/child-a",
        Value::Null,
    )
    .await;
    assert!(
        child["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{child}"
    );
}

#[tokio::test]
async fn foreground_deletes_dependents_before_the_owner() {
    let (server, _dir) = setup().await;
    family(&server, "default").await;
    // A finalizer on one child holds the whole foreground deletion.
    let hold = r#"{"metadata":{"finalizers":["example.com/hold"]}}"#;
    let request = Request::builder()
        .method("PATCH")
        .uri("/api/v1/namespaces/default/configmaps/child-a")
        .header("Content-Type", "application/merge-patch+json")
        .body(Body::from(hold))
        .expect("valid");
    app(server.clone())
        .oneshot(request)
        .await
        .expect("infallible");
    let (code, owner) = call(
        &server,
        "DELETE",
        "/api/v1/namespaces/default/configmaps/owner",
        json!({"propagationPolicy": "Foreground"}),
    )
    .await;
    assert_eq!(code, StatusCode::ACCEPTED);
    assert!(owner["metadata"]["deletionTimestamp"].is_string());
    until(&server, "default", &["child-a", "owner"]).await;
    let release = r#"{"metadata":{"finalizers":null}}"#;
    let request = Request::builder()
        .method("PATCH")
        .uri("/api/v1/namespaces/default/configmaps/child-a")
        .header("Content-Type", "application/merge-patch+json")
        .body(Body::from(release))
        .expect("valid");
    let response = app(server.clone())
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
    assert_eq!(code, StatusCode::OK, "{}", String::from_utf8_lossy(&bytes));
    until(&server, "default", &[]).await;
}

#[tokio::test]
async fn deleting_a_namespace_empties_it_first() {
    let (server, _dir) = setup().await;
    family(&server, "team").await;
    let (code, ns) = call(&server, "DELETE", "/api/v1/namespaces/team", Value::Null).await;
    assert_eq!(code, StatusCode::ACCEPTED);
    assert_eq!(ns["status"]["phase"], "Terminating");
    let (code, status) = call(
        &server,
        "POST",
        "/api/v1/namespaces/team/configmaps",
        json!({"metadata": {"name": "late"}}),
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{status}");
    for _ in 0..200 {
        let (code, _) = call(&server, "GET", "/api/v1/namespaces/team", Value::Null).await;
        if code == StatusCode::NOT_FOUND {
            assert!(names(&server, "team").await.is_empty());
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("namespace team was never removed");
}
