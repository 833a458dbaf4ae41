//! The Job controller as a wasmkube plugin: runs pods until enough succeed, or the Job fails.

mod indexes;
mod pods;
mod status;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use wasmkube_sdk::chrono::{DateTime, TimeDelta, Utc};
use wasmkube_sdk::expectations;
use wasmkube_sdk::k8s_openapi::api::batch::v1::Job;
use wasmkube_sdk::k8s_openapi::api::core::v1::Pod;
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use wasmkube_sdk::owner::{adopt, controller_of, release};
use wasmkube_sdk::selector::{Selector, matches, selector};
use wasmkube_sdk::{
    Context, Controller, Error, EventType, LogLevel, ObjectKey, Outcome, Propagation, Registration,
};

use status::Observed;

/// At most this many pods are created per sync, as Kubernetes' `MaxPodCreateDeletePerSync`.
const BURST: usize = 500;
/// The `spec.managedBy` value of Jobs this controller runs (also when unset).
const MANAGER: &str = "kubernetes.io/job-controller";

/// The Job controller.
pub struct JobController;

wasmkube_sdk::export_controller!(JobController);

impl Controller for JobController {
    fn registration() -> Registration {
        Registration::new::<Job>("job-controller").owns::<Pod>()
    }

    fn reconcile(ctx: &Context<'_>, key: ObjectKey) -> Result<Outcome, Error> {
        let Some(job) = ctx.get::<Job>(&key.namespace, &key.name)? else {
            expectations::forget(&key);
            return Ok(Outcome::Done);
        };
        let spec = job.spec.clone().unwrap_or_default();
        if spec.managed_by.as_deref().is_some_and(|m| m != MANAGER) {
            return Ok(Outcome::Done);
        }
        let now = ctx.now()?;
        if let Some(finished) = status::finished_at(&job) {
            return after_finished(ctx, &job, finished, now);
        }
        let parsed = spec
            .selector
            .as_ref()
            .ok_or_else(|| Error::Invalid("the Job has no selector".into()))
            .and_then(selector);
        let selector = match parsed {
            Ok(selector) => selector,
            Err(e) => {
                ctx.log(LogLevel::Error, &format!("job {key}: {e}"));
                return Ok(Outcome::Done);
            }
        };
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let all = ctx.list::<Pod>(&key.namespace, "")?;
        let synced = expectations::satisfied(&key, &uid, &all, now);
        let observed = status::observe(&job, claim_pods(ctx, &job, &selector, all)?);
        sync(ctx, job, observed, synced, now)
    }
}

/// Kubernetes' `syncJob` for an unfinished Job: fail it past its backoff limit or deadline,
/// else run pods, then complete it or record suspension, and write the status.
fn sync(
    ctx: &Context<'_>,
    job: Job,
    mut observed: Observed,
    synced: bool,
    now: DateTime<Utc>,
) -> Result<Outcome, Error> {
    let spec = job.spec.clone().unwrap_or_default();
    let suspended = spec.suspend == Some(true);
    let mut status = job.status.clone().unwrap_or_default();
    if status.start_time.is_none() && !suspended {
        status.start_time = Some(Time(now));
    }
    let deadline = match (spec.active_deadline_seconds, &status.start_time) {
        // A deadline past chrono's range is none.
        (Some(seconds), Some(start)) if !suspended => {
            TimeDelta::try_seconds(seconds).and_then(|d| start.0.checked_add_signed(d))
        }
        _ => None,
    };
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let on_failure = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");
    let restarts_exceed = on_failure
        && if backoff_limit == 0 {
            observed.restarts > 0
        } else {
            observed.restarts >= backoff_limit
        };
    let failure = if observed.failed > backoff_limit || restarts_exceed {
        Some((
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ))
    } else if deadline.is_some_and(|d| now >= d) {
        Some((
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        ))
    } else {
        None
    };
    let mut wake = deadline;
    let mut result = Ok(());
    let mut active = observed.active.len();
    if let Some((reason, message)) = failure {
        // Like Kubernetes, pods stopped because the Job failed count as failed.
        let stopped = delete_pods(ctx, &job, &observed.active, &mut BTreeSet::new())?;
        observed.failed += i32::try_from(stopped).unwrap_or(i32::MAX);
        active = 0;
        status::ensure_condition(&mut status, "Failed", "True", reason, message, now);
        ctx.event(&job, EventType::Warning, reason, message)?;
    } else {
        if synced && job.metadata.deletion_timestamp.is_none() {
            match manage(ctx, &job, &observed, now) {
                Ok(managed) => {
                    active = managed.active;
                    wake = earliest(wake, managed.retry_at);
                }
                Err(e) => result = Err(e),
            }
        }
        let complete = active == 0
            && match spec.completions {
                None => observed.succeeded > 0,
                Some(completions) => observed.succeeded >= completions,
            };
        if complete {
            let message = "Reached expected number of succeeded pods";
            status::ensure_condition(
                &mut status,
                "Complete",
                "True",
                "CompletionsReached",
                message,
                now,
            );
            status.completion_time = Some(Time(now));
            ctx.event(&job, EventType::Normal, "Completed", "Job completed")?;
        } else if suspended {
            let message = "Job suspended";
            if status::ensure_condition(
                &mut status,
                "Suspended",
                "True",
                "JobSuspended",
                message,
                now,
            ) {
                ctx.event(&job, EventType::Normal, "Suspended", message)?;
            }
            if active == 0 {
                status.start_time = None;
            }
        } else if status::ensure_condition(
            &mut status,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            now,
        ) {
            ctx.event(&job, EventType::Normal, "Resumed", "Job resumed")?;
            status.start_time = Some(Time(now));
        }
    }
    status::record(&mut status, &observed, active);
    let job = status::update(ctx, job, status)?;
    result?;
    if let Some(finished) = status::finished_at(&job) {
        return after_finished(ctx, &job, finished, now);
    }
    Ok(requeue(wake, now))
}

/// What `manage` left running, and when it wants to run again (a failure backoff).
struct Managed {
    active: usize,
    retry_at: Option<DateTime<Utc>>,
}

/// Kubernetes' `manageJob`: deletes every active pod of a suspended Job; otherwise keeps
/// `min(parallelism, remaining completions)` pods running (work queues stop adding pods after
/// the first success; Indexed Jobs run each pending index once), waiting out the failure
/// backoff before replacements. Records its writes as expectations.
fn manage(
    ctx: &Context<'_>,
    job: &Job,
    observed: &Observed,
    now: DateTime<Utc>,
) -> Result<Managed, Error> {
    let key = ObjectKey::new(
        job.metadata.namespace.as_deref().unwrap_or_default(),
        job.metadata.name.as_deref().unwrap_or_default(),
    );
    let uid = job.metadata.uid.as_deref().unwrap_or_default();
    let (mut created, mut deleted) = (BTreeSet::new(), BTreeSet::new());
    let result = manage_pods(ctx, job, observed, now, &mut created, &mut deleted);
    expectations::expect(&key, uid, created, deleted, now);
    result
}

fn manage_pods(
    ctx: &Context<'_>,
    job: &Job,
    observed: &Observed,
    now: DateTime<Utc>,
    created: &mut BTreeSet<String>,
    deleted: &mut BTreeSet<String>,
) -> Result<Managed, Error> {
    let spec = job.spec.clone().unwrap_or_default();
    let active = &observed.active;
    if spec.suspend == Some(true) {
        let stopped = delete_pods(ctx, job, active, deleted)?;
        return Ok(Managed {
            active: active.len() - stopped,
            retry_at: None,
        });
    }
    let parallelism = usize::try_from(spec.parallelism.unwrap_or(1)).unwrap_or(0);
    let want = match spec.completions {
        None if observed.succeeded > 0 => active.len(),
        None => parallelism,
        Some(c) => usize::try_from(c - observed.succeeded)
            .unwrap_or(0)
            .min(parallelism),
    };
    let completions = spec.completions.unwrap_or(0);
    // Indexed pods whose index is invalid, out of range, done or duplicated go first.
    let (mut doomed, mut keep, mut running) = (Vec::new(), Vec::new(), BTreeSet::new());
    for pod in active {
        match (&observed.completed, indexes::of(pod)) {
            (None, _) => keep.push(pod.clone()),
            (Some(done), Some(i)) if i < completions && !done.contains(&i) && running.insert(i) => {
                keep.push(pod.clone());
            }
            (Some(_), _) => doomed.push(pod.clone()),
        }
    }
    if keep.len() > want {
        let extra = pods::to_delete(keep.clone(), keep.len() - want);
        let uids: BTreeSet<_> = extra.iter().map(|p| p.metadata.uid.clone()).collect();
        keep.retain(|p| !uids.contains(&p.metadata.uid));
        running = keep.iter().filter_map(indexes::of).collect();
        doomed.extend(extra);
    }
    delete_pods(ctx, job, &doomed, deleted)?;
    let mut count = keep.len();
    if count >= want {
        return Ok(Managed {
            active: count,
            retry_at: None,
        });
    }
    if let Some(until) = observed.backoff_until.filter(|t| *t > now) {
        return Ok(Managed {
            active: count,
            retry_at: Some(until),
        });
    }
    let diff = (want - count).min(BURST);
    let new: Vec<Option<i32>> = match &observed.completed {
        Some(done) => indexes::pending(done, &running, diff, completions)
            .into_iter()
            .map(Some)
            .collect(),
        None => vec![None; diff],
    };
    for index in new {
        match ctx.create(&pods::from_template(job, index)?) {
            Ok(pod) => {
                let name = pod.metadata.name.unwrap_or_default();
                let message = format!("Created pod: {name}");
                ctx.event(job, EventType::Normal, "SuccessfulCreate", &message)?;
                created.insert(name);
                count += 1;
            }
            Err(e) => {
                let message = format!("Error creating: {e}");
                ctx.event(job, EventType::Warning, "FailedCreate", &message)?;
                return Err(e);
            }
        }
    }
    Ok(Managed {
        active: count,
        retry_at: None,
    })
}

/// Deletes `pods` with an Event each, recording their uids in `deleted`; returns how many are
/// gone (already missing ones included).
fn delete_pods(
    ctx: &Context<'_>,
    job: &Job,
    pods: &[Pod],
    deleted: &mut BTreeSet<String>,
) -> Result<usize, Error> {
    let namespace = job.metadata.namespace.as_deref().unwrap_or_default();
    for pod in pods {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        match ctx.delete::<Pod>(namespace, name, Propagation::Background) {
            Ok(()) => {
                let message = format!("Deleted pod: {name}");
                ctx.event(job, EventType::Normal, "SuccessfulDelete", &message)?;
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                let message = format!("Error deleting: {e}");
                ctx.event(job, EventType::Warning, "FailedDelete", &message)?;
                return Err(e);
            }
        }
        deleted.insert(pod.metadata.uid.clone().unwrap_or_default());
    }
    Ok(pods.len())
}

/// Kubernetes' TTL-after-finished controller: deletes a finished Job (foreground, so its pods
/// go first) `ttlSecondsAfterFinished` after it finished, and requeues until then.
fn after_finished(
    ctx: &Context<'_>,
    job: &Job,
    finished: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Outcome, Error> {
    let ttl = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished);
    let Some(ttl) = ttl.filter(|_| job.metadata.deletion_timestamp.is_none()) else {
        return Ok(Outcome::Done);
    };
    let expires = finished + TimeDelta::seconds(i64::from(ttl));
    if now < expires {
        return Ok(requeue(Some(expires), now));
    }
    let namespace = job.metadata.namespace.as_deref().unwrap_or_default();
    let name = job.metadata.name.as_deref().unwrap_or_default();
    match ctx.delete::<Job>(namespace, name, Propagation::Foreground) {
        Err(e) if !e.is_not_found() => return Err(e),
        _ => {}
    }
    let message = format!("job {namespace}/{name}: deleted {ttl}s after it finished");
    ctx.log(LogLevel::Info, &message);
    Ok(Outcome::Done)
}

fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Requeue at `at` (at once when past), or done.
fn requeue(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Outcome {
    match at {
        Some(at) => Outcome::RequeueAfter((at - now).to_std().unwrap_or_default()),
        None => Outcome::Done,
    }
}

/// Kubernetes' `ClaimPods`: keeps the pods this Job controls that still match, adopts matching
/// orphans (unless either side is being deleted) and releases controlled pods that no longer
/// match. Returns the pods the Job owns afterwards, finished ones included.
fn claim_pods(
    ctx: &Context<'_>,
    job: &Job,
    selector: &Selector,
    pods: Vec<Pod>,
) -> Result<Vec<Pod>, Error> {
    let deleting = job.metadata.deletion_timestamp.is_some();
    let mut owned = Vec::new();
    for pod in pods {
        let matching = matches(selector, &pod.metadata);
        let result = match controller_of(&pod.metadata) {
            Some(r) if Some(&r.uid) != job.metadata.uid.as_ref() => continue,
            Some(_) if matching => {
                owned.push(pod);
                continue;
            }
            Some(_) if deleting => continue,
            Some(_) => release(ctx, job, &pod).map(drop),
            None if !matching || deleting || pod.metadata.deletion_timestamp.is_some() => continue,
            None => adopt(ctx, job, &pod).map(|adopted| owned.push(adopted)),
        };
        match result {
            Err(e) if !e.is_not_found() => return Err(e),
            _ => {}
        }
    }
    Ok(owned)
}
