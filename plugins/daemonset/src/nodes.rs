//! Which nodes a daemon pod belongs on: node selector, required node affinity, taints.

use wasmkube_sdk::k8s_openapi::api::core::v1::{Node, PodSpec, Toleration};
use wasmkube_sdk::placement::{RequiredNodeAffinity, untolerated};
use wasmkube_sdk::selector::labels;

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
    let fits = RequiredNodeAffinity::of(spec).matches(labels(&node.metadata), name);
    if pinned_elsewhere || !fits {
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
    Placement {
        should_run: untolerated(taints, &tolerations, &["NoSchedule", "NoExecute"]).is_none(),
        should_continue: untolerated(taints, &tolerations, &["NoExecute"]).is_none(),
    }
}
