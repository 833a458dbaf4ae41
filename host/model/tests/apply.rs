//! Server-side apply scenarios: ownership, pruning and conflicts between managers.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use wasmkube_model::apply::{ApplyError, apply, record_update};
use wasmkube_model::patch::schema_for;

const T0: &str = "2026-01-01T00:00:00Z";
const T1: &str = "2026-01-01T00:01:00Z";

fn deployment(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": image, "ports": [{"containerPort": 80}]}]}
            }
        }
    })
}

fn ssa(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
) -> Result<Value, ApplyError> {
    apply(
        live,
        config,
        manager,
        force,
        schema_for("apps", "Deployment"),
        T1,
    )
}

fn managers(obj: &Value) -> Vec<(String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["manager"].as_str().unwrap().to_string(),
                e["operation"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn fields_of<'a>(obj: &'a Value, manager: &str) -> &'a Value {
    obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == manager)
        .map(|e| &e["fieldsV1"])
        .unwrap()
}

#[test]
fn apply_creates_with_an_apply_entry() {
    let mut config = deployment(2, "nginx:1");
    config["status"] = json!({"replicas": 9});
    let out = ssa(None, &config, "kubectl", false).unwrap();
    assert_eq!(out["spec"]["replicas"], 2);
    assert!(out.get("status").is_none());
    let entry = &out["metadata"]["managedFields"][0];
    assert_eq!(entry["manager"], "kubectl");
    assert_eq!(entry["operation"], "Apply");
    assert_eq!(entry["apiVersion"], "apps/v1");
    assert_eq!(entry["time"], T1);
    assert_eq!(entry["fieldsType"], "FieldsV1");
    assert_eq!(
        entry["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"]
            ["f:ports"],
        json!({"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}})
    );
    assert!(entry["fieldsV1"]["f:metadata"].get("f:name").is_none());
}

#[test]
fn reapply_prunes_fields_no_longer_applied() {
    let mut first = deployment(2, "nginx:1");
    first["metadata"]["labels"]["tier"] = json!("front");
    first["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "sidecar", "image": "s"}));
    let live = ssa(None, &first, "kubectl", false).unwrap();

    let second = deployment(2, "nginx:2");
    let out = ssa(Some(&live), &second, "kubectl", false).unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
    let containers = out["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0]["image"], "nginx:2");
    assert_eq!(
        managers(&out),
        [("kubectl".to_string(), "Apply".to_string())]
    );
}

#[test]
fn fields_kept_when_another_manager_owns_them() {
    let mut a = deployment(2, "nginx:1");
    a["metadata"]["labels"]["shared"] = json!("yes");
    let live = ssa(None, &a, "alice", false).unwrap();
    let b = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "web", "labels": {"shared": "yes"}}});
    let live = ssa(Some(&live), &b, "bob", false).unwrap();
    // Alice stops applying the shared label: Bob still owns it, so it stays.
    let live = ssa(Some(&live), &deployment(2, "nginx:1"), "alice", false).unwrap();
    assert_eq!(live["metadata"]["labels"]["shared"], "yes");
    assert_eq!(
        fields_of(&live, "bob"),
        &json!({"f:metadata": {"f:labels": {"f:shared": {}}}})
    );
}

#[test]
fn conflict_with_client_side_apply() {
    let created = record_update(
        None,
        &deployment(3, "nginx:1"),
        "kubectl-client-side-apply",
        T0,
        schema_for("apps", "Deployment"),
    );
    assert_eq!(
        managers(&created),
        [(
            "kubectl-client-side-apply".to_string(),
            "Update".to_string()
        )]
    );

    let err = ssa(Some(&created), &deployment(5, "nginx:1"), "kubectl", false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );

    // Same values: no conflict, ownership shared.
    let shared = ssa(Some(&created), &deployment(3, "nginx:1"), "kubectl", false).unwrap();
    assert!(
        fields_of(&shared, "kubectl-client-side-apply")["f:spec"]
            .get("f:replicas")
            .is_some()
    );
    assert!(
        fields_of(&shared, "kubectl")["f:spec"]
            .get("f:replicas")
            .is_some()
    );

    // Forced: the field changes hands.
    let forced = ssa(Some(&created), &deployment(5, "nginx:1"), "kubectl", true).unwrap();
    assert_eq!(forced["spec"]["replicas"], 5);
    assert!(
        fields_of(&forced, "kubectl-client-side-apply")["f:spec"]
            .get("f:replicas")
            .is_none()
    );
    assert!(
        fields_of(&forced, "kubectl")["f:spec"]
            .get("f:replicas")
            .is_some()
    );
}

#[test]
fn several_conflicts_are_listed_per_manager() {
    let created = record_update(
        None,
        &deployment(3, "nginx:1"),
        "kubectl-create",
        T0,
        schema_for("apps", "Deployment"),
    );
    let err = ssa(Some(&created), &deployment(5, "nginx:2"), "kubectl", false).unwrap_err();
    let ApplyError::Conflicts(conflicts) = &err else {
        panic!("{err}")
    };
    assert_eq!(conflicts.len(), 2);
    assert_eq!(
        err.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"kubectl-create\" using apps/v1:\n\
         - .spec.replicas\n\
         - .spec.template.spec.containers[name=\"nginx\"].image"
    );
}

#[test]
fn scale_takes_replicas_from_the_applier() {
    let live = ssa(None, &deployment(2, "nginx:1"), "kubectl", false).unwrap();
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(4);
    let scaled = record_update(
        Some(&live),
        &scaled,
        "kubectl-scale",
        T1,
        schema_for("apps", "Deployment"),
    );
    assert_eq!(
        fields_of(&scaled, "kubectl-scale"),
        &json!({"f:spec": {"f:replicas": {}}})
    );
    assert!(
        fields_of(&scaled, "kubectl")["f:spec"]
            .get("f:replicas")
            .is_none()
    );

    // Re-applying the old replica count now conflicts with the scaler.
    let err = ssa(Some(&scaled), &deployment(2, "nginx:1"), "kubectl", false).unwrap_err();
    assert!(
        err.to_string()
            .contains("conflict with \"kubectl-scale\" using apps/v1: .spec.replicas")
    );
    // Leaving replicas out of the config hands them over without pruning.
    let mut without = deployment(2, "nginx:1");
    without["spec"].as_object_mut().unwrap().remove("replicas");
    let out = ssa(Some(&scaled), &without, "kubectl", false).unwrap();
    assert_eq!(out["spec"]["replicas"], 4);
}

#[test]
fn record_update_ignores_system_fields_and_status() {
    let old = json!({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": "c", "resourceVersion": "1", "uid": "u"},
                     "data": {"a": "1"}});
    let created = record_update(
        None,
        &old,
        "kubectl-create",
        T0,
        schema_for("", "ConfigMap"),
    );
    assert_eq!(
        fields_of(&created, "kubectl-create"),
        &json!({"f:data": {"f:a": {}}})
    );
    let mut new = created.clone();
    new["metadata"]["resourceVersion"] = json!("2");
    new["status"] = json!({"x": 1});
    let same = record_update(
        Some(&created),
        &new,
        "other",
        T1,
        schema_for("", "ConfigMap"),
    );
    assert_eq!(
        managers(&same),
        [("kubectl-create".to_string(), "Update".to_string())]
    );
    assert_eq!(same["metadata"]["managedFields"][0]["time"], T0);
}

#[test]
fn record_update_moves_changed_and_removed_fields() {
    let schema = schema_for("", "ConfigMap");
    let v1 = record_update(
        None,
        &json!({"data": {"a": "1", "b": "2"}}),
        "one",
        T0,
        schema,
    );
    let mut v2 = v1.clone();
    v2["data"] = json!({"a": "changed"});
    let v2 = record_update(Some(&v1), &v2, "two", T1, schema);
    assert_eq!(managers(&v2), [("two".to_string(), "Update".to_string())]);
    assert_eq!(fields_of(&v2, "two"), &json!({"f:data": {"f:a": {}}}));
}

#[test]
fn managed_fields_can_be_reset() {
    let schema = schema_for("", "ConfigMap");
    let v1 = record_update(None, &json!({"data": {"a": "1"}}), "one", T0, schema);
    let mut v2 = v1.clone();
    v2["metadata"]["managedFields"] = json!([{}]);
    let v2 = record_update(Some(&v1), &v2, "two", T1, schema);
    assert!(v2["metadata"].get("managedFields").is_none());
}

#[test]
fn custom_resources_treat_lists_atomically() {
    let config = json!({"apiVersion": "example.com/v1", "kind": "Widget",
                        "metadata": {"name": "w"}, "spec": {"items": [{"name": "a"}, {"name": "b"}]}});
    let live = apply(None, &config, "mgr", false, None, T0).unwrap();
    let config2 = json!({"apiVersion": "example.com/v1", "kind": "Widget",
                         "metadata": {"name": "w"}, "spec": {"items": [{"name": "c"}]}});
    let out = apply(Some(&live), &config2, "mgr", false, None, T1).unwrap();
    assert_eq!(out["spec"]["items"], json!([{"name": "c"}]));
    assert_eq!(
        out["metadata"]["managedFields"][0]["fieldsV1"],
        json!({"f:spec": {"f:items": {}}})
    );
}

#[test]
fn apply_rejects_non_objects() {
    assert_eq!(
        apply(None, &json!([1]), "m", false, None, T0).unwrap_err(),
        ApplyError::NotAnObject
    );
}
