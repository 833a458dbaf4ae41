//! Unit tests of the Deployment controller against the SDK's FakeHost, the RS controller simulated.
#![allow(clippy::unwrap_used)]

mod lifecycle;
mod progress;
mod rolling;

use std::collections::BTreeMap;

use wasmkube_sdk::chrono::TimeDelta;
use wasmkube_sdk::k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentSpec, DeploymentStatus, DeploymentStrategy,
    ReplicaSet, ReplicaSetStatus, RollingUpdateDeployment,
};
use wasmkube_sdk::k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use wasmkube_sdk::testing::FakeHost;
use wasmkube_sdk::{ObjectKey, Outcome};

use crate::DeploymentController;
use crate::annotations::REVISION;

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

fn template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: labels(&[("app", "web")]),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "web".into(),
                image: Some(image.into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

fn rolling(surge: IntOrString, unavailable: IntOrString) -> DeploymentStrategy {
    DeploymentStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(surge),
            max_unavailable: Some(unavailable),
        }),
    }
}

fn recreate() -> DeploymentStrategy {
    DeploymentStrategy {
        type_: Some("Recreate".into()),
        rolling_update: None,
    }
}

/// A Deployment as the apiserver defaults it: 25%/25% rolling update, 10 revisions kept,
/// a 600 s progress deadline.
fn deployment(replicas: i32) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: labels(&[("app", "web")]),
                match_expressions: None,
            },
            template: template("nginx:1"),
            strategy: Some(rolling(
                IntOrString::String("25%".into()),
                IntOrString::String("25%".into()),
            )),
            revision_history_limit: Some(10),
            progress_deadline_seconds: Some(600),
            ..Default::default()
        }),
        status: None,
    }
}

fn reconcile(fake: &FakeHost) -> Outcome {
    fake.reconcile::<DeploymentController>(&key()).unwrap()
}

/// Changes the Deployment's spec a second later (so that new ReplicaSets sort as newer).
fn change(fake: &FakeHost, f: impl FnOnce(&mut DeploymentSpec)) {
    fake.advance(TimeDelta::seconds(1));
    fake.modify::<Deployment>("default", "web", |d| {
        f(d.spec.as_mut().unwrap());
        d.metadata.generation = Some(d.metadata.generation.unwrap_or(1) + 1);
    })
    .unwrap();
}

fn set_image(fake: &FakeHost, image: &str) {
    change(fake, |s| s.template = template(image));
}

fn get_deployment(fake: &FakeHost) -> Deployment {
    fake.context()
        .get::<Deployment>("default", "web")
        .unwrap()
        .unwrap()
}

fn status(fake: &FakeHost) -> DeploymentStatus {
    get_deployment(fake).status.unwrap_or_default()
}

fn condition(fake: &FakeHost, type_: &str) -> Option<DeploymentCondition> {
    status(fake)
        .conditions
        .into_iter()
        .flatten()
        .find(|c| c.type_ == type_)
}

fn reason(fake: &FakeHost, type_: &str) -> Option<String> {
    condition(fake, type_).and_then(|c| c.reason)
}

/// The ReplicaSets, oldest first.
fn replica_sets(fake: &FakeHost) -> Vec<ReplicaSet> {
    let mut rss = fake.context().list::<ReplicaSet>("default", "").unwrap();
    rss.sort_by(crate::replicasets::by_creation);
    rss
}

fn sizes(fake: &FakeHost) -> Vec<i32> {
    replica_sets(fake)
        .iter()
        .map(crate::replicasets::replicas)
        .collect()
}

fn revision(rs: &ReplicaSet) -> Option<&str> {
    rs.metadata
        .annotations
        .as_ref()?
        .get(REVISION)
        .map(String::as_str)
}

fn image(rs: &ReplicaSet) -> String {
    let template = crate::replicasets::template(rs).unwrap();
    let spec = template.spec.as_ref().unwrap();
    spec.containers[0].image.clone().unwrap()
}

/// What the ReplicaSet controller would report: every ReplicaSet has its pods, of which the
/// first `available(rs)` are ready and available.
fn simulate(fake: &FakeHost, available: impl Fn(&ReplicaSet) -> i32) {
    for rs in replica_sets(fake) {
        let n = crate::replicasets::replicas(&rs);
        let up = available(&rs).min(n);
        fake.modify::<ReplicaSet>("default", crate::replicasets::name(&rs), |rs| {
            rs.status = Some(ReplicaSetStatus {
                replicas: n,
                ready_replicas: Some(up),
                available_replicas: Some(up),
                fully_labeled_replicas: Some(n),
                observed_generation: rs.metadata.generation,
                conditions: None,
            });
        })
        .unwrap();
    }
}

/// Every pod the ReplicaSets want exists and is available.
fn settle(fake: &FakeHost) {
    simulate(fake, crate::replicasets::replicas);
}

fn scaling_events(fake: &FakeHost) -> Vec<String> {
    fake.events()
        .into_iter()
        .filter(|e| e.reason == "ScalingReplicaSet")
        .map(|e| e.message)
        .collect()
}
