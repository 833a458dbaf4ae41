//! pods/log, pods/exec, pods/attach and pods/portforward before they reach a node agent: which
//! container, which node, and what is not a streaming request; plugins/log, served from memory.

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

/// The text body of a GET of `path`, with its status.
async fn text(
    server: std::sync::Arc<wasmkube_apiserver::Server>,
    path: &str,
) -> (StatusCode, String) {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let request = http::Request::get(path)
        .header("Authorization", format!("Bearer {}", common::TOKEN))
        .body(axum::body::Body::empty())
        .expect("request");
    let response = wasmkube_apiserver::app(server)
        .oneshot(request)
        .await
        .expect("infallible");
    let code = response.status();
    let bytes = response.into_body().collect().await.expect("body");
    (
        code,
        String::from_utf8_lossy(&bytes.to_bytes()).into_owned(),
    )
}

#[tokio::test]
async fn plugin_logs_are_text_only_read_and_followed() {
    use wasmkube_apiserver::plugin_logs::{Kind, Role, Version};
    let api = Api::new().await;
    let digest = format!("sha256:{}", "ab".repeat(32));
    let plugin = json!({"metadata": {"name": "p"}, "spec": {"kind": "Controller", "module": {"digest": digest, "chunks": 1}}});
    let plugins = "/apis/wasmkube.dev/v1alpha1/plugins";
    let (code, body) = api.call("POST", plugins, Some(plugin)).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");

    // Nothing written yet: an empty log, not an error.
    assert_eq!(
        text(api.server.clone(), &format!("{plugins}/p/log")).await,
        (StatusCode::OK, String::new())
    );
    let log = (api.server.plugin_logs).writer("p", Version::new(Role::Active, &digest));
    log.write(Kind::Info, "one");
    log.write(Kind::Warn, "two");
    let (code, body) = text(api.server.clone(), &format!("{plugins}/p/log?tailLines=1")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body, "active@abababababab WARN two\n");

    // Only GET: no other verb reaches the Plugin through its log.
    for method in ["PUT", "PATCH", "POST", "DELETE"] {
        let (code, _) = api
            .call(method, &format!("{plugins}/p/log"), Some(json!({})))
            .await;
        assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
    let (code, stored) = api.call("GET", &format!("{plugins}/p"), None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(stored["spec"]["module"]["digest"], json!(digest));
    let server = api.server.clone();

    // A follower gets what is there, then what is written, here until limitBytes is spent.
    let first = "active@abababababab INFO one\nactive@abababababab WARN two\n";
    let later = "active@abababababab ERROR three\n";
    let path = format!(
        "{plugins}/p/log?follow=true&limitBytes={}",
        first.len() + later.len()
    );
    let follow = tokio::spawn(async move { text(server, &path).await });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    log.write(Kind::Error, "three");
    let (code, body) = follow.await.expect("task");
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body, format!("{first}{later}"));
}
