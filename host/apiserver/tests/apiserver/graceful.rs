//! Graceful pod deletion through the API: a pod on a node waits for its node (grace from the options, from the spec, shortened, 0), others go at once; eviction takes the same path (namespace deletion: the controller crate's `gc.rs`).

use crate::common;

use chrono::{DateTime, Utc};
use common::Api;
use http::StatusCode;
use serde_json::{Value, json};

const PODS: &str = "/api/v1/namespaces/default/pods";

/// Creates pod `name` in `ns`, on `node` when given, with `spec` merged in.
async fn pod_in(api: &Api, ns: &str, name: &str, node: Option<&str>, spec: Value) -> Value {
    let mut body = json!({"metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    if let Some(node) = node {
        body["spec"]["nodeName"] = json!(node);
    }
    for (k, v) in spec.as_object().into_iter().flatten() {
        body["spec"][k] = v.clone();
    }
    let (code, pod) = api
        .call("POST", &format!("/api/v1/namespaces/{ns}/pods"), Some(body))
        .await;
    assert_eq!(code, StatusCode::CREATED, "{pod}");
    pod
}

async fn pod(api: &Api, name: &str, node: Option<&str>, spec: Value) -> Value {
    pod_in(api, "default", name, node, spec).await
}

async fn delete(api: &Api, name: &str, options: Option<Value>) -> (StatusCode, Value) {
    api.call("DELETE", &format!("{PODS}/{name}"), options).await
}

async fn get(api: &Api, name: &str) -> Option<Value> {
    let (code, pod) = api.call("GET", &format!("{PODS}/{name}"), None).await;
    (code == StatusCode::OK).then_some(pod)
}

fn deletion(pod: &Value) -> (DateTime<Utc>, i64) {
    let meta = &pod["metadata"];
    let at = DateTime::parse_from_rfc3339(meta["deletionTimestamp"].as_str().expect("marked"))
        .expect("a time")
        .with_timezone(&Utc);
    (
        at,
        meta["deletionGracePeriodSeconds"].as_i64().expect("grace"),
    )
}

async fn set_phase(api: &Api, name: &str, phase: &str) {
    let (code, _) = api
        .raw(
            "PATCH",
            &format!("{PODS}/{name}/status"),
            "application/merge-patch+json",
            json!({"status": {"phase": phase}}).to_string(),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
}

#[tokio::test]
async fn a_pod_on_a_node_waits_for_it_for_its_grace_period() {
    let api = Api::new().await;
    pod(
        &api,
        "web",
        Some("n1"),
        json!({"terminationGracePeriodSeconds": 20}),
    )
    .await;
    set_phase(&api, "web", "Running").await;

    let before = Utc::now();
    let (code, marked) = delete(&api, "web", None).await;
    assert_eq!(code, StatusCode::OK, "{marked}");
    let (at, grace) = deletion(&marked);
    assert_eq!(grace, 20, "the pod's own terminationGracePeriodSeconds");
    let waits = (at - before).num_seconds();
    assert!(
        (19..=21).contains(&waits),
        "deletionTimestamp {waits} s ahead"
    );
    assert!(get(&api, "web").await.is_some(), "it waits for its node");

    // A shorter grace period brings the deletion forward by the difference; a longer one changes
    // nothing.
    let (code, shortened) = api
        .call("DELETE", &format!("{PODS}/web?gracePeriodSeconds=5"), None)
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        deletion(&shortened),
        (at - chrono::TimeDelta::seconds(15), 5)
    );
    let (code, same) = delete(&api, "web", Some(json!({"gracePeriodSeconds": 10}))).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(deletion(&same), deletion(&shortened));

    // The node stopped it: it deletes with a grace period of 0 and the pod is gone.
    let (code, _) = delete(
        &api,
        "web",
        Some(json!({"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0})),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert!(get(&api, "web").await.is_none());
}

#[tokio::test]
async fn the_grace_period_comes_from_the_options_else_the_spec() {
    let api = Api::new().await;
    pod(&api, "asked", Some("n1"), json!({})).await;
    let (_, marked) = delete(&api, "asked", Some(json!({"gracePeriodSeconds": 7}))).await;
    assert_eq!(deletion(&marked).1, 7);
    pod(&api, "defaulted", Some("n1"), json!({})).await;
    let (_, marked) = delete(&api, "defaulted", None).await;
    assert_eq!(
        deletion(&marked).1,
        30,
        "terminationGracePeriodSeconds defaults to 30"
    );
    // `kubectl delete --grace-period=0 --force`: at once.
    pod(&api, "forced", Some("n1"), json!({})).await;
    let (code, _) = api
        .call(
            "DELETE",
            &format!("{PODS}/forced?gracePeriodSeconds=0"),
            None,
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    assert!(get(&api, "forced").await.is_none());
}

#[tokio::test]
async fn unscheduled_and_finished_pods_go_at_once() {
    let api = Api::new().await;
    pod(&api, "pending", None, json!({})).await;
    let (code, _) = delete(&api, "pending", None).await;
    assert_eq!(code, StatusCode::OK);
    assert!(get(&api, "pending").await.is_none(), "no node to wait for");

    pod(&api, "done", Some("n1"), json!({})).await;
    set_phase(&api, "done", "Succeeded").await;
    delete(&api, "done", None).await;
    assert!(get(&api, "done").await.is_none(), "nothing left to stop");

    pod(&api, "failed", Some("n1"), json!({})).await;
    set_phase(&api, "failed", "Failed").await;
    delete(&api, "failed", None).await;
    assert!(get(&api, "failed").await.is_none());
}

#[tokio::test]
async fn finalizers_and_grace_periods_both_hold_a_pod() {
    let api = Api::new().await;
    pod(&api, "held", Some("n1"), json!({})).await;
    let hold = json!({"metadata": {"finalizers": ["example.com/hold"]}}).to_string();
    let release = json!({"metadata": {"finalizers": null}}).to_string();
    let patch = async |body: &str| {
        let (code, _) = api
            .raw(
                "PATCH",
                &format!("{PODS}/held"),
                "application/merge-patch+json",
                body.into(),
            )
            .await;
        assert_eq!(code, StatusCode::OK);
    };
    patch(&hold).await;
    delete(&api, "held", None).await;
    patch(&release).await;
    assert!(
        get(&api, "held").await.is_some(),
        "still waits for its node"
    );
    patch(&hold).await;
    let (code, _) = delete(&api, "held", Some(json!({"gracePeriodSeconds": 0}))).await;
    assert_eq!(
        code,
        StatusCode::ACCEPTED,
        "its node is done, the finalizer is not"
    );
    assert!(get(&api, "held").await.is_some());
    patch(&release).await;
    assert!(get(&api, "held").await.is_none());
}

#[tokio::test]
async fn eviction_takes_its_delete_options() {
    let api = Api::new().await;
    pod(&api, "web", Some("n1"), json!({})).await;
    let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web"},
        "deleteOptions": {"gracePeriodSeconds": 3}});
    let (code, _) = api
        .call("POST", &format!("{PODS}/web/eviction"), Some(eviction))
        .await;
    assert_eq!(code, StatusCode::CREATED);
    let evicted = get(&api, "web").await.expect("waits for its node");
    assert_eq!(deletion(&evicted).1, 3);
}
