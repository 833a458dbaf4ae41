//! Unit tests of the DaemonSet controller against the SDK's FakeHost.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use wasmkube_sdk::k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
};
use wasmkube_sdk::k8s_openapi::api::core::v1::{
    Affinity, Container, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, NodeSpec, Pod, PodCondition, PodSpec, PodStatus, PodTemplateSpec, Taint,
    Toleration,
};
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, Time,
};
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use wasmkube_sdk::revision::REVISION_HASH_LABEL;
use wasmkube_sdk::testing::FakeHost;
use wasmkube_sdk::{Gvr, ObjectKey, Outcome};

use crate::DaemonSetController;

fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn key() -> ObjectKey {
    ObjectKey::new("default", "agent")
}

fn daemonset(spec: PodSpec, strategy: Option<DaemonSetUpdateStrategy>) -> DaemonSet {
    DaemonSet {
        metadata: ObjectMeta {
            name: Some("agent".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: labels(&[("app", "agent")]),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: labels(&[("app", "agent")]),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "agent".into(),
                        image: Some("agent:1".into()),
                        ..Default::default()
                    }],
                    ..spec
                }),
            },
            update_strategy: strategy,
            ..Default::default()
        }),
        status: None,
    }
}

fn insert_node(fake: &FakeHost, name: &str, node_labels: &[(&str, &str)], taints: Vec<Taint>) {
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: labels(node_labels),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: Some(taints),
            ..Default::default()
        }),
        status: None,
    };
    fake.insert(&node).unwrap();
}

fn taint(key: &str, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        effect: effect.into(),
        ..Default::default()
    }
}

fn sync(fake: &FakeHost) {
    let outcome = fake.reconcile::<DaemonSetController>(&key()).unwrap();
    assert_eq!(outcome, Outcome::Done);
}

fn pods(fake: &FakeHost) -> Vec<Pod> {
    fake.context().list::<Pod>("default", "").unwrap()
}

/// The nodes the live pods are on, sorted.
fn pod_nodes(fake: &FakeHost) -> Vec<String> {
    let mut nodes: Vec<String> = pods(fake)
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| p.spec.as_ref().unwrap().node_name.clone().unwrap())
        .collect();
    nodes.sort();
    nodes
}

fn status(fake: &FakeHost) -> wasmkube_sdk::k8s_openapi::api::apps::v1::DaemonSetStatus {
    let ds = fake.context().get::<DaemonSet>("default", "agent");
    ds.unwrap().unwrap().status.unwrap()
}

fn make_ready(fake: &FakeHost) {
    let now = fake.clock();
    for pod in pods(fake) {
        let name = pod.metadata.name.unwrap();
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
fn one_pod_per_node_following_joins_and_leaves() {
    let fake = FakeHost::new();
    insert_node(&fake, "n1", &[], vec![]);
    insert_node(&fake, "n2", &[], vec![]);
    let ds = fake.insert(&daemonset(PodSpec::default(), None)).unwrap();
    sync(&fake);
    assert_eq!(pod_nodes(&fake), ["n1", "n2"]);
    for pod in pods(&fake) {
        assert!(pod.metadata.name.as_deref().unwrap().starts_with("agent-"));
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.uid.as_str(), owner.controller),
            (ds.metadata.uid.as_deref().unwrap(), Some(true))
        );
        assert!(
            pod.metadata
                .labels
                .as_ref()
                .unwrap()
                .contains_key(REVISION_HASH_LABEL)
        );
        let spec = pod.spec.unwrap();
        let node = spec.node_name.clone().unwrap();
        let term = &spec
            .affinity
            .unwrap()
            .node_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .unwrap()
            .node_selector_terms[0];
        let field = &term.match_fields.as_ref().unwrap()[0];
        assert_eq!(
            (field.key.as_str(), field.values.clone()),
            ("metadata.name", Some(vec![node]))
        );
        let tolerated: Vec<String> = spec
            .tolerations
            .unwrap()
            .into_iter()
            .filter_map(|t| t.key)
            .collect();
        assert!(tolerated.contains(&"node.kubernetes.io/unschedulable".to_string()));
        assert_eq!(tolerated.len(), 6);
    }
    sync(&fake);
    assert_eq!(pods(&fake).len(), 2, "nothing more to create");
    let s = status(&fake);
    assert_eq!(
        (
            s.desired_number_scheduled,
            s.current_number_scheduled,
            s.number_ready
        ),
        (2, 2, 0)
    );
    assert_eq!(s.observed_generation, Some(1));

    insert_node(&fake, "n3", &[], vec![]);
    sync(&fake);
    assert_eq!(pod_nodes(&fake), ["n1", "n2", "n3"]);

    assert!(fake.remove(&Gvr::of::<Node>(), "", "n2"));
    sync(&fake);
    assert_eq!(pod_nodes(&fake), ["n1", "n3"]);
    make_ready(&fake);
    sync(&fake);
    let s = status(&fake);
    assert_eq!(
        (
            s.desired_number_scheduled,
            s.number_ready,
            s.number_available
        ),
        (2, 2, Some(2))
    );
}

#[test]
fn taints_node_selector_and_affinity_choose_nodes() {
    let fake = FakeHost::new();
    insert_node(&fake, "ssd", &[("disk", "ssd"), ("zone", "a")], vec![]);
    insert_node(&fake, "hdd", &[("disk", "hdd"), ("zone", "a")], vec![]);
    insert_node(
        &fake,
        "dedicated",
        &[("disk", "ssd"), ("zone", "a")],
        vec![taint("dedicated", "NoSchedule")],
    );
    insert_node(
        &fake,
        "cordoned",
        &[("disk", "ssd"), ("zone", "a")],
        vec![taint("node.kubernetes.io/unschedulable", "NoSchedule")],
    );
    insert_node(&fake, "far", &[("disk", "ssd"), ("zone", "b")], vec![]);
    let affinity = Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: "zone".into(),
                        operator: "NotIn".into(),
                        values: Some(vec!["b".into()]),
                    }]),
                    match_fields: None,
                }],
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let spec = PodSpec {
        node_selector: labels(&[("disk", "ssd")]),
        affinity: Some(affinity),
        ..Default::default()
    };
    fake.insert(&daemonset(spec, None)).unwrap();
    sync(&fake);
    assert_eq!(pod_nodes(&fake), ["cordoned", "ssd"]);
    assert_eq!(status(&fake).desired_number_scheduled, 2);

    fake.modify::<DaemonSet>("default", "agent", |ds| {
        let spec = ds.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
        spec.tolerations = Some(vec![Toleration {
            key: Some("dedicated".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        }]);
    })
    .unwrap();
    sync(&fake);
    assert!(pod_nodes(&fake).contains(&"dedicated".to_string()));
}

#[test]
fn no_execute_evicts_and_no_schedule_keeps_running_pods() {
    let fake = FakeHost::new();
    insert_node(&fake, "n1", &[], vec![]);
    insert_node(&fake, "n2", &[], vec![]);
    fake.insert(&daemonset(PodSpec::default(), None)).unwrap();
    sync(&fake);
    fake.modify::<Node>("", "n1", |n| {
        n.spec.as_mut().unwrap().taints = Some(vec![taint("maintenance", "NoSchedule")])
    })
    .unwrap();
    fake.modify::<Node>("", "n2", |n| {
        n.spec.as_mut().unwrap().taints = Some(vec![taint("broken", "NoExecute")])
    })
    .unwrap();
    sync(&fake);
    assert_eq!(pod_nodes(&fake), ["n1"]);
    let s = status(&fake);
    assert_eq!((s.desired_number_scheduled, s.number_misscheduled), (0, 2));
    sync(&fake);
    assert_eq!(status(&fake).number_misscheduled, 1);
}

#[test]
fn failed_pods_are_replaced() {
    let fake = FakeHost::new();
    insert_node(&fake, "n1", &[], vec![]);
    fake.insert(&daemonset(PodSpec::default(), None)).unwrap();
    sync(&fake);
    let name = pods(&fake)[0].metadata.name.clone().unwrap();
    fake.modify::<Pod>("default", &name, |p| {
        p.status = Some(PodStatus {
            phase: Some("Failed".into()),
            ..Default::default()
        });
    })
    .unwrap();
    sync(&fake);
    assert!(pods(&fake).is_empty());
    sync(&fake);
    assert_eq!(pod_nodes(&fake), ["n1"]);
}

fn change_image(fake: &FakeHost, image: &str) {
    fake.modify::<DaemonSet>("default", "agent", |ds| {
        let spec = ds.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
        spec.containers[0].image = Some(image.into());
    })
    .unwrap();
}

fn images(fake: &FakeHost) -> Vec<String> {
    let mut images: Vec<String> = pods(fake)
        .into_iter()
        .map(|p| p.spec.unwrap().containers[0].image.clone().unwrap())
        .collect();
    images.sort();
    images
}

#[test]
fn rolling_update_honours_max_unavailable() {
    let fake = FakeHost::new();
    for n in ["n1", "n2", "n3"] {
        insert_node(&fake, n, &[], vec![]);
    }
    let strategy = DaemonSetUpdateStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDaemonSet {
            max_unavailable: Some(IntOrString::String("50%".into())),
            max_surge: None,
        }),
    };
    fake.insert(&daemonset(PodSpec::default(), Some(strategy)))
        .unwrap();
    sync(&fake);
    make_ready(&fake);
    change_image(&fake, "agent:2");
    sync(&fake);
    // 50% of 3, rounded up: two old pods go at once.
    assert_eq!(images(&fake), ["agent:1"]);
    sync(&fake);
    assert_eq!(images(&fake), ["agent:1", "agent:2", "agent:2"]);
    sync(&fake);
    assert_eq!(
        images(&fake),
        ["agent:1", "agent:2", "agent:2"],
        "the new pods are not ready yet"
    );
    make_ready(&fake);
    sync(&fake);
    sync(&fake);
    assert_eq!(images(&fake), ["agent:2", "agent:2", "agent:2"]);
    make_ready(&fake);
    sync(&fake);
    let s = status(&fake);
    assert_eq!(
        (s.updated_number_scheduled, s.number_available),
        (Some(3), Some(3))
    );
}

#[test]
fn on_delete_waits_for_pods_to_be_deleted() {
    let fake = FakeHost::new();
    insert_node(&fake, "n1", &[], vec![]);
    insert_node(&fake, "n2", &[], vec![]);
    let strategy = DaemonSetUpdateStrategy {
        type_: Some("OnDelete".into()),
        rolling_update: None,
    };
    fake.insert(&daemonset(PodSpec::default(), Some(strategy)))
        .unwrap();
    sync(&fake);
    make_ready(&fake);
    change_image(&fake, "agent:2");
    sync(&fake);
    assert_eq!(images(&fake), ["agent:1", "agent:1"]);
    assert_eq!(status(&fake).updated_number_scheduled, Some(0));
    let name = pods(&fake)[0].metadata.name.clone().unwrap();
    fake.remove(&Gvr::of::<Pod>(), "default", &name);
    sync(&fake);
    assert_eq!(images(&fake), ["agent:1", "agent:2"]);
}
