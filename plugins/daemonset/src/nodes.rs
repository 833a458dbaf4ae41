//! Which nodes a daemon pod belongs on: node selector, required node affinity, taints.

use std::collections::BTreeMap;

use wasmkube_sdk::k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, PodSpec, Taint, Toleration,
};

/// Whether a daemon pod should be placed on a node, and whether one already there may stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// A pod should run here: the node fits and every NoSchedule/NoExecute taint is tolerated.
    pub should_run: bool,
    /// A pod already here may stay: the node fits and every NoExecute taint is tolerated.
    pub should_continue: bool,
}

/// The tolerations Kubernetes adds to every daemon pod (`AddOrUpdateDaemonPodTolerations`), so
/// that daemons keep running on nodes that are not ready, under pressure or cordoned.
pub fn daemon_tolerations(spec: &PodSpec) -> Vec<Toleration> {
    let mut wanted = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        wanted.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let mut tolerations = spec.tolerations.clone().unwrap_or_default();
    for (key, effect) in wanted {
        let present = tolerations.iter().any(|t| {
            t.key.as_deref() == Some(key)
                && t.effect.as_deref() == Some(effect)
                && t.operator.as_deref() == Some("Exists")
        });
        if !present {
            tolerations.push(Toleration {
                key: Some(key.to_string()),
                operator: Some("Exists".to_string()),
                effect: Some(effect.to_string()),
                ..Toleration::default()
            });
        }
    }
    tolerations
}

/// Kubernetes' `NodeShouldRunDaemonPod` for the template's spec (with daemon tolerations added).
/// `spec.unschedulable` is ignored, as for daemons in Kubernetes.
pub fn placement(node: &Node, spec: &PodSpec) -> Placement {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let pinned_elsewhere = spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != name);
    if pinned_elsewhere || !fits_selector_and_affinity(node, spec) {
        return Placement {
            should_run: false,
            should_continue: false,
        };
    }
    let tolerations = daemon_tolerations(spec);
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let untolerated = |effects: &[&str]| {
        taints
            .iter()
            .filter(|t| effects.contains(&t.effect.as_str()))
            .any(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
    };
    Placement {
        should_run: !untolerated(&["NoSchedule", "NoExecute"]),
        should_continue: !untolerated(&["NoExecute"]),
    }
}

/// Whether a toleration tolerates a taint (Kubernetes' `ToleratesTaint`).
fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if toleration
        .effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            !key.is_empty()
                && toleration.value.as_deref().unwrap_or_default()
                    == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

/// `nodeSelector` and the required node affinity terms (ORed; each term's requirements ANDed).
fn fits_selector_and_affinity(node: &Node, spec: &PodSpec) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let selected = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    let name = node.metadata.name.as_deref().unwrap_or_default();
    selected
        && required.is_none_or(|r| {
            r.node_selector_terms
                .iter()
                .any(|term| term_matches(term, labels, name))
        })
}

/// A term with no requirements matches no node, as in Kubernetes.
fn term_matches(term: &NodeSelectorTerm, labels: &BTreeMap<String, String>, name: &str) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    let name_field = BTreeMap::from([("metadata.name".to_string(), name.to_string())]);
    expressions.iter().all(|r| requirement_matches(r, labels))
        && fields.iter().all(|r| requirement_matches(r, &name_field))
}

fn requirement_matches(req: &NodeSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&req.key);
    let values = req.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    let compare = |ordering: std::cmp::Ordering| match (value, values) {
        (Some(v), [bound]) => match (number(v), number(bound)) {
            (Some(v), Some(bound)) => v.cmp(&bound) == ordering,
            _ => false,
        },
        _ => false,
    };
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => compare(std::cmp::Ordering::Greater),
        "Lt" => compare(std::cmp::Ordering::Less),
        _ => false,
    }
}
