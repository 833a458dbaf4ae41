//! Garbage collection and namespace lifecycle through the API: Background, Foreground and Orphan; a namespace waits for its pods' nodes.

use crate::apiserver as common;

use std::time::Duration;

use common::Api;
use http::StatusCode;
use serde_json::{Value, json};
use wasmkube_apiserver::node_agent;
use wasmkube_controller::native;

async fn call(api: &Api, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
    api.call(method, path, (!body.is_null()).then_some(body))
        .await
}

/// A server with the host controllers running and namespaces `default` and `team`.
async fn setup() -> Api {
    let api = Api::new().await;
    native::spawn(api.server.clone());
    call(
        &api,
        "POST",
        "/api/v1/namespaces",
        json!({"metadata": {"name": "team"}}),
    )
    .await;
    api
}

/// Creates `owner` and two ConfigMaps owned by it; returns the owner's uid.
async fn family(api: &Api, ns: &str) -> String {
    let (_, owner) = call(
        api,
        "POST",
        &format!("/api/v1/namespaces/{ns}/configmaps"),
        json!({"metadata": {"name": "owner"}}),
    )
    .await;
    let uid = owner["metadata"]["uid"].as_str().expect("uid").to_string();
    for child in ["child-a", "child-b"] {
        let body = json!({"metadata": {"name": child, "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}]}});
        let (code, _) = call(
            api,
            "POST",
            &format!("/api/v1/namespaces/{ns}/configmaps"),
            body,
        )
        .await;
        assert_eq!(code, StatusCode::CREATED);
    }
    uid
}

async fn names(api: &Api, ns: &str) -> Vec<String> {
    let (_, list) = call(
        api,
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

async fn until(api: &Api, ns: &str, want: &[&str]) {
    for _ in 0..200 {
        if names(api, ns).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{ns} holds {:?}, wanted {want:?}", names(api, ns).await);
}

#[tokio::test]
async fn background_deletes_dependents_after_the_owner() {
    let api = setup().await;
    family(&api, "default").await;
    let (code, _) = call(
        &api,
        "DELETE",
        "/api/v1/namespaces/default/configmaps/owner",
        Value::Null,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    until(&api, "default", &[]).await;
}

#[tokio::test]
async fn orphan_keeps_dependents_without_the_reference() {
    let api = setup().await;
    family(&api, "default").await;
    call(
        &api,
        "DELETE",
        "/api/v1/namespaces/default/configmaps/owner",
        json!({"propagationPolicy": "Orphan"}),
    )
    .await;
    until(&api, "default", &["child-a", "child-b"]).await;
    let (_, child) = call(
        &api,
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
    let api = setup().await;
    family(&api, "default").await;
    // A finalizer on one child holds the whole foreground deletion.
    let hold = r#"{"metadata":{"finalizers":["example.com/hold"]}}"#;
    let child = "/api/v1/namespaces/default/configmaps/child-a";
    let (code, _) = api
        .raw("PATCH", child, "application/merge-patch+json", hold.into())
        .await;
    assert_eq!(code, StatusCode::OK);
    let (code, owner) = call(
        &api,
        "DELETE",
        "/api/v1/namespaces/default/configmaps/owner",
        json!({"propagationPolicy": "Foreground"}),
    )
    .await;
    assert_eq!(code, StatusCode::ACCEPTED);
    assert!(owner["metadata"]["deletionTimestamp"].is_string());
    until(&api, "default", &["child-a", "owner"]).await;
    let release = r#"{"metadata":{"finalizers":null}}"#;
    let (code, status) = api
        .raw(
            "PATCH",
            child,
            "application/merge-patch+json",
            release.into(),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{status}");
    until(&api, "default", &[]).await;
}

#[tokio::test]
async fn deleting_a_namespace_empties_it_first() {
    let api = setup().await;
    family(&api, "team").await;
    let (code, ns) = call(&api, "DELETE", "/api/v1/namespaces/team", Value::Null).await;
    assert_eq!(code, StatusCode::ACCEPTED);
    assert_eq!(ns["status"]["phase"], "Terminating");
    let (code, status) = call(
        &api,
        "POST",
        "/api/v1/namespaces/team/configmaps",
        json!({"metadata": {"name": "late"}}),
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{status}");
    for _ in 0..200 {
        let (code, _) = call(&api, "GET", "/api/v1/namespaces/team", Value::Null).await;
        if code == StatusCode::NOT_FOUND {
            assert!(names(&api, "team").await.is_empty());
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("namespace team was never removed");
}

#[tokio::test]
async fn a_namespace_waits_for_its_pods_nodes() {
    let api = Api::new().await;
    native::spawn(api.server.clone());
    let (code, _) = api
        .call(
            "POST",
            "/api/v1/namespaces",
            Some(json!({"metadata": {"name": "team"}})),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED);
    let pod = json!({"metadata": {"name": "web"},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}});
    let (code, pod) = call(&api, "POST", "/api/v1/namespaces/team/pods", pod).await;
    assert_eq!(code, StatusCode::CREATED, "{pod}");
    api.call("DELETE", "/api/v1/namespaces/team", None).await;
    let path = "/api/v1/namespaces/team/pods/web";
    let mut terminating = Value::Null;
    common::until("the pod marked for deletion", async || {
        terminating = api.call("GET", path, None).await.1;
        terminating["metadata"]["deletionGracePeriodSeconds"] == 30
    })
    .await;
    let (_, ns) = api.call("GET", "/api/v1/namespaces/team", None).await;
    assert_eq!(ns["status"]["phase"], "Terminating");

    // Its node stops it: the pod goes, then the namespace.
    node_agent::finish_deletion(&api.server, &terminating)
        .await
        .expect("deleted");
    common::until("the namespace removed", async || {
        api.call("GET", "/api/v1/namespaces/team", None).await.0 == StatusCode::NOT_FOUND
    })
    .await;
}
