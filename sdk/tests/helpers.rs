//! Owner references and conditions helpers.
#![allow(clippy::unwrap_used)]

use wasmkube_sdk::chrono::TimeDelta;
use wasmkube_sdk::conditions::{get_condition, is_condition_true, remove_condition, set_condition};
use wasmkube_sdk::k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition};
use wasmkube_sdk::k8s_openapi::api::core::v1::Pod;
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use wasmkube_sdk::owner::{adopt, controller_of, controller_ref, is_controlled_by, release};
use wasmkube_sdk::testing::FakeHost;

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some("default".into()),
        ..ObjectMeta::default()
    }
}

#[test]
fn adopt_and_release_change_owner_references() {
    let fake = FakeHost::new();
    let ctx = fake.context();
    let rs = fake
        .insert(&ReplicaSet {
            metadata: meta("rs"),
            ..ReplicaSet::default()
        })
        .unwrap();
    let pod = fake
        .insert(&Pod {
            metadata: meta("pod"),
            ..Pod::default()
        })
        .unwrap();

    let r = controller_ref(&rs).unwrap();
    assert_eq!(
        (r.kind.as_str(), r.api_version.as_str()),
        ("ReplicaSet", "apps/v1")
    );
    assert_eq!(
        (r.controller, r.block_owner_deletion),
        (Some(true), Some(true))
    );
    assert!(
        controller_ref(&ReplicaSet::default()).is_err(),
        "no uid, no reference"
    );

    let adopted = adopt(&ctx, &rs, &pod).unwrap();
    assert!(is_controlled_by(&adopted.metadata, &rs));
    assert!(adopt(&ctx, &rs, &adopted).is_err(), "already controlled");
    assert!(
        adopt(&ctx, &rs, &pod).is_err(),
        "stale child: the patch's test fails"
    );

    let released = release(&ctx, &rs, &adopted).unwrap();
    assert_eq!(controller_of(&released.metadata), None);
    assert_eq!(released.metadata.owner_references, None);
}

#[test]
fn set_condition_keeps_transition_time_while_status_holds() {
    let fake = FakeHost::new();
    let t0 = fake.clock();
    let cond = |status: &str, message: &str| ReplicaSetCondition {
        type_: "ReplicaFailure".into(),
        status: status.into(),
        message: Some(message.into()),
        ..ReplicaSetCondition::default()
    };
    let mut conditions = Vec::new();
    assert!(set_condition(&mut conditions, cond("True", "a"), t0));
    let later = t0 + TimeDelta::seconds(30);
    assert!(!set_condition(&mut conditions, cond("True", "a"), later));
    assert!(set_condition(&mut conditions, cond("True", "b"), later));
    let c = get_condition(&conditions, "ReplicaFailure").unwrap();
    assert_eq!(c.last_transition_time.as_ref().unwrap().0, t0);
    assert!(is_condition_true(&conditions, "ReplicaFailure"));

    assert!(set_condition(&mut conditions, cond("False", "b"), later));
    let c = get_condition(&conditions, "ReplicaFailure").unwrap();
    assert_eq!(c.last_transition_time.as_ref().unwrap().0, later);
    assert!(remove_condition(&mut conditions, "ReplicaFailure"));
    assert!(conditions.is_empty());
}
