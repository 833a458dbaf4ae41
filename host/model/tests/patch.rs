//! Strategic merge patches as kubectl sends them.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use wasmkube_model::patch::{schema_for, strategic_merge_patch};

#[test]
fn kubectl_client_side_apply_patch() {
    let live = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                     "finalizers": ["example.com/keep"]},
        "spec": {"replicas": 2, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}},
                 "template": {"spec": {"containers": [
            {"name": "nginx", "image": "nginx:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            {"name": "injected", "image": "sidecar"}
        ]}}}
    });
    let patch = json!({
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"new\":1}"}},
        "spec": {
            "strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null},
            "template": {"spec": {
                "$setElementOrder/containers": [{"name": "nginx"}],
                "containers": [{
                    "$setElementOrder/env": [{"name": "A"}],
                    "env": [{"$patch": "delete", "name": "B"}],
                    "image": "nginx:2",
                    "name": "nginx"
                }]
            }}
        }
    });
    let out = strategic_merge_patch(
        &live,
        patch.to_string().as_bytes(),
        schema_for("apps", "Deployment").unwrap(),
    )
    .unwrap();
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([
            {"name": "nginx", "image": "nginx:2", "env": [{"name": "A", "value": "1"}]},
            {"name": "injected", "image": "sidecar"}
        ])
    );
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    assert_eq!(out["spec"]["replicas"], 2);
    assert_eq!(out["metadata"]["finalizers"], json!(["example.com/keep"]));
    assert_eq!(
        out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        "{\"new\":1}"
    );
}

#[test]
fn cronjob_pod_template_is_merged_by_name() {
    let live = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [
        {"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}
    ]}}}}}});
    let patch = br#"{"spec":{"jobTemplate":{"spec":{"template":{"spec":{"containers":[{"name":"b","image":"b:2"}]}}}}}}"#;
    let out = strategic_merge_patch(&live, patch, schema_for("batch", "CronJob").unwrap()).unwrap();
    assert_eq!(
        out["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"],
        json!([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:2"}])
    );
}

#[test]
fn finalizer_removal_as_kubectl_patch_sends_it() {
    let live = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
    let patch = br#"{"metadata":{"$deleteFromPrimitiveList/finalizers":["b"]}}"#;
    let out = strategic_merge_patch(&live, patch, schema_for("", "Namespace").unwrap()).unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["a", "c"]));
}
