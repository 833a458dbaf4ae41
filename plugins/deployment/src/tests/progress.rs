//! Conditions and the progress deadline, with the fake clock.

use std::time::Duration;

use wasmkube_sdk::chrono::TimeDelta;

use super::*;
use crate::replicasets::replicas;

#[test]
fn a_stuck_rollout_exceeds_its_progress_deadline() {
    let fake = FakeHost::new();
    let mut d = deployment(3);
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(60);
    fake.insert(&d).unwrap();
    assert_eq!(
        reconcile(&fake),
        Outcome::RequeueAfter(Duration::from_secs(61))
    );

    // Pods exist but never become available.
    fake.advance(TimeDelta::seconds(10));
    simulate(&fake, |_| 0);
    assert_eq!(
        reconcile(&fake),
        Outcome::RequeueAfter(Duration::from_secs(61))
    );
    assert_eq!(
        reason(&fake, "Progressing").as_deref(),
        Some("ReplicaSetUpdated")
    );
    let available = condition(&fake, "Available").unwrap();
    assert_eq!(
        (available.status.as_str(), available.reason.as_deref()),
        ("False", Some("MinimumReplicasUnavailable"))
    );

    fake.advance(TimeDelta::seconds(30));
    assert_eq!(
        reconcile(&fake),
        Outcome::RequeueAfter(Duration::from_secs(31))
    );
    fake.advance(TimeDelta::seconds(31));
    assert_eq!(reconcile(&fake), Outcome::Done);
    let progressing = condition(&fake, "Progressing").unwrap();
    assert_eq!(progressing.status, "False");
    assert_eq!(
        progressing.reason.as_deref(),
        Some("ProgressDeadlineExceeded")
    );
    let rs = &replica_sets(&fake)[0];
    let expected = format!(
        "ReplicaSet \"{}\" has timed out progressing.",
        crate::replicasets::name(rs)
    );
    assert_eq!(progressing.message.as_deref(), Some(expected.as_str()));

    // Late success still completes the rollout.
    settle(&fake);
    reconcile(&fake);
    let progressing = condition(&fake, "Progressing").unwrap();
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_deref()),
        ("True", Some("NewReplicaSetAvailable"))
    );
    assert_eq!(condition(&fake, "Available").unwrap().status, "True");
}

#[test]
fn progress_keeps_the_transition_time_and_moves_the_update_time() {
    let fake = FakeHost::new();
    fake.insert(&deployment(4)).unwrap();
    reconcile(&fake);
    let created = condition(&fake, "Progressing").unwrap();
    fake.advance(TimeDelta::seconds(5));
    simulate(&fake, |rs| replicas(rs) / 2);
    reconcile(&fake);
    let updated = condition(&fake, "Progressing").unwrap();
    assert_eq!(updated.reason.as_deref(), Some("ReplicaSetUpdated"));
    assert_eq!(updated.last_transition_time, created.last_transition_time);
    assert_eq!(updated.last_update_time.unwrap().0, fake.clock());
}

#[test]
fn without_a_deadline_there_is_no_progressing_condition() {
    let fake = FakeHost::new();
    let mut d = deployment(1);
    d.spec.as_mut().unwrap().progress_deadline_seconds = None;
    fake.insert(&d).unwrap();
    assert_eq!(reconcile(&fake), Outcome::Done);
    assert_eq!(condition(&fake, "Progressing"), None);
    assert!(condition(&fake, "Available").is_some());
}

#[test]
fn min_ready_seconds_follows_the_deployment_without_a_new_replica_set() {
    let fake = FakeHost::new();
    let mut d = deployment(1);
    d.spec.as_mut().unwrap().min_ready_seconds = Some(5);
    fake.insert(&d).unwrap();
    reconcile(&fake);
    let min_ready = |fake: &FakeHost| {
        replica_sets(fake)[0]
            .spec
            .as_ref()
            .unwrap()
            .min_ready_seconds
    };
    assert_eq!(min_ready(&fake), Some(5));
    change(&fake, |s| s.min_ready_seconds = Some(10));
    reconcile(&fake);
    assert_eq!(replica_sets(&fake).len(), 1);
    assert_eq!(min_ready(&fake), Some(10));
}

#[test]
fn replica_failures_surface_on_the_deployment() {
    let fake = FakeHost::new();
    fake.insert(&deployment(1)).unwrap();
    reconcile(&fake);
    let rs = crate::replicasets::name(&replica_sets(&fake)[0]).to_string();
    fake.modify::<wasmkube_sdk::k8s_openapi::api::apps::v1::ReplicaSet>("default", &rs, |rs| {
        rs.status = Some(wasmkube_sdk::k8s_openapi::api::apps::v1::ReplicaSetStatus {
            conditions: Some(vec![
                wasmkube_sdk::k8s_openapi::api::apps::v1::ReplicaSetCondition {
                    type_: "ReplicaFailure".into(),
                    status: "True".into(),
                    reason: Some("FailedCreate".into()),
                    message: Some("quota".into()),
                    last_transition_time: None,
                },
            ]),
            ..Default::default()
        });
    })
    .unwrap();
    reconcile(&fake);
    assert_eq!(
        reason(&fake, "ReplicaFailure").as_deref(),
        Some("FailedCreate")
    );
}
