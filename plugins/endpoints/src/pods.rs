//! Which pods a Service's endpoints list, and the Service ports each pod serves.

use wasmkube_sdk::k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use wasmkube_sdk::pod::{is_terminating, phase};

/// A Service port as one pod serves it: the Service port's name, protocol and appProtocol with
/// the pod's port number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Port {
    pub name: String,
    pub port: i32,
    pub protocol: String,
    pub app_protocol: Option<String>,
}

/// The pod's IP (`status.podIP`), if it has one.
pub fn pod_ip(pod: &Pod) -> Option<&str> {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .filter(|ip| !ip.is_empty())
}

/// Kubernetes' `ShouldPodBeInEndpoints`: the pod has an IP, has not finished, and is not being
/// deleted unless `include_terminating`.
pub fn should_be_listed(pod: &Pod, include_terminating: bool) -> bool {
    pod_ip(pod).is_some()
        && !matches!(phase(pod), "Succeeded" | "Failed")
        && (include_terminating || !is_terminating(pod))
}

/// The Service's ports as `pod` serves them, sorted; a port whose named target the pod lacks
/// is left out (Kubernetes' `FindPort`).
pub fn ports(service: &Service, pod: &Pod) -> Vec<Port> {
    let mut ports: Vec<Port> = service_ports(service)
        .iter()
        .filter_map(|sp| {
            Some(Port {
                name: sp.name.clone().unwrap_or_default(),
                port: find_port(pod, sp)?,
                protocol: protocol(sp.protocol.as_deref()).to_string(),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect();
    ports.sort();
    ports
}

/// The Service's ports (none when unset).
pub fn service_ports(service: &Service) -> &[ServicePort] {
    service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default()
}

/// Whether the Service is headless (`clusterIP: None`).
pub fn is_headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// Whether the Service lists not-ready pods as ready (`publishNotReadyAddresses`).
pub fn publishes_not_ready(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

/// A reference to the pod, as endpoints carry it.
pub fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

/// The pod's node, if scheduled.
pub fn node_name(pod: &Pod) -> Option<String> {
    pod.spec.as_ref().and_then(|s| s.node_name.clone())
}

/// The pod's `hostname` when its `subdomain` names the Service (Kubernetes' `ShouldSetHostname`).
pub fn hostname(service: &Service, pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let same_namespace = pod.metadata.namespace == service.metadata.namespace;
    (same_namespace && spec.subdomain.is_some() && spec.subdomain == service.metadata.name)
        .then(|| spec.hostname.clone())
        .flatten()
        .filter(|h| !h.is_empty())
}

fn protocol(protocol: Option<&str>) -> &str {
    protocol.unwrap_or("TCP")
}

/// The pod's port number for a Service port: a number as is (unset or 0 meaning the Service
/// port), a name looked up among the ports of its containers (and sidecars) with the same protocol.
fn find_port(pod: &Pod, sp: &ServicePort) -> Option<i32> {
    match &sp.target_port {
        None | Some(IntOrString::Int(0)) => Some(sp.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            let spec = pod.spec.as_ref()?;
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && protocol(p.protocol.as_deref()) == protocol(sp.protocol.as_deref())
                })
                .map(|p| p.container_port)
        }
    }
}
