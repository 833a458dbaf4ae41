//! pods/log, pods/exec, pods/attach and pods/portforward before they reach a node agent: which
//! container, which node, and what is not a streaming request.

use crate::common;

use http::StatusCode;
use serde_json::{Value, json};

use common::Api;

async fn pod(api: &Api, name: &str, node: Option<&str>, containers: &[&str]) {
    let containers: Vec<Value> = containers
        .iter()
        .map(|c| json!({"name": c, "image": "busybox"}))
        .collect();
    let mut spec = json!({"containers": containers});
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    let (code, body) = api
        .call(
            "POST",
            "/api/v1/namespaces/default/pods",
            Some(json!({"metadata": {"name": name}, "spec": spec})),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
}

fn message(body: &Value) -> &str {
    body["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn log_requests_name_a_container_of_a_pod_on_a_node() {
    let api = Api::new().await;
    pod(&api, "pair", Some("n1"), &["a", "b"]).await;
    pod(&api, "waiting", None, &["a"]).await;

    let (code, body) = api
        .call("GET", "/api/v1/namespaces/default/pods/pair/log", None)
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&body),
        "a container name must be specified for pod pair, choose one of: [a b]"
    );
    let (code, body) = api
        .call(
            "GET",
            "/api/v1/namespaces/default/pods/pair/log?container=c",
            None,
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(message(&body), "container c is not valid for pod pair");
    // The container is fine; the node is not there.
    let (code, body) = api
        .call(
            "GET",
            "/api/v1/namespaces/default/pods/pair/log?container=a",
            None,
        )
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(message(&body), "nodes \"n1\" not found");

    let (code, body) = api
        .call("GET", "/api/v1/namespaces/default/pods/waiting/log", None)
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(message(&body), "pod waiting does not have a host assigned");
    let (code, body) = api
        .call("GET", "/api/v1/namespaces/default/pods/nope/log", None)
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(message(&body), "pods \"nope\" not found");
    let (code, _) = api
        .call("POST", "/api/v1/namespaces/default/pods/waiting/log", None)
        .await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn exec_attach_and_port_forward_must_be_upgrades() {
    let api = Api::new().await;
    let node = json!({"metadata": {"name": "n1"}, "status": {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 1}}}});
    let (code, body) = api.call("POST", "/api/v1/nodes", Some(node)).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    pod(&api, "one", Some("n1"), &["a"]).await;
    for path in [
        "exec?command=ls&stdout=true",
        "attach?stdout=true",
        "portforward",
    ] {
        let (code, body) = api
            .call(
                "POST",
                &format!("/api/v1/namespaces/default/pods/one/{path}"),
                None,
            )
            .await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(message(&body), "Upgrade request required");
    }
    // Without the bearer token, nothing reaches an agent.
    let request = http::Request::builder()
        .uri("/api/v1/namespaces/default/pods/one/log")
        .body(axum::body::Body::empty())
        .expect("request");
    let (code, _) = api.send(request).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
}
