//! The CronJob controller as a wasmkube plugin: creates Jobs on a cron schedule, keeps their history.

mod cron;
mod history;
mod recent;
#[cfg(test)]
mod tests;
mod timing;

use wasmkube_sdk::chrono::{DateTime, Utc};
use wasmkube_sdk::k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use wasmkube_sdk::owner::{controller_ref, is_controlled_by};
use wasmkube_sdk::{Context, Controller, Error, EventType, ObjectKey, Outcome, Registration};

use timing::Timing;

/// The annotation with a Job's scheduled time.
const SCHEDULED_AT: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// The CronJob controller.
pub struct CronJobController;

wasmkube_sdk::export_controller!(CronJobController);

impl Controller for CronJobController {
    fn registration() -> Registration {
        Registration::new::<CronJob>("cronjob-controller").owns::<Job>()
    }

    fn reconcile(ctx: &Context<'_>, key: ObjectKey) -> Result<Outcome, Error> {
        let Some(cj) = ctx.get::<CronJob>(&key.namespace, &key.name)? else {
            return Ok(Outcome::Done);
        };
        let now = ctx.now()?;
        let jobs: Vec<Job> = ctx
            .list::<Job>(&key.namespace, "")?
            .into_iter()
            .filter(|j| is_controlled_by(&j.metadata, &cj))
            .collect();
        let mut status = cj.status.clone().unwrap_or_default();
        history::reconcile_active(ctx, &cj, &jobs, &mut status, now)?;
        if cj.metadata.deletion_timestamp.is_some() {
            update_status(ctx, cj, status)?;
            return Ok(Outcome::Done);
        }
        // Like Kubernetes, history is cleaned and status written even when scheduling failed.
        let scheduled = schedule(ctx, &cj, &mut status, now);
        history::cleanup(ctx, &cj, &jobs)?;
        update_status(ctx, cj, status)?;
        scheduled
    }
}

/// Kubernetes' `syncCronJob` after the active list: unless suspended, starts a Job for the most
/// recent unmet schedule time (within `startingDeadlineSeconds`) as the concurrency policy
/// allows, then requeues for the next schedule time.
fn schedule(
    ctx: &Context<'_>,
    cj: &CronJob,
    status: &mut CronJobStatus,
    now: DateTime<Utc>,
) -> Result<Outcome, Error> {
    let spec = cj.spec.clone().unwrap_or_default();
    let zone = match timing::zone(spec.time_zone.as_deref()) {
        Ok(zone) => zone,
        Err(e) => {
            let tz = spec.time_zone.unwrap_or_default();
            let message = format!("invalid timeZone: {tz:?}: {e}");
            ctx.event(cj, EventType::Warning, "UnknownTimeZone", &message)?;
            return Ok(Outcome::Done);
        }
    };
    if spec.suspend == Some(true) {
        return Ok(Outcome::Done);
    }
    let timing = match Timing::new(&spec.schedule, zone) {
        Ok(timing) => timing,
        Err(e) => {
            let message = format!("unparseable schedule: {:?} : {e}", spec.schedule);
            ctx.event(cj, EventType::Warning, "UnparseableSchedule", &message)?;
            return Ok(Outcome::Done);
        }
    };
    let created = cj.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let earliest = status.last_schedule_time.as_ref().map_or(created, |t| t.0);
    let recent = timing.most_recent(earliest, spec.starting_deadline_seconds, now);
    let Some(scheduled) = recent.time else {
        return Ok(requeue(&timing, earliest, now));
    };
    if recent.too_many {
        let message = "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew";
        ctx.event(cj, EventType::Warning, "TooManyMissedTimes", message)?;
    }
    let job = job_for(cj, scheduled, &timing)?;
    let name = job.metadata.name.clone().unwrap_or_default();
    let active = status.active.clone().unwrap_or_default();
    let done = active.iter().any(|r| r.name.as_ref() == Some(&name))
        || status.last_schedule_time.as_ref().map(|t| t.0) == Some(scheduled);
    if done {
        return Ok(requeue(&timing, earliest, now));
    }
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => {
            let message = "Not starting job because prior execution is running and concurrency policy is Forbid";
            ctx.event(cj, EventType::Normal, "JobAlreadyActive", message)?;
            return Ok(requeue(&timing, earliest, now));
        }
        Some("Replace") => {
            for r in &active {
                let namespace = r.namespace.as_deref().unwrap_or_default();
                history::delete(ctx, cj, namespace, r.name.as_deref().unwrap_or_default())?;
            }
            status.active = None;
        }
        _ => {}
    }
    let namespace = cj.metadata.namespace.as_deref().unwrap_or_default();
    let job = match ctx.create(&job) {
        Ok(job) => {
            ctx.event(
                cj,
                EventType::Normal,
                "SuccessfulCreate",
                &format!("Created job {name}"),
            )?;
            recent::remember(namespace, &name, now);
            job
        }
        Err(e) if e.is_already_exists() => match ctx.get::<Job>(namespace, &name)? {
            // Created by someone else, or already listed: they keep the status.
            Some(existing) if is_controlled_by(&existing.metadata, cj) => {
                if active.iter().any(|r| r.uid == existing.metadata.uid) {
                    return Ok(requeue(&timing, earliest, now));
                }
                existing
            }
            _ => return Ok(requeue(&timing, earliest, now)),
        },
        Err(e) => {
            let message = format!("Error creating job: {e}");
            ctx.event(cj, EventType::Warning, "FailedCreate", &message)?;
            return Err(e);
        }
    };
    status
        .active
        .get_or_insert_default()
        .push(history::reference(&job));
    status.last_schedule_time = Some(Time(scheduled));
    Ok(requeue(&timing, scheduled, now))
}

/// Kubernetes' `getJobFromTemplate2`: the template's labels, annotations and spec, named
/// `<cronjob>-<scheduled minutes since the epoch>`, controlled by the CronJob, with the
/// scheduled time annotated.
fn job_for(cj: &CronJob, scheduled: DateTime<Utc>, timing: &Timing) -> Result<Job, Error> {
    let template = cj.spec.clone().unwrap_or_default().job_template;
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_AT.into(), timing.stamp(scheduled));
    let name = cj.metadata.name.as_deref().unwrap_or_default();
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(format!("{name}-{}", scheduled.timestamp().div_euclid(60))),
            namespace: cj.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(cj)?]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    })
}

/// Requeue for the next schedule time after the most recent one since `earliest`.
fn requeue(timing: &Timing, earliest: DateTime<Utc>, now: DateTime<Utc>) -> Outcome {
    match timing.until_next(earliest, now) {
        Some(wait) => Outcome::RequeueAfter(wait.to_std().unwrap_or_default()),
        None => Outcome::Done,
    }
}

/// Writes `status` unless current; on a conflict, reads the CronJob again and retries once.
fn update_status(ctx: &Context<'_>, mut cj: CronJob, status: CronJobStatus) -> Result<(), Error> {
    for attempt in 0..2 {
        if cj.status.as_ref().unwrap_or(&CronJobStatus::default()) == &status {
            return Ok(());
        }
        cj.status = Some(status.clone());
        match ctx.update_status(&cj) {
            Err(e) if e.is_conflict() && attempt == 0 => {
                let namespace = cj.metadata.namespace.clone().unwrap_or_default();
                let name = cj.metadata.name.clone().unwrap_or_default();
                match ctx.get::<CronJob>(&namespace, &name)? {
                    Some(fresh) => cj = fresh,
                    None => return Err(e),
                }
            }
            result => return result.map(drop),
        }
    }
    Ok(())
}
