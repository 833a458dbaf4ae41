//! The HTTP API without a socket: `app()` driven with `oneshot`, on an embedded store in a temp dir.

use crate::common;

use axum::body::Body;
use common::Api;
use http::{Request, StatusCode};
use serde_json::{Value, json};

fn configmap(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}})
}

#[tokio::test]
async fn requests_without_the_token_are_unauthorized() {
    let api = Api::new().await;
    let request = Request::builder()
        .uri("/api/v1/namespaces")
        .body(Body::empty())
        .expect("valid");
    let (code, status) = api.send(request).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "Unauthorized");
}

#[tokio::test]
async fn create_get_conflict_and_stale_update() {
    let api = Api::new().await;
    let (code, created) = api
        .call(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some(configmap("a")),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED);
    assert!(created["metadata"]["uid"].is_string());
    let (code, status) = api
        .call(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some(configmap("a")),
        )
        .await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (StatusCode::CONFLICT, Some("AlreadyExists"))
    );
    assert_eq!(status["message"], "configmaps \"a\" already exists");
    // A dry run answers as the create would: a 409, and for a new name the object, not stored.
    let (code, status) = api
        .call(
            "POST",
            "/api/v1/namespaces/default/configmaps?dryRun=All",
            Some(configmap("a")),
        )
        .await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (StatusCode::CONFLICT, Some("AlreadyExists"))
    );
    let (code, _) = api
        .call(
            "POST",
            "/api/v1/namespaces/default/configmaps?dryRun=All",
            Some(configmap("dry")),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED);
    let (code, _) = api
        .call("GET", "/api/v1/namespaces/default/configmaps/dry", None)
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);

    let mut stale = created.clone();
    let mut fresh = created.clone();
    fresh["data"]["k"] = json!("v2");
    let (code, _) = api
        .call(
            "PUT",
            "/api/v1/namespaces/default/configmaps/a",
            Some(fresh),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    stale["data"]["k"] = json!("v3");
    let (code, status) = api
        .call(
            "PUT",
            "/api/v1/namespaces/default/configmaps/a",
            Some(stale),
        )
        .await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert!(
        status["message"]
            .as_str()
            .unwrap_or("")
            .contains("the object has been modified")
    );
    let (_, got) = api
        .call("GET", "/api/v1/namespaces/default/configmaps/a", None)
        .await;
    assert_eq!(got["data"]["k"], "v2");
}

#[tokio::test]
async fn bad_input_gets_the_right_status() {
    let api = Api::new().await;
    let (code, status) = api
        .raw(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            "{not json".into(),
        )
        .await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (StatusCode::BAD_REQUEST, Some("BadRequest"))
    );
    let (code, _) = api
        .call("GET", "/apis/nope.example.com/v1/things", None)
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, status) = api
        .call("GET", "/api/v1/namespaces/default/configmaps/missing", None)
        .await;
    assert_eq!(
        (code, status["message"].as_str()),
        (
            StatusCode::NOT_FOUND,
            Some("configmaps \"missing\" not found")
        )
    );
    let big = json!({"metadata": {"name": "big"}, "data": {"k": "x".repeat(4 * 1024 * 1024)}});
    let (code, _) = api
        .call("POST", "/api/v1/namespaces/default/configmaps", Some(big))
        .await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
    let too_much =
        json!({"metadata": {"name": "toomuch"}, "data": {"k": "x".repeat(1024 * 1024 + 1)}});
    let (code, status) = api
        .call(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some(too_much),
        )
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        status["details"]["causes"][0]["reason"],
        "FieldValueTooLong"
    );
    let invalid = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": -1, "selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c"}]}}}});
    let (code, status) = api
        .call(
            "POST",
            "/apis/apps/v1/namespaces/default/deployments",
            Some(invalid),
        )
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = status["details"]["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["field"].as_str())
        .collect();
    assert_eq!(
        fields,
        vec!["spec.replicas", "spec.template.spec.containers[0].image"]
    );
    let (_, list) = api
        .call("GET", "/api/v1/namespaces/default/configmaps", None)
        .await;
    assert_eq!(list["items"], json!([]), "nothing half-written");
}

#[tokio::test]
async fn pagination_and_too_old_continue() {
    let api = Api::new().await;
    for i in 0..5 {
        api.call(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some(configmap(&format!("c{i}"))),
        )
        .await;
    }
    let (_, page) = api
        .call("GET", "/api/v1/namespaces/default/configmaps?limit=2", None)
        .await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));
    let token = page["metadata"]["continue"]
        .as_str()
        .expect("more pages")
        .to_string();
    let (_, rest) = api
        .call(
            "GET",
            &format!("/api/v1/namespaces/default/configmaps?limit=10&continue={token}"),
            None,
        )
        .await;
    assert_eq!(rest["items"].as_array().map(Vec::len), Some(3));
    assert!(rest["metadata"].get("continue").is_none());

    let rv: i64 = page["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("rv");
    api.call(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some(configmap("later")),
    )
    .await;
    api.server
        .objects
        .store()
        .compact(rv + 1)
        .await
        .expect("compacts");
    let (code, status) = api
        .call(
            "GET",
            &format!("/api/v1/namespaces/default/configmaps?limit=10&continue={token}"),
            None,
        )
        .await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (StatusCode::GONE, Some("Expired"))
    );
    let (code, _) = api
        .call(
            "GET",
            &format!(
                "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={}",
                rv - 1
            ),
            None,
        )
        .await;
    assert_eq!(code, StatusCode::GONE);
}

#[tokio::test]
async fn generation_moves_on_spec_changes_only() {
    let api = Api::new().await;
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    let (code, created) = api
        .call(
            "POST",
            "/apis/apps/v1/namespaces/default/deployments",
            Some(deploy),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(created["metadata"]["generation"], 1);
    assert_eq!(created["spec"]["replicas"], 1, "defaulted");
    let label = r#"{"metadata":{"labels":{"x":"y"}}}"#;
    let (_, labelled) = api
        .raw(
            "PATCH",
            "/apis/apps/v1/namespaces/default/deployments/d",
            "application/merge-patch+json",
            label.into(),
        )
        .await;
    assert_eq!(labelled["metadata"]["generation"], 1);
    let scale = r#"{"spec":{"replicas":3}}"#;
    let (code, scaled) = api
        .raw(
            "PATCH",
            "/apis/apps/v1/namespaces/default/deployments/d/scale",
            "application/merge-patch+json",
            scale.into(),
        )
        .await;
    assert_eq!(
        (code, scaled["spec"]["replicas"].as_i64()),
        (StatusCode::OK, Some(3))
    );
    let (_, got) = api
        .call(
            "GET",
            "/apis/apps/v1/namespaces/default/deployments/d",
            None,
        )
        .await;
    assert_eq!(
        (
            got["spec"]["replicas"].as_i64(),
            got["metadata"]["generation"].as_i64()
        ),
        (Some(3), Some(2))
    );
    let status = r#"{"status":{"replicas":3}}"#;
    let (_, after) = api
        .raw(
            "PATCH",
            "/apis/apps/v1/namespaces/default/deployments/d/status",
            "application/merge-patch+json",
            status.into(),
        )
        .await;
    assert_eq!(
        (
            after["status"]["replicas"].as_i64(),
            after["metadata"]["generation"].as_i64()
        ),
        (Some(3), Some(2))
    );
}

/// Arbitrary bodies, as JSON or not, never make the server fail with a 5xx or store anything
/// but a valid object.
#[test]
fn arbitrary_bodies_get_4xx_not_5xx() {
    use proptest::prelude::*;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let api = runtime.block_on(Api::new());
    let paths = [
        "/api/v1/namespaces/default/configmaps",
        "/apis/apps/v1/namespaces/default/deployments",
        "/api/v1/namespaces/default/services",
        "/api/v1/namespaces/default/pods",
        "/api/v1/namespaces",
    ];
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        "\\{\"(metadata|spec|kind|apiVersion)\":(\\{\\}|\\[\\]|null|1|\"x\"|\\{\"name\":(1|\"ok\"|null)\\})\\}",
    ];
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 128,
        ..ProptestConfig::default()
    });
    runner
        .run(&(body, 0..paths.len()), |(body, i)| {
            let (code, status) =
                runtime.block_on(api.raw("POST", paths[i], "application/json", body));
            prop_assert!(
                code.is_client_error() || code == StatusCode::CREATED,
                "{code}: {status}"
            );
            if code.is_client_error() {
                prop_assert_eq!(&status["kind"], "Status");
            }
            Ok(())
        })
        .expect("no 5xx");
}

#[tokio::test]
async fn paths_answer_with_a_trailing_slash() {
    let api = Api::new().await;
    for path in ["/version/", "/api/", "/apis/", "/api/v1/", "/healthz/"] {
        let (code, _) = api.call("GET", path, None).await;
        assert_eq!(code, StatusCode::OK, "GET {path}");
    }
    let (code, version) = api.call("GET", "/version/?timeout=5s", None).await;
    assert_eq!(code, StatusCode::OK);
    assert!(version["gitVersion"].is_string());
    let (code, list) = api
        .call("GET", "/api/v1/namespaces/default/configmaps/", None)
        .await;
    assert_eq!(
        (code, list["kind"].as_str()),
        (StatusCode::OK, Some("ConfigMapList"))
    );
}
