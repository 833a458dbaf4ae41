//! Admission on create: DefaultTolerationSeconds and ServiceAccount for pods, DefaultStorageClass for claims.

use serde_json::{Value, json};
use wasmkube_model::defaults::is_default_storage_class;
use wasmkube_model::names::{BETA_CLAIM_CLASS, NOT_READY, UNREACHABLE};
use wasmkube_model::resource::ResourceInfo;

use crate::error::ApiError;
use crate::server::Server;

/// Mutates `obj` before it is stored, as the admission plugins of kube-apiserver do.
pub async fn admit_create(
    server: &Server,
    info: &ResourceInfo,
    obj: &mut Value,
) -> Result<(), ApiError> {
    if !info.group.is_empty() {
        return Ok(());
    }
    match info.kind.as_str() {
        "Pod" => {
            default_toleration_seconds(obj, server.cluster.default_toleration_seconds);
            super::service_account::admit(server, info, obj).await?;
        }
        "PersistentVolumeClaim" => default_storage_class(server, obj).await?,
        _ => {}
    }
    Ok(())
}

/// The default StorageClass among `classes`: the newest one marked default, the first name on a
/// tie, as Kubernetes picks it when several are marked.
fn default_class(classes: &[Value]) -> Option<&str> {
    fn field<'a>(class: &'a Value, name: &str) -> &'a str {
        class["metadata"][name].as_str().unwrap_or_default()
    }
    classes
        .iter()
        .filter(|c| is_default_storage_class(c))
        .min_by(|a, b| {
            let created = |c| field(c, "creationTimestamp");
            let name = |c| field(c, "name");
            created(b).cmp(created(a)).then(name(a).cmp(name(b)))
        })
        .map(|c| field(c, "name"))
}

/// DefaultStorageClass: a claim that names no class (neither `spec.storageClassName` nor the
/// beta annotation; an empty name asks for no class and is kept) gets the default class.
async fn default_storage_class(server: &Server, claim: &mut Value) -> Result<(), ApiError> {
    if !claim["spec"]["storageClassName"].is_null()
        || !claim["metadata"]["annotations"][BETA_CLAIM_CLASS].is_null()
    {
        return Ok(());
    }
    let registry = server.registry();
    let Some(info) = registry.by_kind("storage.k8s.io/v1", "StorageClass") else {
        return Ok(());
    };
    let classes = server
        .objects
        .list(info, None, None, None, None, |_| true)
        .await?;
    if let Some(name) = default_class(&classes.items) {
        claim["spec"]["storageClassName"] = json!(name);
    }
    Ok(())
}

/// Adds `{key, operator: Exists, effect: NoExecute, tolerationSeconds: seconds}` for the
/// not-ready and unreachable taints, unless the pod already tolerates them (with any toleration
/// that covers the key and the NoExecute effect, wildcards included).
fn default_toleration_seconds(pod: &mut Value, seconds: i64) {
    let tolerations = pod["spec"]["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let tolerates = |key: &str| {
        tolerations.iter().any(|t| {
            let text = |f: &str| t[f].as_str().unwrap_or_default();
            (text("key").is_empty() || text("key") == key)
                && (text("effect").is_empty() || text("effect") == "NoExecute")
        })
    };
    let mut added = tolerations.clone();
    for key in [NOT_READY, UNREACHABLE] {
        if !tolerates(key) {
            added.push(
                json!({"key": key, "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": seconds}),
            );
        }
    }
    if added.len() > tolerations.len() {
        pod["spec"]["tolerations"] = Value::Array(added);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmkube_model::names::DEFAULT_STORAGE_CLASS;

    fn keys(pod: &Value) -> Vec<(String, Option<i64>)> {
        pod["spec"]["tolerations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                (
                    t["key"].as_str().unwrap_or_default().to_string(),
                    t["tolerationSeconds"].as_i64(),
                )
            })
            .collect()
    }

    #[test]
    fn adds_what_the_pod_does_not_tolerate_already() {
        let mut pod = json!({"spec": {}});
        default_toleration_seconds(&mut pod, 300);
        assert_eq!(
            keys(&pod),
            [
                (NOT_READY.into(), Some(300)),
                (UNREACHABLE.into(), Some(300))
            ]
        );

        let mut pod = json!({"spec": {"tolerations": [
            {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 6}]}});
        default_toleration_seconds(&mut pod, 300);
        assert_eq!(
            keys(&pod),
            [(UNREACHABLE.into(), Some(6)), (NOT_READY.into(), Some(300))]
        );

        // Tolerating everything (empty key and effect) covers both.
        let mut pod = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        default_toleration_seconds(&mut pod, 300);
        assert_eq!(keys(&pod), [(String::new(), None)]);
    }

    fn class(name: &str, created: &str, default: Option<&str>) -> Value {
        let mut class = json!({"metadata": {"name": name, "creationTimestamp": created}});
        if let Some(value) = default {
            class["metadata"]["annotations"] = json!({DEFAULT_STORAGE_CLASS: value});
        }
        class
    }

    #[test]
    fn the_default_class_is_the_newest_marked_true() {
        let old = class("old", "2024-01-01T00:00:00Z", Some("true"));
        let new = class("new", "2025-01-01T00:00:00Z", Some("true"));
        let plain = class("plain", "2026-01-01T00:00:00Z", None);
        let off = class("off", "2026-01-01T00:00:00Z", Some("false"));
        assert_eq!(default_class(&[old.clone(), plain.clone()]), Some("old"));
        assert_eq!(default_class(&[old.clone(), new, off.clone()]), Some("new"));
        assert_eq!(default_class(&[plain, off]), None);
        let twin = class("a-twin", "2024-01-01T00:00:00Z", Some("true"));
        assert_eq!(default_class(&[old, twin]), Some("a-twin"));
        let mut beta = class("beta", "2024-01-01T00:00:00Z", None);
        let annotation = "storageclass.beta.kubernetes.io/is-default-class";
        beta["metadata"]["annotations"] = json!({annotation: "true"});
        assert_eq!(default_class(&[beta]), Some("beta"));
    }
}
