//! The Job's status: what its pods show, its conditions, and writing it back.

use std::collections::BTreeSet;

use wasmkube_sdk::chrono::{DateTime, Utc};
use wasmkube_sdk::conditions::{get_condition, set_condition};
use wasmkube_sdk::k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use wasmkube_sdk::k8s_openapi::api::core::v1::Pod;
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use wasmkube_sdk::pod::{is_active, is_pod_ready, is_terminating, phase};
use wasmkube_sdk::{Context, Error};

use crate::indexes;
use crate::pods::{backoff_until, restarts};

/// What the Job's pods show, counted as Kubernetes' Job controller counts them.
pub struct Observed {
    /// Pods neither finished nor terminating.
    pub active: Vec<Pod>,
    /// Active pods that are Ready.
    pub ready: usize,
    /// Unfinished pods being deleted.
    pub terminating: usize,
    /// Succeeded pods (completed indexes when Indexed), never fewer than already recorded.
    pub succeeded: i32,
    /// Failed pods, never fewer than already recorded.
    pub failed: i32,
    /// Completed indexes, for an Indexed Job.
    pub completed: Option<BTreeSet<i32>>,
    /// Container restarts of active pods (they count as failures with `OnFailure`).
    pub restarts: i32,
    /// Until when replacements wait after failures.
    pub backoff_until: Option<DateTime<Utc>>,
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Counts the Job's `pods`. Succeeded and failed pods may be deleted (by people or pod garbage
/// collection), so counts never fall below what the status already records.
pub fn observe(job: &Job, pods: Vec<Pod>) -> Observed {
    let status = job.status.clone().unwrap_or_default();
    let spec = job.spec.clone().unwrap_or_default();
    let succeeded: Vec<&Pod> = pods.iter().filter(|p| phase(p) == "Succeeded").collect();
    let failed: Vec<&Pod> = pods.iter().filter(|p| phase(p) == "Failed").collect();
    let backoff_until = backoff_until(&succeeded, &failed);
    let completed = (spec.completion_mode.as_deref() == Some("Indexed")).then(|| {
        let completions = spec.completions.unwrap_or(0);
        let mut set = indexes::parse(
            status.completed_indexes.as_deref().unwrap_or_default(),
            completions,
        );
        set.extend(
            succeeded
                .iter()
                .filter_map(|p| indexes::of(p))
                .filter(|i| *i < completions),
        );
        set
    });
    let succeeded = match &completed {
        Some(set) => count(set.len()),
        None => count(succeeded.len()).max(status.succeeded.unwrap_or(0)),
    };
    let failed = count(failed.len()).max(status.failed.unwrap_or(0));
    let terminating = pods
        .iter()
        .filter(|p| is_terminating(p) && !matches!(phase(p), "Succeeded" | "Failed"))
        .count();
    let active: Vec<Pod> = pods.into_iter().filter(is_active).collect();
    Observed {
        ready: active.iter().filter(|p| is_pod_ready(p)).count(),
        restarts: active.iter().map(restarts).sum(),
        active,
        terminating,
        succeeded,
        failed,
        completed,
        backoff_until,
    }
}

/// Writes the counts into `status`, with `active` as it stands after this sync.
pub fn record(status: &mut JobStatus, observed: &Observed, active: usize) {
    let some = |n: i32| (n > 0).then_some(n);
    status.active = some(count(active));
    status.ready = Some(count(observed.ready.min(active)));
    status.terminating = Some(count(observed.terminating));
    status.succeeded = some(observed.succeeded);
    status.failed = some(observed.failed);
    if let Some(set) = &observed.completed {
        status.completed_indexes = Some(indexes::format(set));
    }
}

/// When the Job finished: the time its Complete or Failed condition became True.
pub fn finished_at(job: &Job) -> Option<DateTime<Utc>> {
    let status = job.status.as_ref()?;
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let finished = ["Complete", "Failed"]
        .iter()
        .filter_map(|t| get_condition(conditions, t))
        .find(|c| c.status == "True")?;
    Some(
        finished
            .last_transition_time
            .as_ref()
            .or(status.completion_time.as_ref())
            .map_or(DateTime::<Utc>::UNIX_EPOCH, |t| t.0),
    )
}

/// Sets condition `type_` unless it already has this status, reason and message (Kubernetes'
/// `ensureJobConditionStatus`); a False condition is not added where there is none. Returns
/// whether it changed.
pub fn ensure_condition(
    status: &mut JobStatus,
    type_: &str,
    value: &str,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) -> bool {
    let conditions = status.conditions.get_or_insert_default();
    match get_condition(conditions, type_) {
        Some(c)
            if c.status == value
                && c.reason.as_deref() == Some(reason)
                && c.message.as_deref() == Some(message) =>
        {
            return false;
        }
        None if value == "False" => return false,
        _ => {}
    }
    let condition = JobCondition {
        type_: type_.into(),
        status: value.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: None,
    };
    set_condition(conditions, condition, now)
}

/// Writes `status` unless current; on a conflict, reads the Job again and retries once.
pub fn update(ctx: &Context<'_>, mut job: Job, status: JobStatus) -> Result<Job, Error> {
    for attempt in 0..2 {
        if job.status.as_ref() == Some(&status) {
            return Ok(job);
        }
        job.status = Some(status.clone());
        match ctx.update_status(&job) {
            Err(e) if e.is_conflict() && attempt == 0 => {
                let namespace = job.metadata.namespace.clone().unwrap_or_default();
                let name = job.metadata.name.clone().unwrap_or_default();
                match ctx.get::<Job>(&namespace, &name)? {
                    Some(fresh) => job = fresh,
                    None => return Err(e),
                }
            }
            result => return result,
        }
    }
    Ok(job)
}
