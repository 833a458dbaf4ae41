//! The discovery.k8s.io/v1 EndpointSlices a Service gets.

use wasmkube_sdk::Gvr;
use wasmkube_sdk::k8s_openapi::api::core::v1::Pod;
use wasmkube_sdk::k8s_openapi::api::discovery::v1::EndpointSlice;
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use wasmkube_sdk::owner::controller_ref;
use wasmkube_sdk::testing::{FakeHost, Verb};

use super::*;

fn verbs(fake: &FakeHost) -> Vec<Verb> {
    fake.actions()
        .iter()
        .filter(|a| a.resource == Gvr::of::<EndpointSlice>())
        .map(|a| a.verb)
        .collect()
}

fn sizes(fake: &FakeHost) -> Vec<usize> {
    let mut sizes: Vec<usize> = slices(fake).iter().map(|s| s.endpoints.len()).collect();
    sizes.sort();
    sizes
}

#[test]
fn a_slice_lists_every_pod_with_its_conditions() {
    let fake = FakeHost::new();
    let service = insert_service(&fake, vec![port("http", 80, "8080", "TCP")]);
    fake.insert(&pod("a", "10.0.0.1", true)).unwrap();
    fake.insert(&pod("b", "10.0.0.2", false)).unwrap();
    fake.insert(&pod("c", "10.0.0.3", true)).unwrap();
    fake.insert(&pod("v6", "fd00::1", true)).unwrap();
    fake.modify::<Pod>("default", "c", |p| {
        p.metadata.deletion_timestamp = Some(Time(fake.clock()));
    })
    .unwrap();
    reconcile(&fake);

    let slices = slices(&fake);
    assert_eq!(slices.len(), 1);
    let slice = &slices[0];
    assert!(slice.metadata.name.as_deref().unwrap().starts_with("web-"));
    assert_eq!(slice.metadata.generate_name.as_deref(), Some("web-"));
    let slice_labels = slice.metadata.labels.clone().unwrap();
    assert_eq!(slice_labels["kubernetes.io/service-name"], "web");
    assert_eq!(
        slice_labels["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(
        slice.metadata.owner_references,
        Some(vec![controller_ref(&service).unwrap()])
    );
    assert_eq!(slice.address_type, "IPv4");
    let conditions: Vec<_> = slice
        .endpoints
        .iter()
        .map(|e| {
            let c = e.conditions.clone().unwrap();
            (e.addresses.clone(), c.ready, c.serving, c.terminating)
        })
        .collect();
    let ip = |s: &str| vec![s.to_string()];
    assert_eq!(
        conditions,
        [
            (ip("10.0.0.1"), Some(true), Some(true), Some(false)),
            (ip("10.0.0.2"), Some(false), Some(false), Some(false)),
            (ip("10.0.0.3"), Some(false), Some(true), Some(true)),
        ]
    );
    let endpoint = &slice.endpoints[0];
    assert_eq!(endpoint.node_name.as_deref(), Some("node-1"));
    assert_eq!(
        endpoint.target_ref.as_ref().unwrap().name.as_deref(),
        Some("a")
    );
    let ports = slice.ports.as_ref().unwrap();
    assert_eq!(
        (
            ports[0].name.as_deref(),
            ports[0].port,
            ports[0].protocol.as_deref()
        ),
        (Some("http"), Some(8080), Some("TCP"))
    );
}

#[test]
fn readiness_changes_update_the_slice_in_place() {
    let fake = FakeHost::new();
    insert_service(&fake, vec![port("", 80, "80", "TCP")]);
    fake.insert(&pod("a", "10.0.0.1", false)).unwrap();
    reconcile(&fake);
    let before = slices(&fake)[0].metadata.name.clone();

    fake.modify::<Pod>("default", "a", |p| {
        p.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "True".into();
    })
    .unwrap();
    fake.clear_records();
    reconcile(&fake);
    let after = slices(&fake);
    assert_eq!(after[0].metadata.name, before);
    assert_eq!(
        after[0].endpoints[0].conditions.as_ref().unwrap().ready,
        Some(true)
    );
    assert_eq!(verbs(&fake), [Verb::Update]);
}

#[test]
fn slices_hold_at_most_a_hundred_endpoints() {
    let fake = FakeHost::new();
    insert_service(&fake, vec![port("", 80, "80", "TCP")]);
    for i in 0..250 {
        let p = pod(
            &format!("p{i:03}"),
            &format!("10.0.{}.{}", i / 200, i % 200),
            true,
        );
        fake.insert(&p).unwrap();
    }
    reconcile(&fake);
    assert_eq!(sizes(&fake), [50, 100, 100]);

    // Removed pods leave holes that new pods fill: no slice is created or deleted.
    for i in 0..60 {
        let pods = Gvr::of::<Pod>();
        assert!(fake.remove(&pods, "default", &format!("p{i:03}")));
    }
    fake.clear_records();
    reconcile(&fake);
    assert_eq!(sizes(&fake), [40, 50, 100]);
    assert_eq!(verbs(&fake), [Verb::Update]);
    for i in 250..290 {
        let p = pod(&format!("p{i:03}"), &format!("10.1.0.{}", i - 250), true);
        fake.insert(&p).unwrap();
    }
    fake.clear_records();
    reconcile(&fake);
    let grown = sizes(&fake);
    assert_eq!(
        (grown.len(), grown.iter().sum::<usize>()),
        (3, 230),
        "{grown:?}"
    );
    assert!(verbs(&fake).iter().all(|v| *v == Verb::Update));

    // Fewer endpoints than slices: the surplus goes.
    for i in 60..250 {
        let pods = Gvr::of::<Pod>();
        assert!(fake.remove(&pods, "default", &format!("p{i:03}")));
    }
    reconcile(&fake);
    assert_eq!(sizes(&fake), [40]);
    fake.clear_records();
    reconcile(&fake);
    assert!(fake.actions().is_empty(), "{:?}", fake.actions());
}

#[test]
fn slices_of_another_owner_or_port_set_are_replaced() {
    let fake = FakeHost::new();
    insert_service(&fake, vec![port("", 80, "80", "TCP")]);
    fake.insert(&pod("a", "10.0.0.1", true)).unwrap();
    reconcile(&fake);
    let name = slices(&fake)[0].metadata.name.clone();

    // A new port: the old slice is rewritten for it rather than deleted and created.
    fake.modify::<Service>("default", "web", |s| {
        s.spec.as_mut().unwrap().ports = Some(vec![port("", 81, "81", "TCP")]);
    })
    .unwrap();
    fake.clear_records();
    reconcile(&fake);
    let after = slices(&fake);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].metadata.name, name);
    assert_eq!(after[0].ports.as_ref().unwrap()[0].port, Some(81));
    assert_eq!(verbs(&fake), [Verb::Update]);

    // A slice left by an older Service of that name is deleted.
    let mut stale = after[0].clone();
    stale.metadata.name = Some("web-old".into());
    stale.metadata.uid = None;
    stale.metadata.resource_version = None;
    stale.metadata.owner_references.as_mut().unwrap()[0].uid = "gone".into();
    fake.insert(&stale).unwrap();
    reconcile(&fake);
    let names: Vec<Option<String>> = slices(&fake).into_iter().map(|s| s.metadata.name).collect();
    assert_eq!(names, [name]);
}

#[test]
fn a_cache_missing_a_created_slice_holds_the_service_back() {
    let fake = FakeHost::new();
    insert_service(&fake, vec![port("", 80, "80", "TCP")]);
    fake.insert(&pod("a", "10.0.0.1", true)).unwrap();
    reconcile(&fake);
    let name = slices(&fake)[0].metadata.name.clone().unwrap();

    // As if the host's cache did not show the new slice yet: no duplicate is made.
    let slice_gvr = Gvr::of::<EndpointSlice>();
    assert!(fake.remove(&slice_gvr, "default", &name));
    fake.clear_records();
    let outcome = fake.reconcile::<EndpointsController>(&key()).unwrap();
    assert_eq!(
        outcome,
        Outcome::RequeueAfter(std::time::Duration::from_secs(1))
    );
    assert!(verbs(&fake).is_empty());

    // A cache that never catches up stops holding it back after a minute.
    fake.advance(wasmkube_sdk::chrono::TimeDelta::minutes(2));
    reconcile(&fake);
    assert_eq!(verbs(&fake), [Verb::Create]);
}
