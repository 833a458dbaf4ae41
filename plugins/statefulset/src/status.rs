//! The StatefulSet's status: replica counts by readiness and revision, and the revisions.

use std::collections::BTreeMap;

use wasmkube_sdk::chrono::{DateTime, Utc};
use wasmkube_sdk::k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use wasmkube_sdk::k8s_openapi::api::core::v1::Pod;
use wasmkube_sdk::pod::{is_pod_available, is_terminating};
use wasmkube_sdk::{Context, Error};

use crate::has_revision;
use crate::pods::is_running_and_ready;
use crate::revisions::Revisions;

/// The status of `set` over its pods as the sync found them. A RollingUpdate is complete (the
/// current revision becomes the update revision) once every pod is updated and ready.
pub fn calculate(
    set: &StatefulSet,
    pods: &BTreeMap<usize, Pod>,
    revisions: &Revisions,
    now: DateTime<Utc>,
) -> StatefulSetStatus {
    let spec = set.spec.clone().unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let live: Vec<&Pod> = pods.values().filter(|p| !is_terminating(p)).collect();
    let count = |f: &dyn Fn(&Pod) -> bool| {
        i32::try_from(live.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let replicas = count(&|_| true);
    let ready = count(&is_running_and_ready);
    let updated = count(&|p| has_revision(p, &revisions.update));
    let mut status = StatefulSetStatus {
        replicas,
        ready_replicas: Some(ready),
        available_replicas: Some(count(&|p| is_pod_available(p, min_ready, now))),
        current_replicas: Some(count(&|p| has_revision(p, &revisions.current))),
        updated_replicas: Some(updated),
        current_revision: Some(revisions.current.clone()),
        update_revision: Some(revisions.update.clone()),
        collision_count: set.status.as_ref().and_then(|s| s.collision_count),
        conditions: set.status.as_ref().and_then(|s| s.conditions.clone()),
        observed_generation: None,
    };
    let rolling = spec
        .update_strategy
        .and_then(|s| s.type_)
        .is_none_or(|t| t == "RollingUpdate");
    let complete =
        updated == replicas && ready == replicas && replicas == spec.replicas.unwrap_or(1);
    if rolling && complete {
        status.current_revision = Some(revisions.update.clone());
        status.current_replicas = Some(updated);
    }
    status
}

/// Writes `status` and `observedGeneration` unless they are current; on a conflict, reads the
/// set again and retries once.
pub fn update(
    ctx: &Context<'_>,
    mut set: StatefulSet,
    status: StatefulSetStatus,
) -> Result<(), Error> {
    for attempt in 0..2 {
        let mut want = status.clone();
        want.observed_generation = set.metadata.generation;
        if set.status.as_ref() == Some(&want) {
            return Ok(());
        }
        set.status = Some(want);
        match ctx.update_status(&set) {
            Err(e) if e.is_conflict() && attempt == 0 => {
                let namespace = set.metadata.namespace.clone().unwrap_or_default();
                let name = set.metadata.name.clone().unwrap_or_default();
                match ctx.get::<StatefulSet>(&namespace, &name)? {
                    Some(fresh) => set = fresh,
                    None => return Err(e),
                }
            }
            result => return result.map(drop),
        }
    }
    Ok(())
}
