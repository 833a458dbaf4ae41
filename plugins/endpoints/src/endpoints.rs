//! The core/v1 Endpoints of a Service: ready and not-ready addresses, grouped by port set.

use std::collections::BTreeMap;

use wasmkube_sdk::k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service,
};
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use wasmkube_sdk::pod::is_pod_ready;
use wasmkube_sdk::{Context, Error, Propagation};

use crate::pods::{self, Port};

/// Marks Endpoints this controller manages (so the mirroring controller skips them).
pub const SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
/// Set on the endpoints of headless Services.
pub const HEADLESS: &str = "service.kubernetes.io/headless";

/// Creates or updates the Service's Endpoints when they differ from what its pods call for.
pub fn sync(ctx: &Context<'_>, service: &Service, pods: &[Pod]) -> Result<(), Error> {
    let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
    let name = service.metadata.name.as_deref().unwrap_or_default();
    let labels = labels(service);
    let subsets = subsets(service, pods);
    match ctx.get::<Endpoints>(namespace, name)? {
        None => {
            ctx.create(&Endpoints {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    namespace: Some(namespace.to_string()),
                    labels: Some(labels),
                    ..ObjectMeta::default()
                },
                subsets: (!subsets.is_empty()).then_some(subsets),
            })?;
        }
        Some(current)
            if current.subsets.as_deref().unwrap_or_default() == subsets.as_slice()
                && current.metadata.labels.as_ref() == Some(&labels) => {}
        Some(current) => {
            ctx.update(&Endpoints {
                metadata: ObjectMeta {
                    labels: Some(labels),
                    ..current.metadata
                },
                subsets: (!subsets.is_empty()).then_some(subsets),
            })?;
        }
    }
    Ok(())
}

/// Deletes the Endpoints named `name`: all of them when the Service is gone (`managed_only`
/// false), only those this controller made when it merely has no selector.
pub fn remove(
    ctx: &Context<'_>,
    namespace: &str,
    name: &str,
    managed_only: bool,
) -> Result<(), Error> {
    let Some(current) = ctx.get::<Endpoints>(namespace, name)? else {
        return Ok(());
    };
    let managed = current
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SKIP_MIRROR))
        .is_some_and(|v| v == "true");
    if managed_only && !managed {
        return Ok(());
    }
    match ctx.delete::<Endpoints>(namespace, name, Propagation::Background) {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    }
}

/// The Service's labels, marked as managed here (and headless when it is).
fn labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    labels.insert(SKIP_MIRROR.into(), "true".into());
    if pods::is_headless(service) {
        labels.insert(HEADLESS.into(), String::new());
    } else {
        labels.remove(HEADLESS);
    }
    labels
}

/// Kubernetes' endpoints sync then `RepackSubsets`: one subset per distinct port set, ready pods
/// (all listed pods under `publishNotReadyAddresses`) in `addresses`, the others in
/// `notReadyAddresses`, each sorted by IP.
pub fn subsets(service: &Service, pods: &[Pod]) -> Vec<EndpointSubset> {
    let publish = pods::publishes_not_ready(service);
    let portless = pods::service_ports(service).is_empty() && pods::is_headless(service);
    type Addresses = (Vec<EndpointAddress>, Vec<EndpointAddress>);
    let mut groups: BTreeMap<Vec<Port>, Addresses> = BTreeMap::new();
    for pod in pods {
        let Some(ip) = pods::pod_ip(pod).filter(|_| pods::should_be_listed(pod, publish)) else {
            continue;
        };
        let ports = pods::ports(service, pod);
        if ports.is_empty() && !portless {
            continue;
        }
        let address = EndpointAddress {
            ip: ip.to_string(),
            hostname: pods::hostname(service, pod),
            node_name: pods::node_name(pod),
            target_ref: Some(pods::target_ref(pod)),
        };
        let (ready, not_ready) = groups.entry(ports).or_default();
        if publish || is_pod_ready(pod) {
            ready.push(address);
        } else {
            not_ready.push(address);
        }
    }
    let non_empty = |mut addresses: Vec<EndpointAddress>| {
        addresses.sort_by(|a, b| {
            let uid = |x: &EndpointAddress| x.target_ref.as_ref().and_then(|r| r.uid.clone());
            (&a.ip, uid(a)).cmp(&(&b.ip, uid(b)))
        });
        (!addresses.is_empty()).then_some(addresses)
    };
    groups
        .into_iter()
        .map(|(ports, (ready, not_ready))| EndpointSubset {
            addresses: non_empty(ready),
            not_ready_addresses: non_empty(not_ready),
            ports: (!ports.is_empty()).then(|| ports.into_iter().map(wire_port).collect()),
        })
        .collect()
}

fn wire_port(port: Port) -> EndpointPort {
    EndpointPort {
        name: (!port.name.is_empty()).then_some(port.name),
        port: port.port,
        protocol: Some(port.protocol),
        app_protocol: port.app_protocol,
    }
}
