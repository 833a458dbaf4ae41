//! Validation tests: the messages users see for common mistakes.

use serde_json::json;

use super::*;
use crate::resource::{Registry, builtins};

fn check(api_version: &str, kind: &str, obj: serde_json::Value) -> Vec<String> {
    let registry = Registry::new(builtins());
    let info = registry.by_kind(api_version, kind).expect("built-in");
    validate(info, &obj, None)
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn deployment_names_every_bad_field() {
    let errs = check(
        "apps/v1",
        "Deployment",
        json!({
            "metadata": {"name": "web"},
            "spec": {"replicas": -1, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web"}]}}}
        }),
    );
    assert_eq!(
        errs,
        vec![
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            "spec.template.spec.containers[0].image: Required value",
        ]
    );
}

#[test]
fn selector_must_match_template() {
    let errs = check(
        "apps/v1",
        "ReplicaSet",
        json!({
            "metadata": {"name": "rs"},
            "spec": {"selector": {"matchLabels": {"app": "a"}},
                "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}
        }),
    );
    assert_eq!(
        errs,
        vec![
            r#"spec.template.metadata.labels: Invalid value: {"app":"b"}: `selector` does not match template `labels`"#
        ]
    );
}

#[test]
fn service_ports_and_names() {
    let errs = check(
        "v1",
        "Service",
        json!({
            "metadata": {"name": "Bad_Name"},
            "spec": {"ports": [{"port": 0}, {"port": 80, "protocol": "HTTP"}]}
        }),
    );
    assert_eq!(errs.len(), 5, "{errs:#?}");
    assert!(
        errs[0]
            .starts_with("metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 label")
    );
    assert!(errs.contains(
        &"spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive".to_string()
    ));
    assert!(errs.contains(&r#"spec.ports[1].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP""#.to_string()));
}

#[test]
fn configmap_size_limit() {
    let big = "x".repeat(MAX + 1);
    const MAX: usize = core::MAX_DATA_BYTES;
    let errs = check(
        "v1",
        "ConfigMap",
        json!({"metadata": {"name": "c"}, "data": {"k": big}}),
    );
    assert_eq!(errs, vec!["[]: Too long: must have at most 1048576 bytes"]);
}

#[test]
fn pod_needs_containers_and_a_name() {
    let errs = check(
        "v1",
        "Pod",
        json!({"metadata": {}, "spec": {"containers": []}}),
    );
    assert_eq!(
        errs,
        vec![
            "metadata.name: Required value: name or generateName is required",
            "spec.containers: Required value",
        ]
    );
}
