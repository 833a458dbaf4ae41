//! Unit tests of the Endpoints and EndpointSlice controller against the SDK's FakeHost.
#![allow(clippy::unwrap_used)]

mod endpoints;
mod slices;

use std::collections::BTreeMap;

use wasmkube_sdk::k8s_openapi::api::core::v1::{
    Container, ContainerPort, Endpoints, Pod, PodCondition, PodSpec, PodStatus, Service,
    ServicePort, ServiceSpec,
};
use wasmkube_sdk::k8s_openapi::api::discovery::v1::EndpointSlice;
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use wasmkube_sdk::testing::FakeHost;
use wasmkube_sdk::{ObjectKey, Outcome};

use crate::EndpointsController;

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

/// A Service port: `target` a number (as text) or a container port name.
fn port(name: &str, port: i32, target: &str, protocol: &str) -> ServicePort {
    ServicePort {
        name: (!name.is_empty()).then(|| name.to_string()),
        port,
        protocol: Some(protocol.into()),
        target_port: Some(match target.parse() {
            Ok(n) => IntOrString::Int(n),
            Err(_) => IntOrString::String(target.into()),
        }),
        ..Default::default()
    }
}

/// Service `web` selecting `app=web`.
fn insert_service(fake: &FakeHost, ports: Vec<ServicePort>) -> Service {
    let service = Service {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            labels: labels(&[("team", "blue")]),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: labels(&[("app", "web")]),
            ports: Some(ports),
            ..Default::default()
        }),
        status: None,
    };
    fake.insert(&service).unwrap()
}

/// A running pod labelled `app=web` on `node-1`; an empty `ip` means none yet.
fn pod(name: &str, ip: &str, ready: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            labels: labels(&[("app", "web")]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some("node-1".into()),
            containers: vec![Container {
                name: "c".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: (!ip.is_empty()).then(|| ip.to_string()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

/// The pod with named container ports.
fn with_ports(mut pod: Pod, ports: &[(&str, i32)]) -> Pod {
    if let Some(spec) = pod.spec.as_mut() {
        spec.containers[0].ports = Some(
            ports
                .iter()
                .map(|(name, port)| ContainerPort {
                    name: Some(name.to_string()),
                    container_port: *port,
                    ..Default::default()
                })
                .collect(),
        );
    }
    pod
}

fn reconcile(fake: &FakeHost) {
    assert_eq!(
        fake.reconcile::<EndpointsController>(&key()).unwrap(),
        Outcome::Done
    );
}

fn endpoints(fake: &FakeHost) -> Option<Endpoints> {
    fake.context().get("default", "web").unwrap()
}

fn slices(fake: &FakeHost) -> Vec<EndpointSlice> {
    fake.context()
        .list("default", "kubernetes.io/service-name=web")
        .unwrap()
}

/// The IPs of an address list.
fn ips(
    addresses: &Option<Vec<wasmkube_sdk::k8s_openapi::api::core::v1::EndpointAddress>>,
) -> Vec<&str> {
    addresses.iter().flatten().map(|a| a.ip.as_str()).collect()
}
