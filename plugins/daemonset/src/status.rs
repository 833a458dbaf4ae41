//! The DaemonSet's status as Kubernetes computes it: scheduled, misscheduled, ready, available, updated.

use wasmkube_sdk::chrono::{DateTime, Utc};
use wasmkube_sdk::k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use wasmkube_sdk::pod::{is_pod_available, is_pod_ready};
use wasmkube_sdk::{Context, Error};

use crate::NodeState;
use crate::pods::is_updated;

/// The status of `ds` over the nodes as the sync found them (before its own changes).
pub fn calculate(
    ds: &DaemonSet,
    nodes: &[NodeState],
    hash: &str,
    now: DateTime<Utc>,
) -> DaemonSetStatus {
    let min_ready = ds
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let mut status = ds.status.clone().unwrap_or_default();
    let (mut desired, mut current, mut misscheduled) = (0, 0, 0);
    let (mut ready, mut available, mut updated) = (0, 0, 0);
    for node in nodes {
        if !node.placement.should_run {
            misscheduled += i32::from(node.occupied);
            continue;
        }
        desired += 1;
        let Some(pod) = &node.pod else { continue };
        current += 1;
        ready += i32::from(is_pod_ready(pod));
        available += i32::from(is_pod_available(pod, min_ready, now));
        updated += i32::from(is_updated(pod, hash));
    }
    status.desired_number_scheduled = desired;
    status.current_number_scheduled = current;
    status.number_misscheduled = misscheduled;
    status.number_ready = ready;
    status.number_available = Some(available);
    status.number_unavailable = Some(desired - available);
    status.updated_number_scheduled = Some(updated);
    status
}

/// Writes `status` and `observedGeneration` unless they are current; on a conflict, reads the
/// DaemonSet again and retries once.
pub fn update(ctx: &Context<'_>, mut ds: DaemonSet, status: DaemonSetStatus) -> Result<(), Error> {
    for attempt in 0..2 {
        let mut want = status.clone();
        want.observed_generation = ds.metadata.generation;
        if ds.status.as_ref() == Some(&want) {
            return Ok(());
        }
        ds.status = Some(want);
        match ctx.update_status(&ds) {
            Err(e) if e.is_conflict() && attempt == 0 => {
                let namespace = ds.metadata.namespace.clone().unwrap_or_default();
                let name = ds.metadata.name.clone().unwrap_or_default();
                match ctx.get::<DaemonSet>(&namespace, &name)? {
                    Some(fresh) => ds = fresh,
                    None => return Err(e),
                }
            }
            result => return result.map(drop),
        }
    }
    Ok(())
}
