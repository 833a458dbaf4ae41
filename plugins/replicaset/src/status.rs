//! The ReplicaSet's status as Kubernetes computes it: replica counts, ReplicaFailure, observedGeneration.

use wasmkube_sdk::chrono::{DateTime, Utc};
use wasmkube_sdk::conditions::{get_condition, remove_condition, set_condition};
use wasmkube_sdk::k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use wasmkube_sdk::k8s_openapi::api::core::v1::Pod;
use wasmkube_sdk::pod::{is_pod_available, is_pod_ready};
use wasmkube_sdk::selector::labels;
use wasmkube_sdk::{Context, Error};

const REPLICA_FAILURE: &str = "ReplicaFailure";

/// The status for `rs` owning the active `pods`, given how scaling went (`Err` holds its message).
pub fn calculate(
    rs: &ReplicaSet,
    pods: &[Pod],
    scaling: Result<(), &str>,
    now: DateTime<Utc>,
) -> ReplicaSetStatus {
    let mut status = rs.status.clone().unwrap_or_default();
    let spec = rs.spec.clone().unwrap_or_default();
    let template_labels = spec
        .template
        .and_then(|t| t.metadata)
        .and_then(|m| m.labels)
        .unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let count = |f: &dyn Fn(&Pod) -> bool| pods.iter().filter(|p| f(p)).count();
    let fully_labeled = count(&|p| {
        let have = labels(&p.metadata);
        template_labels.iter().all(|(k, v)| have.get(k) == Some(v))
    });
    let ready = count(&|p| is_pod_ready(p));
    let available = count(&|p| is_pod_available(p, min_ready, now));

    let conditions = status.conditions.get_or_insert_with(Vec::new);
    match scaling {
        Err(message) if get_condition(conditions, REPLICA_FAILURE).is_none() => {
            let want = usize::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
            let reason = if pods.len() < want {
                "FailedCreate"
            } else {
                "FailedDelete"
            };
            let failure = ReplicaSetCondition {
                type_: REPLICA_FAILURE.to_string(),
                status: "True".to_string(),
                reason: Some(reason.to_string()),
                message: Some(message.to_string()),
                last_transition_time: None,
            };
            set_condition(conditions, failure, now);
        }
        Ok(()) => {
            remove_condition(conditions, REPLICA_FAILURE);
        }
        Err(_) => {}
    }
    if conditions.is_empty() {
        status.conditions = None;
    }
    let int = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    status.replicas = int(pods.len());
    status.fully_labeled_replicas = Some(int(fully_labeled));
    status.ready_replicas = Some(int(ready));
    status.available_replicas = Some(int(available));
    status
}

/// Writes `status` and `observedGeneration` unless they are current; on a conflict, reads the
/// ReplicaSet again and retries once, as Kubernetes does.
pub fn update(
    ctx: &Context<'_>,
    mut rs: ReplicaSet,
    status: ReplicaSetStatus,
) -> Result<ReplicaSet, Error> {
    for attempt in 0..2 {
        let mut want = status.clone();
        want.observed_generation = rs.metadata.generation;
        if rs.status.as_ref() == Some(&want) {
            return Ok(rs);
        }
        rs.status = Some(want);
        match ctx.update_status(&rs) {
            Err(e) if e.is_conflict() && attempt == 0 => {
                let namespace = rs.metadata.namespace.clone().unwrap_or_default();
                let name = rs.metadata.name.clone().unwrap_or_default();
                match ctx.get::<ReplicaSet>(&namespace, &name)? {
                    Some(fresh) => rs = fresh,
                    None => return Err(e),
                }
            }
            result => return result,
        }
    }
    Ok(rs)
}
