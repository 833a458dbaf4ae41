//! Taints and tolerations: the taints a node's Ready condition calls for, and how long a pod tolerates a node's NoExecute taints.

use std::time::Duration;

use serde_json::{Value, json};
use wasmkube_model::names::{NOT_READY, UNREACHABLE};

fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or_default()
}

/// The status of one of a node's conditions, if it reports it.
pub fn condition<'a>(node: &'a Value, kind: &str) -> Option<&'a Value> {
    node.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
}

/// The node's taints with the not-ready and unreachable ones (both NoSchedule and NoExecute)
/// made to follow its Ready condition: `False` → not-ready, `Unknown` → unreachable, else
/// neither. Taints that stay keep their `timeAdded`; new ones are added at `now`.
pub fn follow_ready(node: &Value, now: &str) -> Vec<Value> {
    let wanted = match condition(node, "Ready").map(|c| text(c, "status")) {
        Some("False") => Some(NOT_READY),
        Some("Unknown") => Some(UNREACHABLE),
        _ => None,
    };
    let mut taints: Vec<Value> = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    taints.retain(|t| {
        let key = text(t, "key");
        !matches!(key, NOT_READY | UNREACHABLE) || Some(key) == wanted
    });
    for effect in ["NoSchedule", "NoExecute"] {
        if let Some(key) = wanted
            && !taints
                .iter()
                .any(|t| text(t, "key") == key && text(t, "effect") == effect)
        {
            taints.push(json!({"key": key, "effect": effect, "timeAdded": now}));
        }
    }
    taints
}

/// Whether the node's taints already follow its Ready condition.
pub fn follow_ready_already(node: &Value) -> bool {
    let current = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    follow_ready(node, "") == current
}

/// The node's NoExecute taints.
pub fn no_execute(node: &Value) -> Vec<Value> {
    node.pointer("/spec/taints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| text(t, "effect") == "NoExecute")
        .cloned()
        .collect()
}

/// Kubernetes' `ToleratesTaint`.
fn tolerates(toleration: &Value, taint: &Value) -> bool {
    let (effect, key) = (text(toleration, "effect"), text(toleration, "key"));
    (effect.is_empty() || effect == text(taint, "effect"))
        && (key.is_empty() || key == text(taint, "key"))
        && match text(toleration, "operator") {
            "" | "Equal" => text(toleration, "value") == text(taint, "value"),
            "Exists" => true,
            _ => false,
        }
}

/// How long a pod may stay on a node with some NoExecute taints.
#[derive(Debug, PartialEq, Eq)]
pub enum Stay {
    /// A taint it does not tolerate: it goes now.
    Untolerated,
    /// It tolerates them all for good.
    Forever,
    /// The shortest `tolerationSeconds` of the tolerations that matched (the first matching one
    /// per taint, as Kubernetes takes them).
    For(Duration),
}

/// How long a pod with `tolerations` may stay with `taints` (NoExecute ones).
pub fn stay(tolerations: &[Value], taints: &[Value]) -> Stay {
    let mut shortest: Option<i64> = None;
    for taint in taints {
        let Some(used) = tolerations.iter().find(|t| tolerates(t, taint)) else {
            return Stay::Untolerated;
        };
        if let Some(seconds) = used["tolerationSeconds"].as_i64() {
            shortest = Some(shortest.map_or(seconds, |s| s.min(seconds)));
        }
    }
    match shortest {
        None => Stay::Forever,
        Some(s) => Stay::For(Duration::from_secs(u64::try_from(s).unwrap_or(0))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: &str, effect: &str) -> Value {
        json!({"key": key, "value": value, "effect": effect})
    }

    #[test]
    fn taints_follow_the_ready_condition() {
        let node = |status: &str, taints: Value| {
            json!({"spec": {"taints": taints},
                "status": {"conditions": [{"type": "Ready", "status": status}]}})
        };
        let keys = |taints: Vec<Value>| -> Vec<String> {
            taints
                .iter()
                .map(|t| format!("{}:{}", text(t, "key"), text(t, "effect")))
                .collect()
        };
        let mine = taint("dedicated", "gpu", "NoSchedule");
        assert_eq!(
            keys(follow_ready(&node("Unknown", json!([mine])), "t")),
            [
                "dedicated:NoSchedule",
                "node.kubernetes.io/unreachable:NoSchedule",
                "node.kubernetes.io/unreachable:NoExecute"
            ]
        );
        let unreachable = follow_ready(&node("Unknown", json!([])), "t");
        assert_eq!(unreachable[1]["timeAdded"], "t");
        assert_eq!(
            keys(follow_ready(&node("False", json!(unreachable)), "t")),
            [
                "node.kubernetes.io/not-ready:NoSchedule",
                "node.kubernetes.io/not-ready:NoExecute"
            ]
        );
        assert!(follow_ready(&node("True", json!(unreachable)), "t").is_empty());
        assert!(follow_ready_already(&node("Unknown", json!(unreachable))));
        assert!(!follow_ready_already(&node("True", json!(unreachable))));
        assert!(follow_ready_already(&json!({"metadata": {}})));
    }

    #[test]
    fn the_shortest_matching_toleration_decides() {
        let unreachable = [taint(UNREACHABLE, "", "NoExecute")];
        let gpu = [taint("dedicated", "gpu", "NoExecute")];
        let both = [unreachable[0].clone(), gpu[0].clone()];
        let for_secs = |key: &str, s: i64| json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": s});
        let five_minutes = Stay::For(Duration::from_secs(300));
        assert_eq!(stay(&[], &unreachable), Stay::Untolerated);
        assert_eq!(
            stay(&[for_secs(UNREACHABLE, 300)], &unreachable),
            five_minutes
        );
        assert_eq!(
            stay(&[for_secs(UNREACHABLE, 300)], &both),
            Stay::Untolerated
        );
        let equal_gpu = json!({"key": "dedicated", "operator": "Equal", "value": "gpu"});
        assert_eq!(
            stay(&[for_secs(UNREACHABLE, 30), equal_gpu.clone()], &both),
            Stay::For(Duration::from_secs(30))
        );
        assert_eq!(stay(&[equal_gpu], &gpu), Stay::Forever);
        let wrong_value = json!({"key": "dedicated", "operator": "Equal", "value": "tpu"});
        assert_eq!(stay(&[wrong_value], &gpu), Stay::Untolerated);
        assert_eq!(
            stay(&[json!({"operator": "Exists"})], &unreachable),
            Stay::Forever
        );
        assert_eq!(
            stay(&[for_secs(UNREACHABLE, -1)], &unreachable),
            Stay::For(Duration::ZERO)
        );
    }
}
