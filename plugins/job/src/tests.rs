//! Unit tests of the Job controller against the SDK's FakeHost.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use wasmkube_sdk::chrono::TimeDelta;
use wasmkube_sdk::conditions::get_condition;
use wasmkube_sdk::k8s_openapi::api::batch::v1::{Job, JobSpec, JobStatus};
use wasmkube_sdk::k8s_openapi::api::core::v1::{
    Container, Pod, PodSpec, PodStatus, PodTemplateSpec,
};
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use wasmkube_sdk::owner::{controller_of, controller_ref};
use wasmkube_sdk::testing::{FakeHost, Verb};
use wasmkube_sdk::{Controller, Gvr, ObjectKey, Outcome};

use crate::JobController;
use crate::indexes::INDEX_KEY;

fn labels() -> Option<BTreeMap<String, String>> {
    Some(BTreeMap::from([("job-name".into(), "pi".into())]))
}

fn key() -> ObjectKey {
    ObjectKey::new("default", "pi")
}

/// A Job `pi` with Kubernetes' defaults, changed by `edit`.
fn insert_job(fake: &FakeHost, edit: impl FnOnce(&mut JobSpec)) -> Job {
    let mut spec = JobSpec {
        parallelism: Some(1),
        completions: Some(1),
        backoff_limit: Some(6),
        completion_mode: Some("NonIndexed".into()),
        suspend: Some(false),
        selector: Some(LabelSelector {
            match_labels: labels(),
            match_expressions: None,
        }),
        template: PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: labels(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                restart_policy: Some("Never".into()),
                containers: vec![Container {
                    name: "pi".into(),
                    image: Some("perl".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        },
        ..Default::default()
    };
    edit(&mut spec);
    let job = Job {
        metadata: ObjectMeta {
            name: Some("pi".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    };
    fake.insert(&job).unwrap()
}

fn edit_job(fake: &FakeHost, edit: impl FnOnce(&mut JobSpec)) {
    fake.modify::<Job>("default", "pi", |j| edit(j.spec.as_mut().unwrap()))
        .unwrap();
}

fn reconcile(fake: &FakeHost) -> Outcome {
    fake.reconcile::<JobController>(&key()).unwrap()
}

fn job(fake: &FakeHost) -> Job {
    fake.context().get::<Job>("default", "pi").unwrap().unwrap()
}

fn status(fake: &FakeHost) -> JobStatus {
    job(fake).status.unwrap_or_default()
}

/// (active, succeeded, failed) as the status reports them.
fn counts(fake: &FakeHost) -> (i32, i32, i32) {
    let s = status(fake);
    (
        s.active.unwrap_or(0),
        s.succeeded.unwrap_or(0),
        s.failed.unwrap_or(0),
    )
}

fn condition(fake: &FakeHost, type_: &str) -> Option<(String, String)> {
    let conditions = status(fake).conditions.unwrap_or_default();
    get_condition(&conditions, type_).map(|c| (c.status.clone(), c.reason.clone().unwrap()))
}

fn pods(fake: &FakeHost) -> Vec<Pod> {
    fake.context().list::<Pod>("default", "").unwrap()
}

fn running(fake: &FakeHost) -> Vec<String> {
    pods(fake)
        .into_iter()
        .filter(|p| p.status.is_none())
        .map(|p| p.metadata.name.unwrap())
        .collect()
}

fn finish(fake: &FakeHost, name: &str, phase: &str) {
    fake.modify::<Pod>("default", name, |p| {
        p.status = Some(PodStatus {
            phase: Some(phase.into()),
            ..Default::default()
        });
    })
    .unwrap();
}

fn reasons(fake: &FakeHost) -> Vec<String> {
    fake.events().into_iter().map(|e| e.reason).collect()
}

#[test]
fn registration_names_jobs_and_pods() {
    let r = JobController::registration();
    assert_eq!(r.primary, Gvr::new("batch", "v1", "jobs"));
    assert_eq!(r.owns, vec![Gvr::new("", "v1", "pods")]);
}

#[test]
fn runs_parallelism_pods_until_completions_succeed() {
    let fake = FakeHost::new();
    let job = insert_job(&fake, |s| {
        s.completions = Some(3);
        s.parallelism = Some(2);
    });
    assert_eq!(reconcile(&fake), Outcome::Done);
    let created = pods(&fake);
    assert_eq!(created.len(), 2);
    for pod in &created {
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("pi-"));
        assert_eq!(
            controller_of(&pod.metadata),
            Some(&controller_ref(&job).unwrap())
        );
        assert_eq!(pod.metadata.labels, labels());
    }
    assert_eq!(counts(&fake), (2, 0, 0));
    assert!(status(&fake).start_time.is_some());

    let names = running(&fake);
    finish(&fake, &names[0], "Succeeded");
    reconcile(&fake);
    assert_eq!(running(&fake).len(), 2, "one replacement for one success");
    assert_eq!(counts(&fake), (2, 1, 0));

    for name in running(&fake) {
        finish(&fake, &name, "Succeeded");
    }
    fake.clear_records();
    reconcile(&fake);
    assert!(running(&fake).is_empty());
    assert_eq!(counts(&fake), (0, 3, 0));
    assert_eq!(
        condition(&fake, "Complete"),
        Some(("True".into(), "CompletionsReached".into()))
    );
    assert!(status(&fake).completion_time.is_some());
    assert_eq!(reasons(&fake), ["Completed"]);

    fake.clear_records();
    assert_eq!(reconcile(&fake), Outcome::Done);
    assert!(fake.actions().is_empty(), "a finished Job is left alone");
}

#[test]
fn a_work_queue_completes_when_one_pod_succeeded_and_none_runs() {
    let fake = FakeHost::new();
    insert_job(&fake, |s| {
        s.completions = None;
        s.parallelism = Some(3);
    });
    reconcile(&fake);
    let names = running(&fake);
    assert_eq!(names.len(), 3);
    finish(&fake, &names[0], "Succeeded");
    reconcile(&fake);
    assert_eq!(running(&fake).len(), 2, "no new pods after a success");
    assert_eq!(condition(&fake, "Complete"), None);
    finish(&fake, &names[1], "Succeeded");
    finish(&fake, &names[2], "Failed");
    reconcile(&fake);
    assert_eq!(counts(&fake), (0, 2, 1));
    assert_eq!(condition(&fake, "Complete").unwrap().0, "True");
}

#[test]
fn indexed_pods_get_their_index_and_complete_every_index() {
    let fake = FakeHost::new();
    insert_job(&fake, |s| {
        s.completions = Some(3);
        s.parallelism = Some(2);
        s.completion_mode = Some("Indexed".into());
    });
    reconcile(&fake);
    let created = pods(&fake);
    let index = |p: &Pod| p.metadata.annotations.as_ref().unwrap()[INDEX_KEY].clone();
    let mut seen: Vec<String> = created.iter().map(index).collect();
    seen.sort();
    assert_eq!(seen, ["0", "1"]);
    for pod in &created {
        let i = index(pod);
        assert_eq!(pod.metadata.labels.as_ref().unwrap()[INDEX_KEY], i);
        assert_eq!(pod.metadata.generate_name, Some(format!("pi-{i}-")));
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.hostname, Some(format!("pi-{i}")));
        let env = spec.containers[0].env.as_ref().unwrap();
        assert_eq!(env[0].name, "JOB_COMPLETION_INDEX");
    }
    let one = created.iter().find(|p| index(p) == "1").unwrap();
    finish(&fake, one.metadata.name.as_ref().unwrap(), "Succeeded");
    reconcile(&fake);
    assert_eq!(status(&fake).completed_indexes.as_deref(), Some("1"));
    let mut now_running: Vec<String> = pods(&fake)
        .iter()
        .filter(|p| p.status.is_none())
        .map(index)
        .collect();
    now_running.sort();
    assert_eq!(now_running, ["0", "2"]);

    for name in running(&fake) {
        finish(&fake, &name, "Succeeded");
    }
    reconcile(&fake);
    assert_eq!(status(&fake).completed_indexes.as_deref(), Some("0-2"));
    assert_eq!(counts(&fake), (0, 3, 0));
    assert_eq!(condition(&fake, "Complete").unwrap().0, "True");
}

#[test]
fn fails_past_the_backoff_limit_after_backing_off() {
    let fake = FakeHost::new();
    insert_job(&fake, |s| s.backoff_limit = Some(1));
    reconcile(&fake);
    let first = running(&fake);
    finish(&fake, &first[0], "Failed");
    assert_eq!(
        reconcile(&fake),
        Outcome::RequeueAfter(Duration::from_secs(10)),
        "the replacement waits out the backoff"
    );
    assert!(running(&fake).is_empty());
    assert_eq!(counts(&fake), (0, 0, 1));

    fake.advance(TimeDelta::seconds(10));
    reconcile(&fake);
    let second = running(&fake);
    assert_eq!(second.len(), 1);
    finish(&fake, &second[0], "Failed");
    fake.clear_records();
    assert_eq!(reconcile(&fake), Outcome::Done);
    assert_eq!(counts(&fake), (0, 0, 2));
    assert_eq!(
        condition(&fake, "Failed"),
        Some(("True".into(), "BackoffLimitExceeded".into()))
    );
    assert_eq!(reasons(&fake), ["BackoffLimitExceeded"]);
}

#[test]
fn restarts_count_against_the_backoff_limit_with_on_failure() {
    let fake = FakeHost::new();
    insert_job(&fake, |s| {
        s.backoff_limit = Some(2);
        s.template.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
    });
    reconcile(&fake);
    let name = running(&fake).remove(0);
    fake.modify::<Pod>("default", &name, |p| {
        let status: PodStatus = wasmkube_sdk::serde_json::from_value(wasmkube_sdk::serde_json::json!({
            "phase": "Running",
            "containerStatuses": [{"name": "pi", "image": "perl", "imageID": "", "ready": false, "restartCount": 2}]
        }))
        .unwrap();
        p.status = Some(status);
    })
    .unwrap();
    reconcile(&fake);
    assert_eq!(
        condition(&fake, "Failed").unwrap().1,
        "BackoffLimitExceeded"
    );
    assert!(pods(&fake).is_empty(), "the running pod is deleted");
    assert_eq!(counts(&fake), (0, 0, 1));
}

#[test]
fn a_deadline_past_time_itself_is_none() {
    let fake = FakeHost::new();
    insert_job(&fake, |s| s.active_deadline_seconds = Some(i64::MAX));
    assert_eq!(reconcile(&fake), Outcome::Done);
    assert_eq!(running(&fake).len(), 1);
}

#[test]
fn fails_at_the_active_deadline() {
    let fake = FakeHost::new();
    insert_job(&fake, |s| s.active_deadline_seconds = Some(30));
    assert_eq!(
        reconcile(&fake),
        Outcome::RequeueAfter(Duration::from_secs(30))
    );
    assert_eq!(running(&fake).len(), 1);
    fake.advance(TimeDelta::seconds(12));
    assert_eq!(
        reconcile(&fake),
        Outcome::RequeueAfter(Duration::from_secs(18))
    );

    fake.advance(TimeDelta::seconds(18));
    fake.clear_records();
    assert_eq!(reconcile(&fake), Outcome::Done);
    assert_eq!(
        condition(&fake, "Failed"),
        Some(("True".into(), "DeadlineExceeded".into()))
    );
    assert!(pods(&fake).is_empty());
    assert_eq!(counts(&fake), (0, 0, 1));
    assert_eq!(reasons(&fake), ["SuccessfulDelete", "DeadlineExceeded"]);
}

#[test]
fn suspending_deletes_pods_and_resuming_restarts_the_clock() {
    let fake = FakeHost::new();
    insert_job(&fake, |s| {
        s.parallelism = Some(2);
        s.completions = Some(4);
    });
    reconcile(&fake);
    assert_eq!(running(&fake).len(), 2);

    edit_job(&fake, |s| s.suspend = Some(true));
    fake.clear_records();
    reconcile(&fake);
    assert!(pods(&fake).is_empty());
    assert_eq!(
        condition(&fake, "Suspended"),
        Some(("True".into(), "JobSuspended".into()))
    );
    assert_eq!(
        reasons(&fake),
        ["SuccessfulDelete", "SuccessfulDelete", "Suspended"]
    );
    assert_eq!(counts(&fake), (0, 0, 0), "suspended pods are not failures");
    assert!(status(&fake).start_time.is_none());

    fake.advance(TimeDelta::minutes(5));
    edit_job(&fake, |s| s.suspend = Some(false));
    fake.clear_records();
    reconcile(&fake);
    assert_eq!(running(&fake).len(), 2);
    assert_eq!(
        condition(&fake, "Suspended"),
        Some(("False".into(), "JobResumed".into()))
    );
    assert_eq!(status(&fake).start_time.unwrap().0, fake.clock());
    assert!(reasons(&fake).contains(&"Resumed".to_string()));
}

#[test]
fn a_finished_job_is_deleted_after_its_ttl() {
    let fake = FakeHost::new();
    insert_job(&fake, |s| s.ttl_seconds_after_finished = Some(60));
    reconcile(&fake);
    finish(&fake, &running(&fake)[0], "Succeeded");
    assert_eq!(
        reconcile(&fake),
        Outcome::RequeueAfter(Duration::from_secs(60))
    );
    fake.advance(TimeDelta::seconds(45));
    assert_eq!(
        reconcile(&fake),
        Outcome::RequeueAfter(Duration::from_secs(15))
    );
    fake.advance(TimeDelta::seconds(15));
    fake.clear_records();
    assert_eq!(reconcile(&fake), Outcome::Done);
    let deletes: Vec<_> = fake
        .actions()
        .into_iter()
        .filter(|a| a.verb == Verb::Delete)
        .collect();
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].resource, Gvr::new("batch", "v1", "jobs"));
    assert!(
        fake.context()
            .get::<Job>("default", "pi")
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_deleted_job_is_done() {
    let fake = FakeHost::new();
    assert_eq!(reconcile(&fake), Outcome::Done);
    assert!(fake.actions().is_empty());
}
