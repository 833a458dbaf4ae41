//! The core/v1 Endpoints a Service gets.

use wasmkube_sdk::k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use wasmkube_sdk::testing::{FakeHost, Verb};

use super::*;

#[test]
fn splits_ready_and_not_ready_pods_and_skips_the_rest() {
    let fake = FakeHost::new();
    insert_service(&fake, vec![port("http", 80, "8080", "TCP")]);
    fake.insert(&pod("a", "10.0.0.1", true)).unwrap();
    fake.insert(&pod("b", "10.0.0.2", true)).unwrap();
    fake.insert(&pod("c", "10.0.0.3", false)).unwrap();
    fake.insert(&pod("no-ip", "", true)).unwrap();
    let mut done = pod("done", "10.0.0.4", false);
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    fake.insert(&done).unwrap();
    let mut other = pod("other", "10.0.0.5", true);
    other.metadata.labels = labels(&[("app", "db")]);
    fake.insert(&other).unwrap();
    fake.insert(&pod("leaving", "10.0.0.6", true)).unwrap();
    fake.modify::<Pod>("default", "leaving", |p| {
        p.metadata.deletion_timestamp = Some(Time(fake.clock()));
    })
    .unwrap();
    reconcile(&fake);

    let ep = endpoints(&fake).unwrap();
    let ep_labels = ep.metadata.labels.clone().unwrap();
    assert_eq!(ep_labels["team"], "blue");
    assert_eq!(ep_labels["endpointslice.kubernetes.io/skip-mirror"], "true");
    let subsets = ep.subsets.unwrap();
    assert_eq!(subsets.len(), 1);
    assert_eq!(ips(&subsets[0].addresses), ["10.0.0.1", "10.0.0.2"]);
    assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.0.0.3"]);
    let first = &subsets[0].addresses.as_ref().unwrap()[0];
    assert_eq!(first.node_name.as_deref(), Some("node-1"));
    let target = first.target_ref.as_ref().unwrap();
    assert_eq!(
        (target.kind.as_deref(), target.name.as_deref()),
        (Some("Pod"), Some("a"))
    );
    assert!(target.uid.is_some());
    let ports = subsets[0].ports.as_ref().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(
        (ports[0].name.as_deref(), ports[0].port),
        (Some("http"), 8080)
    );
    assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
}

#[test]
fn resolves_named_target_ports_per_pod() {
    let fake = FakeHost::new();
    insert_service(&fake, vec![port("web", 80, "http", "TCP")]);
    fake.insert(&with_ports(pod("a", "10.0.0.1", true), &[("http", 8080)]))
        .unwrap();
    fake.insert(&with_ports(pod("b", "10.0.0.2", true), &[("http", 9090)]))
        .unwrap();
    fake.insert(&with_ports(pod("c", "10.0.0.3", true), &[("admin", 7070)]))
        .unwrap();
    reconcile(&fake);

    let subsets = endpoints(&fake).unwrap().subsets.unwrap();
    let by_port: Vec<(i32, Vec<&str>)> = subsets
        .iter()
        .map(|s| (s.ports.as_ref().unwrap()[0].port, ips(&s.addresses)))
        .collect();
    assert_eq!(
        by_port,
        [(8080, vec!["10.0.0.1"]), (9090, vec!["10.0.0.2"])]
    );
    assert_eq!(
        subsets[0].ports.as_ref().unwrap()[0].name.as_deref(),
        Some("web")
    );
}

#[test]
fn lists_every_port_of_a_multi_port_service() {
    let fake = FakeHost::new();
    insert_service(
        &fake,
        vec![
            port("http", 80, "http", "TCP"),
            port("dns", 53, "5353", "UDP"),
        ],
    );
    fake.insert(&with_ports(pod("a", "10.0.0.1", true), &[("http", 8080)]))
        .unwrap();
    reconcile(&fake);

    let subsets = endpoints(&fake).unwrap().subsets.unwrap();
    assert_eq!(subsets.len(), 1);
    let ports: Vec<(Option<&str>, i32, Option<&str>)> = subsets[0]
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.as_deref(), p.port, p.protocol.as_deref()))
        .collect();
    assert_eq!(
        ports,
        [
            (Some("dns"), 5353, Some("UDP")),
            (Some("http"), 8080, Some("TCP"))
        ]
    );
}

#[test]
fn publish_not_ready_addresses_lists_not_ready_pods_as_ready() {
    let fake = FakeHost::new();
    insert_service(&fake, vec![port("", 80, "80", "TCP")]);
    fake.modify::<Service>("default", "web", |s| {
        s.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
    })
    .unwrap();
    fake.insert(&pod("a", "10.0.0.1", false)).unwrap();
    reconcile(&fake);

    let subsets = endpoints(&fake).unwrap().subsets.unwrap();
    assert_eq!(ips(&subsets[0].addresses), ["10.0.0.1"]);
    assert!(subsets[0].not_ready_addresses.is_none());
    assert_eq!(subsets[0].ports.as_ref().unwrap()[0].name, None);
    let slice = &slices(&fake)[0];
    let conditions = slice.endpoints[0].conditions.clone().unwrap();
    assert_eq!(
        (conditions.ready, conditions.serving),
        (Some(true), Some(false))
    );
}

#[test]
fn pods_join_once_they_have_an_ip() {
    let fake = FakeHost::new();
    insert_service(&fake, vec![port("", 80, "80", "TCP")]);
    fake.insert(&pod("a", "", true)).unwrap();
    reconcile(&fake);
    assert!(endpoints(&fake).unwrap().subsets.is_none());
    assert!(slices(&fake)[0].endpoints.is_empty(), "a placeholder slice");

    fake.modify::<Pod>("default", "a", |p| {
        p.status.as_mut().unwrap().pod_ip = Some("10.0.0.1".into());
    })
    .unwrap();
    fake.clear_records();
    reconcile(&fake);
    let subsets = endpoints(&fake).unwrap().subsets.unwrap();
    assert_eq!(ips(&subsets[0].addresses), ["10.0.0.1"]);
    let slices = slices(&fake);
    assert_eq!(slices.len(), 1);
    assert_eq!(slices[0].endpoints[0].addresses, ["10.0.0.1"]);
    assert!(
        fake.actions().iter().all(|a| a.verb == Verb::Update),
        "{:?}",
        fake.actions()
    );
}

#[test]
fn a_service_losing_its_selector_loses_its_endpoints() {
    let fake = FakeHost::new();
    insert_service(&fake, vec![port("", 80, "80", "TCP")]);
    fake.insert(&pod("a", "10.0.0.1", true)).unwrap();
    reconcile(&fake);
    assert!(endpoints(&fake).is_some());
    assert_eq!(slices(&fake).len(), 1);

    fake.modify::<Service>("default", "web", |s| {
        s.spec.as_mut().unwrap().selector = None;
    })
    .unwrap();
    reconcile(&fake);
    assert!(endpoints(&fake).is_none());
    assert!(slices(&fake).is_empty());

    // Endpoints of a Service without a selector are the user's: left alone.
    let manual = Endpoints {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        subsets: None,
    };
    fake.insert(&manual).unwrap();
    fake.clear_records();
    reconcile(&fake);
    assert!(endpoints(&fake).is_some());
    assert!(fake.actions().is_empty());
}

#[test]
fn a_deleted_service_loses_its_endpoints() {
    let fake = FakeHost::new();
    insert_service(&fake, vec![port("", 80, "80", "TCP")]);
    reconcile(&fake);
    assert!(endpoints(&fake).is_some());
    let services = wasmkube_sdk::Gvr::of::<Service>();
    assert!(fake.remove(&services, "default", "web"));
    reconcile(&fake);
    assert!(endpoints(&fake).is_none());
}

#[test]
fn nothing_changed_means_no_writes() {
    let fake = FakeHost::new();
    insert_service(&fake, vec![port("http", 80, "http", "TCP")]);
    for i in 0..3 {
        let p = pod(&format!("p{i}"), &format!("10.0.0.{i}"), i != 1);
        fake.insert(&with_ports(p, &[("http", 8080)])).unwrap();
    }
    reconcile(&fake);
    assert!(!fake.actions().is_empty());
    fake.clear_records();
    reconcile(&fake);
    assert!(fake.actions().is_empty(), "{:?}", fake.actions());
}
