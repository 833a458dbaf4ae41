//! A CronJob's Jobs: the active list, last success, and deleting finished Jobs beyond the limits.

use wasmkube_sdk::chrono::{DateTime, Utc};
use wasmkube_sdk::conditions::is_condition_true;
use wasmkube_sdk::k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use wasmkube_sdk::k8s_openapi::api::core::v1::ObjectReference;
use wasmkube_sdk::{Context, Error, EventType, Propagation};

use crate::recent;

/// `Complete` or `Failed` when the Job finished.
pub fn finished(job: &Job) -> Option<&'static str> {
    let conditions = job.status.as_ref()?.conditions.as_deref()?;
    ["Complete", "Failed"]
        .into_iter()
        .find(|t| is_condition_true(conditions, t))
}

/// A reference to `job` for `status.active`.
pub fn reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

/// Kubernetes' active-list bookkeeping: finished Jobs leave `status.active` (`SawCompletedJob`),
/// unfinished ones missing from it are reported (`UnexpectedJob`), references to Jobs that are
/// gone are dropped (`MissingJob`), and `lastSuccessfulTime` follows the latest completion.
/// Jobs this instance just created are spared, as the cache may not show them yet.
pub fn reconcile_active(
    ctx: &Context<'_>,
    cj: &CronJob,
    jobs: &[Job],
    status: &mut CronJobStatus,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let namespace = cj.metadata.namespace.as_deref().unwrap_or_default();
    let mut active = status.active.take().unwrap_or_default();
    for job in jobs {
        let name = job.metadata.name.as_deref().unwrap_or_default();
        let found = active.iter().any(|r| r.uid == job.metadata.uid);
        match finished(job) {
            None if !found && !recent::is_recent(namespace, name, now) => {
                let message =
                    format!("Saw a job that the controller did not create or forgot: {name}");
                ctx.event(cj, EventType::Warning, "UnexpectedJob", &message)?;
            }
            Some(condition) if found => {
                active.retain(|r| r.uid != job.metadata.uid);
                let message = format!("Saw completed job: {name}, condition: {condition}");
                ctx.event(cj, EventType::Normal, "SawCompletedJob", &message)?;
            }
            _ => {}
        }
        if finished(job) == Some("Complete") {
            let completed = job.status.as_ref().and_then(|s| s.completion_time.clone());
            if let Some(at) = completed
                && status
                    .last_successful_time
                    .as_ref()
                    .is_none_or(|last| at.0 > last.0)
            {
                status.last_successful_time = Some(at);
            }
        }
    }
    let mut missing = Vec::new();
    active.retain(|r| {
        let name = r.name.clone().unwrap_or_default();
        let keep = jobs.iter().any(|j| j.metadata.uid == r.uid)
            || recent::is_recent(namespace, &name, now);
        if !keep {
            missing.push(name);
        }
        keep
    });
    for name in missing {
        let message = format!("Active job went missing: {name}");
        ctx.event(cj, EventType::Normal, "MissingJob", &message)?;
    }
    status.active = (!active.is_empty()).then_some(active);
    Ok(())
}

/// Deletes `job` (background propagation) with Kubernetes' Events; a Job already gone is fine.
pub fn delete(ctx: &Context<'_>, cj: &CronJob, namespace: &str, name: &str) -> Result<(), Error> {
    match ctx.delete::<Job>(namespace, name, Propagation::Background) {
        Ok(()) => {
            let message = format!("Deleted job {name}");
            ctx.event(cj, EventType::Normal, "SuccessfulDelete", &message)
        }
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => {
            ctx.event(
                cj,
                EventType::Warning,
                "FailedDelete",
                &format!("Deleted job: {e}"),
            )?;
            Err(e)
        }
    }
}

/// Kubernetes' `cleanupFinishedJobs`: beyond `successfulJobsHistoryLimit` completed and
/// `failedJobsHistoryLimit` failed Jobs, the oldest (by start time) are deleted.
pub fn cleanup(ctx: &Context<'_>, cj: &CronJob, jobs: &[Job]) -> Result<(), Error> {
    let spec = cj.spec.clone().unwrap_or_default();
    let namespace = cj.metadata.namespace.as_deref().unwrap_or_default();
    let limits = [
        ("Complete", spec.successful_jobs_history_limit),
        ("Failed", spec.failed_jobs_history_limit),
    ];
    for (condition, limit) in limits {
        let Some(limit) = limit else { continue };
        let mut done: Vec<&Job> = jobs
            .iter()
            .filter(|j| finished(j) == Some(condition))
            .collect();
        let excess = done
            .len()
            .saturating_sub(usize::try_from(limit).unwrap_or(0));
        done.sort_by_key(|j| {
            let start = j
                .status
                .as_ref()
                .and_then(|s| s.start_time.clone())
                .map(|t| t.0);
            (start.is_none(), start, j.metadata.name.clone())
        });
        for job in done.into_iter().take(excess) {
            delete(
                ctx,
                cj,
                namespace,
                job.metadata.name.as_deref().unwrap_or_default(),
            )?;
        }
    }
    Ok(())
}
