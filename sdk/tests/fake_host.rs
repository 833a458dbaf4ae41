//! The FakeHost behaves like an apiserver where controllers can tell.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use serde_json::json;
use wasmkube_sdk::chrono::TimeDelta;
use wasmkube_sdk::k8s_openapi::api::core::v1::{ConfigMap, Pod, PodStatus};
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use wasmkube_sdk::testing::{FakeHost, Verb};
use wasmkube_sdk::{EventType, Gvr, LogLevel, PatchType, Propagation};

fn config_map(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: (!name.is_empty()).then(|| name.to_string()),
            generate_name: name.is_empty().then(|| "gen-".to_string()),
            namespace: Some("default".into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    }
}

#[test]
fn create_assigns_system_fields_and_generates_names() {
    let fake = FakeHost::new();
    let ctx = fake.context();
    let a = ctx.create(&config_map("", &[])).unwrap();
    let b = ctx.create(&config_map("", &[])).unwrap();
    let (name_a, name_b) = (a.metadata.name.unwrap(), b.metadata.name.unwrap());
    assert!(name_a.starts_with("gen-") && name_a.len() == 9);
    assert_ne!(name_a, name_b);
    assert!(a.metadata.uid.is_some() && a.metadata.resource_version.is_some());
    assert_eq!(a.metadata.creation_timestamp.unwrap().0, fake.clock());
    assert_eq!(a.metadata.generation, Some(1));

    let again = ctx.create(&config_map(&name_a, &[]));
    assert!(again.unwrap_err().is_already_exists());
    assert_eq!(fake.actions().len(), 2);
    assert_eq!(fake.actions()[0].verb, Verb::Create);
}

#[test]
fn updates_honour_resource_version_and_keep_status_apart() {
    let fake = FakeHost::new();
    let ctx = fake.context();
    let mut pod = Pod {
        metadata: config_map("p", &[]).metadata,
        ..Pod::default()
    };
    pod.status = Some(PodStatus {
        phase: Some("Running".into()),
        ..PodStatus::default()
    });
    let stored = fake.insert(&pod).unwrap();

    let mut changed = stored.clone();
    changed.status = Some(PodStatus::default());
    changed.metadata.labels = Some(BTreeMap::from([("a".into(), "b".into())]));
    let updated = ctx.update(&changed).unwrap();
    assert_eq!(updated.status, stored.status, "update ignores status");
    assert!(
        ctx.update(&changed).unwrap_err().is_conflict(),
        "stale resourceVersion"
    );

    let mut status = updated.clone();
    status.status.as_mut().unwrap().phase = Some("Failed".into());
    status.metadata.labels = None;
    let updated = ctx.update_status(&status).unwrap();
    assert_eq!(updated.status.unwrap().phase.as_deref(), Some("Failed"));
    assert!(
        updated.metadata.labels.is_some(),
        "status update ignores the rest"
    );
}

#[test]
fn list_filters_by_namespace_and_selector() {
    let fake = FakeHost::new();
    fake.insert(&config_map("a", &[("app", "web")])).unwrap();
    fake.insert(&config_map("b", &[("app", "db")])).unwrap();
    let mut other = config_map("c", &[("app", "web")]);
    other.metadata.namespace = Some("other".into());
    fake.insert(&other).unwrap();
    let ctx = fake.context();
    let names = |ns: &str, sel: &str| -> Vec<String> {
        let items: Vec<ConfigMap> = ctx.list(ns, sel).unwrap();
        items
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect()
    };
    assert_eq!(names("default", ""), ["a", "b"]);
    assert_eq!(names("", "app=web"), ["a", "c"]);
    assert_eq!(names("default", "app in (db,cache)"), ["b"]);
    assert_eq!(
        ctx.list::<ConfigMap>("", "app in (")
            .unwrap_err()
            .api()
            .unwrap()
            .code,
        400
    );
}

#[test]
fn patches_deletes_and_finalizers() {
    let fake = FakeHost::new();
    let ctx = fake.context();
    let mut cm = config_map("a", &[("app", "web")]);
    cm.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    fake.insert(&cm).unwrap();

    let merged: ConfigMap = ctx
        .patch(
            "default",
            "a",
            PatchType::Merge,
            &json!({"data": {"k": "v"}}),
        )
        .unwrap();
    assert_eq!(merged.data.unwrap()["k"], "v");
    let ops = json!([{"op": "replace", "path": "/data/k", "value": "w"}]);
    let patched: ConfigMap = ctx.patch("default", "a", PatchType::Json, &ops).unwrap();
    assert_eq!(patched.data.unwrap()["k"], "w");
    let strategic = json!({"metadata": {"labels": {"tier": "front"}}});
    let patched: ConfigMap = ctx
        .patch("default", "a", PatchType::StrategicMerge, &strategic)
        .unwrap();
    assert_eq!(patched.metadata.labels.unwrap().len(), 2);

    ctx.delete::<ConfigMap>("default", "a", Propagation::Background)
        .unwrap();
    let held: ConfigMap = ctx.get("default", "a").unwrap().unwrap();
    assert!(
        held.metadata.deletion_timestamp.is_some(),
        "finalizers hold deletion"
    );
    ctx.update(&ConfigMap {
        metadata: ObjectMeta {
            finalizers: None,
            ..held.metadata
        },
        ..held
    })
    .unwrap();
    assert!(
        ctx.get::<ConfigMap>("default", "a").unwrap().is_none(),
        "gone once finalized"
    );
    let missing = ctx.delete::<ConfigMap>("default", "a", Propagation::Background);
    assert!(missing.unwrap_err().is_not_found());
}

#[test]
fn clock_events_logs_and_dynamic_access() {
    let fake = FakeHost::new();
    let ctx = fake.context();
    let start = ctx.now().unwrap();
    fake.advance(TimeDelta::seconds(90));
    assert_eq!(ctx.now().unwrap() - start, TimeDelta::seconds(90));

    let widgets = Gvr::new("example.com", "v1", "widgets");
    let widget = json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w", "namespace": "default"}, "spec": {"size": 1}
    });
    let stored = ctx.create_dynamic(&widgets, &widget).unwrap();
    let mut bigger = stored.clone();
    bigger["spec"]["size"] = json!(2);
    let bigger = ctx.update_dynamic(&widgets, &bigger).unwrap();
    assert_eq!(
        bigger["metadata"]["generation"], 2,
        "spec changes bump generation"
    );
    assert_eq!(ctx.list_dynamic(&widgets, "default", "").unwrap().len(), 1);

    ctx.event_dynamic(&bigger, EventType::Warning, "TooBig", "size 2");
    ctx.log(LogLevel::Info, "hello");
    let event = &fake.events()[0];
    assert_eq!(
        (event.regarding_kind.as_str(), event.regarding.name.as_str()),
        ("Widget", "w")
    );
    assert_eq!(fake.logs(), [(LogLevel::Info, "hello".to_string())]);
}
