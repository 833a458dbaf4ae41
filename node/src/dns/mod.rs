//! Cluster DNS: a server in every node agent, on the node's pod-bridge gateway address, that
//! answers for the cluster domain from the Service and EndpointSlice caches and forwards other
//! names to the node's upstream resolvers; the node publishes itself as an endpoint of the
//! `kube-system/kube-dns` Service.

mod forward;
mod server;
pub mod zone;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_server::proto::rr::Name;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::api::Api;
use crate::informer::{Informer, Key, ServiceCaches};

pub use forward::{Forwarder, upstreams};
pub use server::{Handler, serve};
pub use zone::{Answer, Zone, ZoneError};

/// The cluster DNS Service's namespace and name.
pub const SERVICE_NAMESPACE: &str = "kube-system";
pub const SERVICE_NAME: &str = "kube-dns";
/// The cluster domain unless told otherwise (the kubelet's `--cluster-domain`).
pub const DEFAULT_DOMAIN: &str = "cluster.local";
/// How many forwarded questions may wait on upstreams at once.
const FORWARDS_AT_ONCE: usize = 256;
/// How long changes are gathered before the zone is built again.
const SETTLE: Duration = Duration::from_millis(20);
/// How often the node's EndpointSlice is checked (and made again if someone deleted it).
const PUBLISH_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error(transparent)]
    Zone(#[from] ZoneError),
    #[error("serving DNS on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// How the node's DNS server is set up.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where it listens: the node's pod-bridge gateway address, port 53.
    pub address: SocketAddr,
    /// The cluster domain, e.g. `cluster.local`.
    pub domain: String,
    /// The resolvers that names outside the cluster domain are forwarded to.
    pub upstreams: Vec<SocketAddr>,
}

/// The first address of a pod CIDR (`10.244.0.0/24` -> `10.244.0.1`): the bridge's gateway,
/// which every pod on the node reaches directly.
pub fn gateway(pod_cidr: &str) -> Option<IpAddr> {
    let (base, bits) = pod_cidr.split_once('/')?;
    let bits: u8 = bits.parse().ok()?;
    match base.parse::<IpAddr>().ok()? {
        IpAddr::V4(ip) if bits < 31 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            Some(IpAddr::V4((u32::from(ip) & mask).checked_add(1)?.into()))
        }
        IpAddr::V6(ip) if bits < 127 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            Some(IpAddr::V6((u128::from(ip) & mask).checked_add(1)?.into()))
        }
        _ => None,
    }
}

/// Starts the node's DNS server: its caches, the zone kept current from them, the sockets,
/// and the node's EndpointSlice of `kube-dns`. Returns once it is listening.
pub fn start(
    api: Api,
    caches: ServiceCaches,
    node_name: &str,
    config: Config,
) -> Result<(), DnsError> {
    let origin = zone::origin(&config.domain)?;
    let zone = Arc::new(ArcSwap::from_pointee(Zone::pending(origin.clone())));
    let handler = Handler::new(
        zone.clone(),
        Forwarder::new(config.upstreams, FORWARDS_AT_ONCE),
    );
    server::serve(config.address, handler).map_err(|source| DnsError::Bind {
        address: config.address,
        source,
    })?;
    tokio::spawn(keep_current(zone, origin, caches.services, caches.slices));
    tokio::spawn(publish(api, node_name.to_string(), config.address.ip()));
    tracing::info!(address = %config.address, domain = %config.domain, "cluster DNS serving");
    Ok(())
}

/// Builds the zone again after every change to a Service or an EndpointSlice (changes that
/// come together build it once).
async fn keep_current(
    zone: Arc<ArcSwap<Zone>>,
    origin: Name,
    services: Arc<Informer<Service>>,
    slices: Arc<Informer<EndpointSlice>>,
) {
    let mut service_changes = services.subscribe();
    let mut slice_changes = slices.subscribe();
    services.synced().await;
    slices.synced().await;
    let mut serial: u32 = 1;
    loop {
        let built = Zone::build(origin.clone(), serial, &services.list(), &slices.list());
        zone.store(Arc::new(built));
        serial = serial.wrapping_add(1);
        let still_open = tokio::select! {
            changed = service_changes.recv() => open(changed),
            changed = slice_changes.recv() => open(changed),
        };
        if !still_open {
            return;
        }
        tokio::time::sleep(SETTLE).await;
        // Everything announced meanwhile is in the next build.
        while open(service_changes.try_recv().map_err(into_recv)) {}
        while open(slice_changes.try_recv().map_err(into_recv)) {}
    }
}

/// Whether a change channel still has something to say (a key, or that keys were missed).
fn open(received: Result<Key, broadcast::error::RecvError>) -> bool {
    !matches!(received, Err(broadcast::error::RecvError::Closed))
}

/// An empty channel as a closed one, so that draining it stops.
fn into_recv(e: broadcast::error::TryRecvError) -> broadcast::error::RecvError {
    match e {
        broadcast::error::TryRecvError::Lagged(n) => broadcast::error::RecvError::Lagged(n),
        _ => broadcast::error::RecvError::Closed,
    }
}

/// The node's EndpointSlice of `kube-dns`: its DNS address, ready, on this node.
pub fn endpoint_slice(node_name: &str, address: IpAddr) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{SERVICE_NAME}-{node_name}"),
            "namespace": SERVICE_NAMESPACE,
            "labels": {
                "kubernetes.io/service-name": SERVICE_NAME,
                "endpointslice.kubernetes.io/managed-by": "wasmkube-node",
            },
        },
        "addressType": if address.is_ipv4() { "IPv4" } else { "IPv6" },
        "endpoints": [{
            "addresses": [address.to_string()],
            "conditions": {"ready": true, "serving": true, "terminating": false},
            "nodeName": node_name,
        }],
        "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
        ],
    })
}

/// Keeps the node's EndpointSlice of `kube-dns` in place.
async fn publish(api: Api, node_name: String, address: IpAddr) {
    let slice = endpoint_slice(&node_name, address);
    let name = slice["metadata"]["name"].as_str().unwrap_or_default();
    let collection =
        format!("/apis/discovery.k8s.io/v1/namespaces/{SERVICE_NAMESPACE}/endpointslices");
    let path = format!("{collection}/{name}");
    loop {
        let result = match api.get(&path).await {
            Ok(Some(existing)) if same(&existing, &slice) => Ok(()),
            Ok(Some(_)) => api.merge_patch(&path, &slice).await.map(drop),
            Ok(None) => api.create(&collection, &slice).await.map(drop),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "publishing the node's kube-dns endpoint");
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue;
        }
        tokio::time::sleep(PUBLISH_EVERY).await;
    }
}

/// Whether the slice in the API says what the node would write.
fn same(existing: &Value, wanted: &Value) -> bool {
    ["addressType", "endpoints", "ports"]
        .iter()
        .all(|field| existing[field] == wanted[field])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_is_the_first_address_of_the_pod_cidr() {
        let ip = |s: &str| gateway(s).map(|ip| ip.to_string());
        assert_eq!(ip("10.244.0.0/24").as_deref(), Some("10.244.0.1"));
        assert_eq!(ip("10.244.3.7/24").as_deref(), Some("10.244.3.1"));
        assert_eq!(ip("fd00:10::/64").as_deref(), Some("fd00:10::1"));
        for bad in ["10.244.0.0", "10.244.0.0/32", "x/24", "10.0.0.0/99"] {
            assert_eq!(ip(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_node_publishes_one_ready_endpoint_with_both_ports() {
        let slice = endpoint_slice("n1", "10.244.0.1".parse().expect("an address"));
        let parsed: EndpointSlice = serde_json::from_value(slice.clone()).expect("a slice");
        assert_eq!(parsed.metadata.name.as_deref(), Some("kube-dns-n1"));
        assert_eq!(parsed.endpoints[0].node_name.as_deref(), Some("n1"));
        assert_eq!(parsed.ports.as_ref().map(Vec::len), Some(2));
        assert!(same(&slice, &slice));
    }
}
