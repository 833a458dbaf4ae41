//! Selectors through the public API, as the apiserver's list handling uses them.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use wasmkube_model::selector::{FieldSelector, LabelSelector};

#[test]
fn list_filtering_by_labels_and_fields() {
    let pods = [
        json!({"metadata": {"name": "a", "labels": {"app": "web", "env": "prod"}}, "spec": {"nodeName": "n1"}}),
        json!({"metadata": {"name": "b", "labels": {"app": "web", "env": "dev"}}, "spec": {}}),
        json!({"metadata": {"name": "c"}, "spec": {"nodeName": "n1"}}),
    ];
    let labels = LabelSelector::parse("app=web,env notin (dev)").unwrap();
    let fields = FieldSelector::parse("spec.nodeName=n1").unwrap();
    fields.check_supported("Pod").unwrap();
    let selected: Vec<&str> = pods
        .iter()
        .filter(|p| labels.matches_value(p["metadata"].get("labels")) && fields.matches(p, "Pod"))
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(selected, ["a"]);

    let unscheduled = FieldSelector::parse("spec.nodeName=").unwrap();
    let names: Vec<&str> = pods
        .iter()
        .filter(|p| unscheduled.matches(p, "Pod"))
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["b"]);
}

#[test]
fn unsupported_field_label_message() {
    let err = FieldSelector::parse("spec.foo=bar")
        .unwrap()
        .check_supported("Deployment")
        .unwrap_err();
    assert_eq!(err.to_string(), "field label not supported: spec.foo");
}
