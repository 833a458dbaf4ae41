//! Which pods to delete first on scale-down, after Kubernetes' `ActivePodsWithRanks`.
//!
//! Order: unscheduled before scheduled; Pending, Unknown, then Running; not ready before ready;
//! lower `controller.kubernetes.io/pod-deletion-cost` first; more of the ReplicaSet's pods on the
//! same node first; ready for less time first and newer first, both compared on a log2 scale as
//! with the `LogarithmicScaleDown` feature; more container restarts first; then by uid.
//! Differences: node doubling-up counts only this ReplicaSet's own pods (not those of sibling
//! ReplicaSets of the same Deployment), and within one log2 bucket Kubernetes breaks ties by uid
//! at once whereas here restarts and creation time are compared first.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use wasmkube_sdk::chrono::{DateTime, Utc};
use wasmkube_sdk::k8s_openapi::api::core::v1::Pod;
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use wasmkube_sdk::pod::{is_pod_ready, phase, ready_condition};

/// The annotation that lets users say which pods are cheaper to delete.
const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The first `count` pods of `pods` to delete.
pub fn pods_to_delete(pods: &[Pod], count: usize, now: DateTime<Utc>) -> Vec<&Pod> {
    let node = |pod: &Pod| pod.spec.as_ref().and_then(|s| s.node_name.clone());
    let mut on_node: BTreeMap<String, usize> = BTreeMap::new();
    for name in pods.iter().filter_map(node) {
        *on_node.entry(name).or_default() += 1;
    }
    let mut ranked: Vec<&Pod> = pods.iter().collect();
    ranked.sort_by_cached_key(|pod| {
        let rank = node(pod).map_or(0, |n| on_node.get(&n).copied().unwrap_or_default());
        deletion_key(pod, rank, now)
    });
    ranked.truncate(count);
    ranked
}

type DeletionKey = (
    bool,
    u8,
    bool,
    i32,
    Reverse<usize>,
    Option<i64>,
    Reverse<i32>,
    Option<i64>,
    String,
);

fn deletion_key(pod: &Pod, rank: usize, now: DateTime<Utc>) -> DeletionKey {
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let phase = match phase(pod) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    };
    let ready = is_pod_ready(pod);
    let cost = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DELETION_COST))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let ready_since = ready
        .then(|| ready_condition(pod).and_then(|c| c.last_transition_time.as_ref()))
        .flatten();
    let restarts = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().map(|c| c.restart_count).max())
        .unwrap_or(0);
    (
        scheduled,
        phase,
        ready,
        cost,
        Reverse(rank),
        age_bucket(ready_since, now),
        Reverse(restarts),
        age_bucket(pod.metadata.creation_timestamp.as_ref(), now),
        pod.metadata.uid.clone().unwrap_or_default(),
    )
}

/// `floor(log2(age in ns))`, -1 for a future time, `None` (first) for no time at all.
fn age_bucket(time: Option<&Time>, now: DateTime<Utc>) -> Option<i64> {
    let age = (now - time?.0).num_nanoseconds().unwrap_or(i64::MAX);
    Some(if age > 0 { i64::from(age.ilog2()) } else { -1 })
}
