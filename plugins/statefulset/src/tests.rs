//! Unit tests of the StatefulSet controller against the SDK's FakeHost.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use wasmkube_sdk::k8s_openapi::api::apps::v1::{
    ControllerRevision, RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetSpec,
    StatefulSetStatus, StatefulSetUpdateStrategy,
};
use wasmkube_sdk::k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaim, Pod, PodCondition, PodSpec, PodStatus, PodTemplateSpec,
};
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, Time,
};
use wasmkube_sdk::testing::FakeHost;
use wasmkube_sdk::{Gvr, ObjectKey, Outcome};

use crate::StatefulSetController;

fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn insert_set(fake: &FakeHost, replicas: i32, change: impl FnOnce(&mut StatefulSetSpec)) {
    let mut spec = StatefulSetSpec {
        replicas: Some(replicas),
        service_name: "web".into(),
        selector: LabelSelector {
            match_labels: labels(&[("app", "web")]),
            match_expressions: None,
        },
        template: PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: labels(&[("app", "web")]),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "web".into(),
                    image: Some("web:1".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        },
        ..Default::default()
    };
    change(&mut spec);
    let set = StatefulSet {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    };
    fake.insert(&set).unwrap();
}

fn modify(fake: &FakeHost, change: impl FnOnce(&mut StatefulSetSpec)) {
    fake.modify::<StatefulSet>("default", "web", |s| change(s.spec.as_mut().unwrap()))
        .unwrap();
}

fn sync(fake: &FakeHost) {
    let key = ObjectKey::new("default", "web");
    let outcome = fake.reconcile::<StatefulSetController>(&key).unwrap();
    assert_eq!(outcome, Outcome::Done);
}

fn pods(fake: &FakeHost) -> Vec<Pod> {
    fake.context().list::<Pod>("default", "").unwrap()
}

fn names(fake: &FakeHost) -> Vec<String> {
    let mut names: Vec<String> = pods(fake)
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect();
    names.sort();
    names
}

fn images(fake: &FakeHost) -> Vec<(String, String)> {
    let mut images: Vec<(String, String)> = pods(fake)
        .into_iter()
        .map(|p| {
            let image = p.spec.unwrap().containers[0].image.clone().unwrap();
            (p.metadata.name.unwrap(), image)
        })
        .collect();
    images.sort();
    images
}

fn status(fake: &FakeHost) -> StatefulSetStatus {
    let set = fake.context().get::<StatefulSet>("default", "web");
    set.unwrap().unwrap().status.unwrap()
}

/// Marks every pod Running and Ready.
fn make_ready(fake: &FakeHost) {
    let now = fake.clock();
    for name in names(fake) {
        fake.modify::<Pod>("default", &name, |p| {
            p.status = Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(now)),
                    ..Default::default()
                }]),
                ..Default::default()
            });
        })
        .unwrap();
    }
}

#[test]
fn ordered_ready_creates_in_order_and_scales_down_from_the_top() {
    let fake = FakeHost::new();
    insert_set(&fake, 3, |_| {});
    sync(&fake);
    assert_eq!(names(&fake), ["web-0"]);
    let pod = &pods(&fake)[0];
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("web-0"));
    assert_eq!(spec.subdomain.as_deref(), Some("web"));
    let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("StatefulSet", Some(true))
    );
    sync(&fake);
    assert_eq!(names(&fake), ["web-0"], "web-0 is not ready yet");
    make_ready(&fake);
    sync(&fake);
    assert_eq!(names(&fake), ["web-0", "web-1"]);
    make_ready(&fake);
    sync(&fake);
    make_ready(&fake);
    sync(&fake);
    assert_eq!(names(&fake), ["web-0", "web-1", "web-2"]);
    let s = status(&fake);
    assert_eq!((s.replicas, s.ready_replicas), (3, Some(3)));
    let revision = s.update_revision.clone().unwrap();
    assert_eq!(s.current_revision.as_deref(), Some(revision.as_str()));
    let stored = fake
        .context()
        .get::<ControllerRevision>("default", &revision);
    let stored = stored.unwrap().unwrap();
    assert!(revision.starts_with("web-"));
    assert_eq!(stored.revision, 1);

    modify(&fake, |s| s.replicas = Some(1));
    sync(&fake);
    assert_eq!(names(&fake), ["web-0", "web-1"]);
    sync(&fake);
    assert_eq!(names(&fake), ["web-0"]);
}

#[test]
fn parallel_creates_and_deletes_at_once() {
    let fake = FakeHost::new();
    insert_set(&fake, 3, |s| {
        s.pod_management_policy = Some("Parallel".into())
    });
    sync(&fake);
    assert_eq!(names(&fake), ["web-0", "web-1", "web-2"]);
    modify(&fake, |s| s.replicas = Some(1));
    sync(&fake);
    assert_eq!(names(&fake), ["web-0"]);
}

#[test]
fn claims_are_created_before_pods_and_kept() {
    let fake = FakeHost::new();
    insert_set(&fake, 2, |s| {
        s.pod_management_policy = Some("Parallel".into());
        s.volume_claim_templates = Some(vec![PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data".into()),
                ..Default::default()
            },
            ..Default::default()
        }]);
    });
    sync(&fake);
    let claims = || {
        let mut names: Vec<String> = fake
            .context()
            .list::<PersistentVolumeClaim>("default", "")
            .unwrap()
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect();
        names.sort();
        names
    };
    assert_eq!(claims(), ["data-web-0", "data-web-1"]);
    let pod = fake
        .context()
        .get::<Pod>("default", "web-1")
        .unwrap()
        .unwrap();
    let volume = &pod.spec.unwrap().volumes.unwrap()[0];
    assert_eq!(volume.name, "data");
    let claim = volume.persistent_volume_claim.as_ref().unwrap();
    assert_eq!(claim.claim_name, "data-web-1");
    modify(&fake, |s| s.replicas = Some(1));
    sync(&fake);
    assert_eq!(names(&fake), ["web-0"]);
    assert_eq!(
        claims(),
        ["data-web-0", "data-web-1"],
        "claims outlive scale-down"
    );
}

#[test]
fn rolling_update_goes_down_to_the_partition() {
    let fake = FakeHost::new();
    insert_set(&fake, 3, |s| {
        s.update_strategy = Some(StatefulSetUpdateStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateStatefulSetStrategy {
                partition: Some(1),
                max_unavailable: None,
            }),
        });
    });
    for _ in 0..3 {
        sync(&fake);
        make_ready(&fake);
    }
    sync(&fake);
    let old = status(&fake).current_revision.unwrap();
    modify(&fake, |s| {
        s.template.spec.as_mut().unwrap().containers[0].image = Some("web:2".into());
    });
    sync(&fake);
    assert_eq!(
        names(&fake),
        ["web-0", "web-1"],
        "the highest ordinal goes first"
    );
    sync(&fake);
    sync(&fake);
    assert_eq!(images(&fake)[2].1, "web:2");
    assert_eq!(images(&fake)[1].1, "web:1", "web-2 is not ready yet");
    make_ready(&fake);
    sync(&fake);
    sync(&fake);
    make_ready(&fake);
    sync(&fake);
    sync(&fake);
    let want = [("web-0", "web:1"), ("web-1", "web:2"), ("web-2", "web:2")];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(images(&fake), want, "web-0 is below the partition");
    let s = status(&fake);
    assert_eq!((s.updated_replicas, s.current_replicas), (Some(2), Some(1)));
    assert_eq!(s.current_revision.as_deref(), Some(old.as_str()));
    assert_ne!(s.update_revision, s.current_revision);
    fake.remove(&Gvr::of::<Pod>(), "default", "web-0");
    sync(&fake);
    assert_eq!(
        images(&fake),
        want,
        "recreated below the partition: current revision"
    );
    make_ready(&fake);

    modify(&fake, |s| {
        let strategy = s.update_strategy.as_mut().unwrap();
        strategy.rolling_update.as_mut().unwrap().partition = Some(0);
    });
    sync(&fake);
    sync(&fake);
    make_ready(&fake);
    sync(&fake);
    sync(&fake);
    assert!(images(&fake).iter().all(|(_, image)| image == "web:2"));
    let s = status(&fake);
    assert_eq!(s.current_revision, s.update_revision);
    assert_eq!(s.current_replicas, Some(3));
}

#[test]
fn failed_pods_are_replaced_with_the_same_name() {
    let fake = FakeHost::new();
    insert_set(&fake, 1, |_| {});
    sync(&fake);
    let uid = pods(&fake)[0].metadata.uid.clone();
    fake.modify::<Pod>("default", "web-0", |p| {
        p.status = Some(PodStatus {
            phase: Some("Failed".into()),
            ..Default::default()
        });
    })
    .unwrap();
    sync(&fake);
    sync(&fake);
    assert_eq!(names(&fake), ["web-0"]);
    assert_ne!(pods(&fake)[0].metadata.uid, uid);
}
