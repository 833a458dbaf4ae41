//! Unit tests of the ReplicaSet controller against the SDK's FakeHost.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use wasmkube_sdk::chrono::TimeDelta;
use wasmkube_sdk::k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use wasmkube_sdk::k8s_openapi::api::core::v1::{
    Container, Pod, PodCondition, PodSpec, PodStatus, PodTemplateSpec,
};
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};
use wasmkube_sdk::owner::{controller_of, controller_ref};
use wasmkube_sdk::testing::{FakeHost, Verb};
use wasmkube_sdk::{Controller, Gvr, ObjectKey, Outcome};

use crate::ReplicaSetController;

fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn key() -> ObjectKey {
    ObjectKey::new("default", "web")
}

fn insert_rs(fake: &FakeHost, replicas: i32, min_ready_seconds: i32) -> ReplicaSet {
    let rs = ReplicaSet {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: Some(min_ready_seconds),
            selector: LabelSelector {
                match_labels: labels(&[("app", "web")]),
                match_expressions: None,
            },
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: labels(&[("app", "web"), ("tier", "front")]),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "nginx".into(),
                        image: Some("nginx".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
        }),
        status: None,
    };
    fake.insert(&rs).unwrap()
}

fn set_replicas(fake: &FakeHost, replicas: i32) {
    fake.modify::<ReplicaSet>("default", "web", |rs| {
        rs.spec.as_mut().unwrap().replicas = Some(replicas);
    })
    .unwrap();
}

/// A running pod: `node` empty means unscheduled; `ready` marks it Ready as of now.
fn insert_pod(
    fake: &FakeHost,
    name: &str,
    owner: Option<OwnerReference>,
    node: &str,
    ready: bool,
) -> Pod {
    let now = fake.clock();
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            labels: labels(&[("app", "web"), ("tier", "front")]),
            owner_references: owner.map(|r| vec![r]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: (!node.is_empty()).then(|| node.to_string()),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some(
                if node.is_empty() {
                    "Pending"
                } else {
                    "Running"
                }
                .into(),
            ),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                last_transition_time: Some(Time(now)),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    };
    fake.insert(&pod).unwrap()
}

fn pods(fake: &FakeHost) -> Vec<Pod> {
    fake.context().list::<Pod>("default", "").unwrap()
}

fn names(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect()
}

fn status(fake: &FakeHost) -> (i32, i32, i32, i32, Option<i64>) {
    let rs = fake
        .context()
        .get::<ReplicaSet>("default", "web")
        .unwrap()
        .unwrap();
    let s = rs.status.unwrap();
    let n = |v: Option<i32>| v.unwrap_or(0);
    (
        s.replicas,
        n(s.fully_labeled_replicas),
        n(s.ready_replicas),
        n(s.available_replicas),
        s.observed_generation,
    )
}

fn reconcile(fake: &FakeHost) -> Outcome {
    fake.reconcile::<ReplicaSetController>(&key()).unwrap()
}

#[test]
fn registration_names_replicasets_and_pods() {
    let r = ReplicaSetController::registration();
    assert_eq!(r.primary, Gvr::new("apps", "v1", "replicasets"));
    assert_eq!(r.owns, vec![Gvr::new("", "v1", "pods")]);
}

#[test]
fn scales_up_from_zero_with_owned_pods_from_the_template() {
    let fake = FakeHost::new();
    let rs = insert_rs(&fake, 3, 0);
    assert_eq!(reconcile(&fake), Outcome::Done);

    let created = pods(&fake);
    assert_eq!(created.len(), 3);
    for pod in &created {
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-"));
        assert!(pod.metadata.name.as_ref().unwrap().starts_with("web-"));
        assert_eq!(
            pod.metadata.labels,
            labels(&[("app", "web"), ("tier", "front")])
        );
        let owner = controller_of(&pod.metadata).unwrap();
        assert_eq!(owner, &controller_ref(&rs).unwrap());
        assert_eq!(owner.block_owner_deletion, Some(true));
        assert_eq!(pod.spec.as_ref().unwrap().containers[0].name, "nginx");
    }
    let events = fake.events();
    assert_eq!(events.len(), 3);
    assert!(
        events
            .iter()
            .all(|e| e.reason == "SuccessfulCreate" && e.regarding == key())
    );
    // Like Kubernetes, status counts the pods seen before this sync's creates.
    assert_eq!(status(&fake), (0, 0, 0, 0, Some(1)));

    fake.clear_records();
    reconcile(&fake);
    assert_eq!(status(&fake), (3, 3, 0, 0, Some(1)));
    assert!(fake.actions().iter().all(|a| a.verb == Verb::UpdateStatus));
    reconcile(&fake);
    assert_eq!(fake.actions().len(), 1, "a steady state writes nothing");
}

#[test]
fn scale_down_prefers_unscheduled_then_not_ready_then_newest() {
    let fake = FakeHost::new();
    let rs = insert_rs(&fake, 5, 0);
    let owner = || Some(controller_ref(&rs).unwrap());
    insert_pod(&fake, "old-a", owner(), "node-a", true);
    insert_pod(&fake, "pending", owner(), "", false);
    insert_pod(&fake, "not-ready", owner(), "node-b", false);
    insert_pod(&fake, "old-c", owner(), "node-c", true);
    fake.advance(TimeDelta::hours(1));
    insert_pod(&fake, "newest", owner(), "node-d", true);
    fake.advance(TimeDelta::hours(1));

    reconcile(&fake);
    assert!(fake.actions().iter().all(|a| a.verb == Verb::UpdateStatus));

    set_replicas(&fake, 3);
    reconcile(&fake);
    assert_eq!(names(&pods(&fake)), ["newest", "old-a", "old-c"]);

    set_replicas(&fake, 2);
    reconcile(&fake);
    assert_eq!(names(&pods(&fake)), ["old-a", "old-c"]);
    let deleted: Vec<_> = fake
        .events()
        .into_iter()
        .filter(|e| e.reason == "SuccessfulDelete")
        .collect();
    assert_eq!(deleted.len(), 3);
    assert_eq!(deleted[2].message, "Deleted pod: newest");
}

#[test]
fn adopts_matching_orphans_and_releases_pods_that_stopped_matching() {
    let fake = FakeHost::new();
    let rs = insert_rs(&fake, 2, 0);
    insert_pod(&fake, "orphan", None, "node-a", true);
    insert_pod(
        &fake,
        "strayed",
        Some(controller_ref(&rs).unwrap()),
        "node-a",
        true,
    );
    fake.modify::<Pod>("default", "strayed", |p| {
        p.metadata.labels = labels(&[("app", "other")])
    })
    .unwrap();
    let other = OwnerReference {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        name: "other".into(),
        uid: "other-uid".into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    insert_pod(&fake, "foreign", Some(other.clone()), "node-a", true);
    insert_pod(&fake, "leaving", None, "node-a", true);
    fake.modify::<Pod>("default", "leaving", |p| {
        p.metadata.deletion_timestamp = Some(Time(fake.clock()));
    })
    .unwrap();

    reconcile(&fake);
    let ctx = fake.context();
    let get = |name: &str| ctx.get::<Pod>("default", name).unwrap().unwrap();
    assert_eq!(
        controller_of(&get("orphan").metadata),
        Some(&controller_ref(&rs).unwrap())
    );
    assert_eq!(get("strayed").metadata.owner_references, None);
    assert_eq!(controller_of(&get("foreign").metadata), Some(&other));
    assert_eq!(get("leaving").metadata.owner_references, None);
    // One adopted pod of two wanted: one created.
    let creates = fake
        .actions()
        .iter()
        .filter(|a| a.verb == Verb::Create)
        .count();
    assert_eq!(creates, 1);
}

#[test]
fn status_counts_honour_min_ready_seconds_and_template_labels() {
    let fake = FakeHost::new();
    let rs = insert_rs(&fake, 3, 10);
    let owner = || Some(controller_ref(&rs).unwrap());
    insert_pod(&fake, "a", owner(), "node-a", true);
    insert_pod(&fake, "b", owner(), "node-b", true);
    insert_pod(&fake, "c", owner(), "node-c", false);
    fake.modify::<Pod>("default", "c", |p| {
        p.metadata.labels = labels(&[("app", "web")])
    })
    .unwrap();

    fake.advance(TimeDelta::seconds(5));
    assert_eq!(
        reconcile(&fake),
        Outcome::RequeueAfter(Duration::from_secs(6))
    );
    assert_eq!(status(&fake), (3, 2, 2, 0, Some(1)));

    fake.advance(TimeDelta::seconds(6));
    assert_eq!(reconcile(&fake), Outcome::Done);
    assert_eq!(status(&fake), (3, 2, 2, 2, Some(1)));

    set_replicas(&fake, 3);
    fake.modify::<ReplicaSet>("default", "web", |rs| rs.metadata.generation = Some(2))
        .unwrap();
    reconcile(&fake);
    assert_eq!(status(&fake).4, Some(2));
}

#[test]
fn terminating_and_finished_pods_do_not_count() {
    let fake = FakeHost::new();
    let rs = insert_rs(&fake, 2, 0);
    let owner = || Some(controller_ref(&rs).unwrap());
    insert_pod(&fake, "running", owner(), "node-a", true);
    insert_pod(&fake, "terminating", owner(), "node-a", true);
    fake.modify::<Pod>("default", "terminating", |p| {
        p.metadata.deletion_timestamp = Some(Time(fake.clock()));
        p.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    })
    .unwrap();
    insert_pod(&fake, "done", owner(), "node-a", false);
    fake.modify::<Pod>("default", "done", |p| {
        p.status.as_mut().unwrap().phase = Some("Succeeded".into());
    })
    .unwrap();

    reconcile(&fake);
    assert_eq!(status(&fake).0, 1);
    let creates = fake
        .actions()
        .iter()
        .filter(|a| a.verb == Verb::Create)
        .count();
    assert_eq!(creates, 1);
    assert!(!fake.actions().iter().any(|a| a.verb == Verb::Delete));
}

#[test]
fn a_deleted_replicaset_is_done() {
    let fake = FakeHost::new();
    assert_eq!(reconcile(&fake), Outcome::Done);
    assert!(fake.actions().is_empty());
}
