//! NodeUnschedulable, and TaintToleration: NoSchedule and NoExecute taints must be tolerated
//! (filter), fewer untolerated PreferNoSchedule taints score higher (score).

use wasmkube_sdk::k8s_openapi::api::core::v1::{Taint, Toleration};
use wasmkube_sdk::placement::tolerated;

use crate::view::NodeInfo;

pub const UNSCHEDULABLE_REASON: &str = "node(s) were unschedulable";

/// Whether the pod tolerates `node.kubernetes.io/unschedulable:NoSchedule`, and so may go to
/// nodes marked unschedulable.
pub fn tolerates_unschedulable(tolerations: &[Toleration]) -> bool {
    let taint = Taint {
        key: "node.kubernetes.io/unschedulable".to_string(),
        effect: "NoSchedule".to_string(),
        ..Taint::default()
    };
    tolerated(tolerations, &taint)
}

/// The TaintToleration filter: the reason naming the node's first NoSchedule or NoExecute
/// taint the pod does not tolerate, if there is one.
pub fn check<'n>(node: &'n NodeInfo, tolerations: &[Toleration]) -> Option<&'n str> {
    let untolerated = node.taints.iter().position(|t| {
        (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerated(tolerations, t)
    })?;
    Some(&node.taint_reasons[untolerated])
}

/// The TaintToleration score for one pod: its tolerations that can apply to PreferNoSchedule.
pub struct TaintScore(Vec<Toleration>);

impl TaintScore {
    pub fn new(tolerations: &[Toleration]) -> TaintScore {
        TaintScore(
            tolerations
                .iter()
                .filter(|t| matches!(t.effect.as_deref(), None | Some("" | "PreferNoSchedule")))
                .cloned()
                .collect(),
        )
    }

    /// The number of PreferNoSchedule taints not tolerated (normalized reversed later).
    pub fn score(&self, node: &NodeInfo) -> i64 {
        let untolerated = node
            .taints
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule" && !tolerated(&self.0, t));
        untolerated.count() as i64
    }
}
