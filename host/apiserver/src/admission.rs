//! Mutating admission on create: DefaultTolerationSeconds gives every pod a bounded stay on a not-ready or unreachable node.

use serde_json::{Value, json};
use wasmkube_model::resource::ResourceInfo;

use crate::config::ClusterConfig;
use crate::controllers::{NOT_READY, UNREACHABLE};

/// Mutates `obj` before it is stored, as the admission plugins of kube-apiserver do.
pub fn admit_create(cluster: &ClusterConfig, info: &ResourceInfo, obj: &mut Value) {
    if info.group.is_empty() && info.kind == "Pod" {
        default_toleration_seconds(obj, cluster.default_toleration_seconds);
    }
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
}
