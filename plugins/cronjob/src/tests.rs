//! Unit tests of the CronJob controller against the SDK's FakeHost.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use wasmkube_sdk::chrono::{DateTime, TimeDelta, Utc};
use wasmkube_sdk::k8s_openapi::api::batch::v1::{
    CronJob, CronJobSpec, CronJobStatus, Job, JobCondition, JobSpec, JobStatus, JobTemplateSpec,
};
use wasmkube_sdk::k8s_openapi::api::core::v1::ObjectReference;
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use wasmkube_sdk::owner::{controller_of, controller_ref};
use wasmkube_sdk::testing::FakeHost;
use wasmkube_sdk::{Controller, Gvr, ObjectKey, Outcome};

use crate::CronJobController;

fn key() -> ObjectKey {
    ObjectKey::new("default", "hello")
}

/// A CronJob `hello` created at the fake clock, with Kubernetes' defaults, changed by `edit`.
fn insert_cronjob(fake: &FakeHost, schedule: &str, edit: impl FnOnce(&mut CronJobSpec)) -> CronJob {
    let mut spec = CronJobSpec {
        schedule: schedule.into(),
        concurrency_policy: Some("Allow".into()),
        suspend: Some(false),
        successful_jobs_history_limit: Some(3),
        failed_jobs_history_limit: Some(1),
        job_template: JobTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(BTreeMap::from([("app".into(), "hello".into())])),
                ..Default::default()
            }),
            spec: Some(JobSpec {
                backoff_limit: Some(2),
                ..Default::default()
            }),
        },
        ..Default::default()
    };
    edit(&mut spec);
    let cj = CronJob {
        metadata: ObjectMeta {
            name: Some("hello".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    };
    fake.insert(&cj).unwrap()
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn name_for(time: &str) -> String {
    format!("hello-{}", at(time).timestamp() / 60)
}

fn reconcile(fake: &FakeHost) -> Outcome {
    fake.reconcile::<CronJobController>(&key()).unwrap()
}

fn status(fake: &FakeHost) -> CronJobStatus {
    let cj: CronJob = fake.context().get("default", "hello").unwrap().unwrap();
    cj.status.unwrap_or_default()
}

fn active(fake: &FakeHost) -> Vec<String> {
    let active = status(fake).active.unwrap_or_default();
    active.into_iter().map(|r| r.name.unwrap()).collect()
}

fn jobs(fake: &FakeHost) -> Vec<String> {
    let jobs = fake.context().list::<Job>("default", "").unwrap();
    jobs.into_iter().map(|j| j.metadata.name.unwrap()).collect()
}

fn reasons(fake: &FakeHost) -> Vec<String> {
    fake.events().into_iter().map(|e| e.reason).collect()
}

fn wait(seconds: u64) -> Outcome {
    Outcome::RequeueAfter(Duration::from_secs(seconds) + Duration::from_millis(100))
}

/// Marks a Job finished (`Complete` or `Failed`) at the fake clock, started at `started`.
fn finish(fake: &FakeHost, name: &str, condition: &str, started: &str) {
    let now = fake.clock();
    fake.modify::<Job>("default", name, |j| {
        j.status = Some(JobStatus {
            start_time: Some(Time(at(started))),
            completion_time: (condition == "Complete").then_some(Time(now)),
            conditions: Some(vec![JobCondition {
                type_: condition.into(),
                status: "True".into(),
                last_transition_time: Some(Time(now)),
                ..Default::default()
            }]),
            ..Default::default()
        });
    })
    .unwrap();
}

/// An owned Job finished with `condition`, started at `started`.
fn insert_finished(fake: &FakeHost, cj: &CronJob, name: &str, condition: &str, started: &str) {
    let job = Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            owner_references: Some(vec![controller_ref(cj).unwrap()]),
            ..Default::default()
        },
        ..Default::default()
    };
    fake.insert(&job).unwrap();
    finish(fake, name, condition, started);
}

#[test]
fn registration_names_cronjobs_and_jobs() {
    let r = CronJobController::registration();
    assert_eq!(r.primary, Gvr::new("batch", "v1", "cronjobs"));
    assert_eq!(r.owns, vec![Gvr::new("batch", "v1", "jobs")]);
}

#[test]
fn creates_a_job_at_each_schedule_time() {
    let fake = FakeHost::new(); // 2025-01-01T00:00:00Z
    let cj = insert_cronjob(&fake, "*/5 * * * *", |_| {});
    assert_eq!(reconcile(&fake), wait(300));
    assert!(jobs(&fake).is_empty());

    fake.advance(TimeDelta::seconds(300));
    assert_eq!(reconcile(&fake), wait(300));
    let name = name_for("2025-01-01T00:05:00Z");
    assert_eq!(jobs(&fake), [name.as_str()]);
    let job: Job = fake.context().get("default", &name).unwrap().unwrap();
    assert_eq!(
        controller_of(&job.metadata),
        Some(&controller_ref(&cj).unwrap())
    );
    let annotations = job.metadata.annotations.unwrap();
    assert_eq!(
        annotations["batch.kubernetes.io/cronjob-scheduled-timestamp"],
        "2025-01-01T00:05:00Z"
    );
    assert_eq!(job.metadata.labels.unwrap()["app"], "hello");
    assert_eq!(job.spec.unwrap().backoff_limit, Some(2));
    assert_eq!(active(&fake), [name.as_str()]);
    assert_eq!(
        status(&fake).last_schedule_time,
        Some(Time(at("2025-01-01T00:05:00Z")))
    );
    assert_eq!(fake.events()[0].message, format!("Created job {name}"));

    fake.advance(TimeDelta::seconds(30));
    fake.clear_records();
    assert_eq!(reconcile(&fake), wait(270));
    assert!(fake.actions().is_empty(), "the time is already handled");

    finish(&fake, &name, "Complete", "2025-01-01T00:05:00Z");
    reconcile(&fake);
    assert!(active(&fake).is_empty());
    assert_eq!(status(&fake).last_successful_time, Some(Time(fake.clock())));
    assert_eq!(reasons(&fake), ["SawCompletedJob"]);
}

#[test]
fn concurrency_policies() {
    for (policy, want_jobs, want_active) in [("Allow", 2, 2), ("Forbid", 1, 1), ("Replace", 1, 1)] {
        let fake = FakeHost::new();
        insert_cronjob(&fake, "* * * * *", |s| {
            s.concurrency_policy = Some(policy.into())
        });
        fake.advance(TimeDelta::seconds(60));
        reconcile(&fake);
        fake.advance(TimeDelta::seconds(60));
        fake.clear_records();
        assert_eq!(reconcile(&fake), wait(60), "{policy}");
        assert_eq!(jobs(&fake).len(), want_jobs, "{policy}");
        assert_eq!(active(&fake).len(), want_active, "{policy}");
        let second = name_for("2025-01-01T00:02:00Z");
        match policy {
            "Forbid" => assert_eq!(reasons(&fake), ["JobAlreadyActive"]),
            "Replace" => {
                assert_eq!(jobs(&fake), [second.as_str()]);
                assert_eq!(reasons(&fake), ["SuccessfulDelete", "SuccessfulCreate"]);
            }
            _ => assert!(active(&fake).contains(&second)),
        }
    }
}

#[test]
fn forbid_runs_a_missed_time_once_the_active_job_finished() {
    let fake = FakeHost::new();
    insert_cronjob(&fake, "* * * * *", |s| {
        s.concurrency_policy = Some("Forbid".into())
    });
    fake.advance(TimeDelta::seconds(60));
    reconcile(&fake);
    fake.advance(TimeDelta::seconds(90));
    reconcile(&fake);
    finish(
        &fake,
        &name_for("2025-01-01T00:01:00Z"),
        "Failed",
        "2025-01-01T00:01:00Z",
    );
    assert_eq!(reconcile(&fake), wait(30));
    assert_eq!(active(&fake), [name_for("2025-01-01T00:02:00Z")]);
    assert_eq!(
        status(&fake).last_successful_time,
        None,
        "a failure is no success"
    );
}

#[test]
fn missed_times_start_only_the_most_recent() {
    let fake = FakeHost::new();
    insert_cronjob(&fake, "* * * * *", |_| {});
    fake.advance(TimeDelta::minutes(10));
    reconcile(&fake);
    assert_eq!(jobs(&fake), [name_for("2025-01-01T00:10:00Z")]);
    assert!(!reasons(&fake).contains(&"TooManyMissedTimes".to_string()));

    let fake = FakeHost::new();
    insert_cronjob(&fake, "* * * * *", |_| {});
    fake.advance(TimeDelta::minutes(200));
    reconcile(&fake);
    assert_eq!(jobs(&fake), [name_for("2025-01-01T03:20:00Z")]);
    assert_eq!(reasons(&fake), ["TooManyMissedTimes", "SuccessfulCreate"]);
}

#[test]
fn the_starting_deadline_skips_late_times() {
    let fake = FakeHost::new();
    insert_cronjob(&fake, "0 * * * *", |s| {
        s.starting_deadline_seconds = Some(30)
    });
    fake.set_clock(at("2025-01-01T01:00:45Z"));
    assert_eq!(reconcile(&fake), wait(3555));
    assert!(jobs(&fake).is_empty(), "01:00 is more than 30 s ago");

    fake.set_clock(at("2025-01-01T02:00:20Z"));
    assert_eq!(reconcile(&fake), wait(3580));
    assert_eq!(jobs(&fake), [name_for("2025-01-01T02:00:00Z")]);

    // Hundreds of missed times within a long deadline: the most recent runs, with a warning.
    let fake = FakeHost::new();
    insert_cronjob(&fake, "* * * * *", |s| {
        s.starting_deadline_seconds = Some(86400)
    });
    fake.advance(TimeDelta::minutes(300));
    reconcile(&fake);
    assert_eq!(reasons(&fake), ["TooManyMissedTimes", "SuccessfulCreate"]);
    // With a short deadline they are not counted.
    let fake = FakeHost::new();
    insert_cronjob(&fake, "* * * * *", |s| {
        s.starting_deadline_seconds = Some(120)
    });
    fake.advance(TimeDelta::minutes(300));
    reconcile(&fake);
    assert_eq!(reasons(&fake), ["SuccessfulCreate"]);
}

#[test]
fn suspended_unparseable_and_unknown_zones_do_nothing() {
    let fake = FakeHost::new();
    insert_cronjob(&fake, "* * * * *", |s| s.suspend = Some(true));
    fake.advance(TimeDelta::minutes(5));
    assert_eq!(reconcile(&fake), Outcome::Done);
    assert!(fake.actions().is_empty());

    let fake = FakeHost::new();
    insert_cronjob(&fake, "61 * * * *", |_| {});
    assert_eq!(reconcile(&fake), Outcome::Done);
    assert_eq!(reasons(&fake), ["UnparseableSchedule"]);

    let fake = FakeHost::new();
    insert_cronjob(&fake, "* * * * *", |s| {
        s.time_zone = Some("Mars/Olympus".into())
    });
    assert_eq!(reconcile(&fake), Outcome::Done);
    assert_eq!(reasons(&fake), ["UnknownTimeZone"]);

    let fake = FakeHost::new();
    insert_cronjob(&fake, "0 0 31 2 *", |_| {});
    fake.advance(TimeDelta::days(400));
    assert_eq!(reconcile(&fake), Outcome::Done);
    assert!(jobs(&fake).is_empty());
}

#[test]
fn schedules_in_a_fixed_time_zone() {
    let fake = FakeHost::new();
    insert_cronjob(&fake, "0 9 * * *", |s| {
        s.time_zone = Some("Etc/GMT-2".into())
    });
    assert_eq!(reconcile(&fake), wait(7 * 3600));
    fake.advance(TimeDelta::hours(7));
    reconcile(&fake);
    let name = name_for("2025-01-01T07:00:00Z");
    let job: Job = fake.context().get("default", &name).unwrap().unwrap();
    let annotations = job.metadata.annotations.unwrap();
    assert_eq!(
        annotations["batch.kubernetes.io/cronjob-scheduled-timestamp"],
        "2025-01-01T09:00:00+02:00"
    );
}

#[test]
fn history_limits_delete_the_oldest_finished_jobs() {
    let fake = FakeHost::new();
    let cj = insert_cronjob(&fake, "0 0 1 1 *", |s| {
        s.successful_jobs_history_limit = Some(1);
        s.failed_jobs_history_limit = Some(1);
    });
    insert_finished(&fake, &cj, "ok-new", "Complete", "2024-12-03T00:00:00Z");
    insert_finished(&fake, &cj, "ok-old", "Complete", "2024-12-01T00:00:00Z");
    insert_finished(&fake, &cj, "ok-mid", "Complete", "2024-12-02T00:00:00Z");
    insert_finished(&fake, &cj, "bad-old", "Failed", "2024-12-01T00:00:00Z");
    insert_finished(&fake, &cj, "bad-new", "Failed", "2024-12-02T00:00:00Z");
    fake.clear_records();
    reconcile(&fake);
    let mut left = jobs(&fake);
    left.sort();
    assert_eq!(left, ["bad-new", "ok-new"]);
    let deleted: Vec<String> = fake.events().into_iter().map(|e| e.message).collect();
    assert_eq!(
        deleted,
        [
            "Deleted job ok-old",
            "Deleted job ok-mid",
            "Deleted job bad-old"
        ]
    );
    assert_eq!(status(&fake).last_successful_time, Some(Time(fake.clock())));
}

#[test]
fn missing_active_jobs_are_dropped() {
    let fake = FakeHost::new();
    insert_cronjob(&fake, "0 0 1 1 *", |_| {});
    fake.modify::<CronJob>("default", "hello", |cj| {
        cj.status = Some(CronJobStatus {
            active: Some(vec![ObjectReference {
                name: Some("gone".into()),
                namespace: Some("default".into()),
                uid: Some("gone-uid".into()),
                ..Default::default()
            }]),
            ..Default::default()
        });
    })
    .unwrap();
    reconcile(&fake);
    assert!(active(&fake).is_empty());
    assert_eq!(reasons(&fake), ["MissingJob"]);
}

#[test]
fn a_deleted_cronjob_is_done() {
    let fake = FakeHost::new();
    assert_eq!(reconcile(&fake), Outcome::Done);
    assert!(fake.actions().is_empty());
}
