//! The discovery.k8s.io/v1 EndpointSlices of a Service: one set per port set, at most 100 endpoints each, updated in place.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use wasmkube_sdk::k8s_openapi::api::core::v1::{Pod, Service};
use wasmkube_sdk::k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort, EndpointSlice,
};
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use wasmkube_sdk::owner::{controller_ref, is_controlled_by};
use wasmkube_sdk::pod::{is_pod_ready, is_terminating};
use wasmkube_sdk::{Context, Error, Propagation};

use crate::endpoints::HEADLESS;
use crate::pods::{self, Port};

/// Names the Service a slice belongs to.
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
/// Names the controller managing a slice.
pub const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller, as `MANAGED_BY` names it.
pub const CONTROLLER: &str = "endpointslice-controller.k8s.io";
/// At most this many endpoints per slice (kube-controller-manager's default).
pub const MAX_ENDPOINTS: usize = 100;
/// The only address type this controller writes.
const IPV4: &str = "IPv4";

/// The writes that bring a Service's slices to the desired state.
#[derive(Debug, Default)]
pub struct Plan {
    pub create: Vec<EndpointSlice>,
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<EndpointSlice>,
}

/// The slices this controller manages for the Service named `name` (any owner).
pub fn list(ctx: &Context<'_>, namespace: &str, name: &str) -> Result<Vec<EndpointSlice>, Error> {
    ctx.list(
        namespace,
        &format!("{SERVICE_NAME}={name},{MANAGED_BY}={CONTROLLER}"),
    )
}

/// Performs a plan; returns the names of the slices it created and deleted.
pub fn apply(ctx: &Context<'_>, plan: Plan) -> Result<(Vec<String>, Vec<String>), Error> {
    let (mut created, mut deleted) = (Vec::new(), Vec::new());
    for slice in &plan.delete {
        let meta = &slice.metadata;
        let (namespace, name) = (
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default(),
        );
        match ctx.delete::<EndpointSlice>(namespace, name, Propagation::Background) {
            Err(e) if !e.is_not_found() => return Err(e),
            _ => deleted.push(name.to_string()),
        }
    }
    for slice in &plan.update {
        ctx.update(slice)?;
    }
    for slice in &plan.create {
        let stored = ctx.create(slice)?;
        created.push(stored.metadata.name.unwrap_or_default());
    }
    Ok((created, deleted))
}

/// Plans the Service's slices from its pods and its `existing` slices: endpoints stay in the
/// slice they are in, new ones fill slices with room before new slices are made, emptied or
/// surplus slices are reused for new content or deleted, and slices owned by another object
/// (an older Service of that name) are deleted. With no endpoints one empty slice stays, as
/// Kubernetes keeps a placeholder.
pub fn plan(service: &Service, pods: &[Pod], existing: Vec<EndpointSlice>) -> Result<Plan, Error> {
    let template = template(service)?;
    let mut groups = desired(service, pods);
    if groups.is_empty() {
        groups.insert(Vec::new(), Vec::new());
    }
    let (mut mine, foreign): (Vec<EndpointSlice>, Vec<EndpointSlice>) = existing
        .into_iter()
        .partition(|s| is_controlled_by(&s.metadata, service) && s.address_type == IPV4);
    let mut plan = Plan {
        delete: foreign,
        ..Plan::default()
    };
    let mut fresh: Vec<(Vec<EndpointPort>, Vec<Endpoint>)> = Vec::new();
    for (ports, wanted) in groups {
        let ports: Vec<EndpointPort> = ports.into_iter().map(wire_port).collect();
        let (candidates, rest): (Vec<_>, Vec<_>) = mine
            .into_iter()
            .partition(|s| s.ports.as_deref().unwrap_or_default() == ports.as_slice());
        mine = rest;
        let placeholder = wanted.is_empty();
        let mut pending: BTreeMap<String, Endpoint> =
            wanted.iter().map(|e| (key(e), e.clone())).collect();
        let mut slots: Vec<(EndpointSlice, Vec<Endpoint>)> = candidates
            .into_iter()
            .map(|slice| {
                let kept = slice
                    .endpoints
                    .iter()
                    .filter_map(|e| pending.remove(&key(e)))
                    .collect();
                (slice, kept)
            })
            .collect();
        let mut leftover = wanted.into_iter().filter(|e| pending.contains_key(&key(e)));
        for (_, endpoints) in &mut slots {
            while endpoints.len() < MAX_ENDPOINTS {
                match leftover.next() {
                    Some(e) => endpoints.push(e),
                    None => break,
                }
            }
        }
        let leftover: Vec<Endpoint> = leftover.collect();
        if placeholder && slots.is_empty() {
            fresh.push((ports.clone(), Vec::new()));
        }
        for (i, (slice, endpoints)) in slots.into_iter().enumerate() {
            if endpoints.is_empty() && !(placeholder && i == 0) {
                mine.push(slice);
                continue;
            }
            let new = fill(&template, Some(&slice), ports.clone(), endpoints);
            if new != normalized(slice) {
                plan.update.push(new);
            }
        }
        for chunk in leftover.chunks(MAX_ENDPOINTS) {
            fresh.push((ports.clone(), chunk.to_vec()));
        }
    }
    // Slices left over are surplus: reuse them for new content rather than delete and create.
    for (ports, endpoints) in fresh {
        match mine.pop() {
            Some(old) => plan
                .update
                .push(fill(&template, Some(&old), ports, endpoints)),
            None => plan.create.push(fill(&template, None, ports, endpoints)),
        }
    }
    plan.delete.extend(mine);
    Ok(plan)
}

/// The metadata every slice of the Service carries: generateName, namespace, labels and a
/// controller reference to the Service.
fn template(service: &Service) -> Result<ObjectMeta, Error> {
    let name = service.metadata.name.clone().unwrap_or_default();
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    labels.insert(SERVICE_NAME.into(), name.clone());
    labels.insert(MANAGED_BY.into(), CONTROLLER.into());
    if pods::is_headless(service) {
        labels.insert(HEADLESS.into(), String::new());
    } else {
        labels.remove(HEADLESS);
    }
    Ok(ObjectMeta {
        generate_name: Some(format!("{name}-")),
        namespace: service.metadata.namespace.clone(),
        labels: Some(labels),
        owner_references: Some(vec![controller_ref(service)?]),
        ..ObjectMeta::default()
    })
}

/// A slice with `ports` and `endpoints`: `old` rewritten in place, or a new one.
fn fill(
    template: &ObjectMeta,
    old: Option<&EndpointSlice>,
    ports: Vec<EndpointPort>,
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    let metadata = match old {
        Some(old) => ObjectMeta {
            labels: template.labels.clone(),
            owner_references: template.owner_references.clone(),
            ..old.metadata.clone()
        },
        None => template.clone(),
    };
    EndpointSlice {
        metadata,
        address_type: IPV4.into(),
        endpoints,
        ports: (!ports.is_empty()).then_some(ports),
    }
}

/// The slice with no ports written as `None`, as [`fill`] writes it.
fn normalized(mut slice: EndpointSlice) -> EndpointSlice {
    if slice.ports.as_ref().is_some_and(Vec::is_empty) {
        slice.ports = None;
    }
    slice
}

/// What identifies an endpoint across syncs: its pod, else its addresses.
fn key(endpoint: &Endpoint) -> String {
    match &endpoint.target_ref {
        Some(r) => format!(
            "{}/{}",
            r.name.as_deref().unwrap_or_default(),
            r.uid.as_deref().unwrap_or_default()
        ),
        None => endpoint.addresses.join(","),
    }
}

/// The endpoints the Service's pods call for, by port set, sorted by pod name: pods with an
/// IPv4 address that have not finished, terminating ones included (marked so); a pod missing
/// every port the Service names is left out.
fn desired(service: &Service, pods: &[Pod]) -> BTreeMap<Vec<Port>, Vec<Endpoint>> {
    let publish = pods::publishes_not_ready(service);
    let has_ports = !pods::service_ports(service).is_empty();
    let mut sorted: Vec<&Pod> = pods.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut groups: BTreeMap<Vec<Port>, Vec<Endpoint>> = BTreeMap::new();
    for pod in sorted {
        let Some(ip) = pods::pod_ip(pod).filter(|ip| ip.parse::<Ipv4Addr>().is_ok()) else {
            continue;
        };
        let ports = pods::ports(service, pod);
        if !pods::should_be_listed(pod, true) || (has_ports && ports.is_empty()) {
            continue;
        }
        let serving = is_pod_ready(pod);
        let terminating = is_terminating(pod);
        groups.entry(ports).or_default().push(Endpoint {
            addresses: vec![ip.to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(publish || (serving && !terminating)),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            hostname: pods::hostname(service, pod),
            node_name: pods::node_name(pod),
            target_ref: Some(pods::target_ref(pod)),
            ..Endpoint::default()
        });
    }
    groups
}

fn wire_port(port: Port) -> EndpointPort {
    EndpointPort {
        name: (!port.name.is_empty()).then_some(port.name),
        port: Some(port.port),
        protocol: Some(port.protocol),
        app_protocol: port.app_protocol,
    }
}
