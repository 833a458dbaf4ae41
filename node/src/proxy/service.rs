//! A Service and its EndpointSlices read into what the proxy programs: validated names,
//! addresses and ports, and the endpoints each kind of traffic may go to.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::Net;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The NodePort range the apiserver allocates from; a port outside it is never programmed (it
/// could take over a port of the node's own, e.g. 22).
pub const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;
/// kube-proxy's default `sessionAffinityConfig.clientIP.timeoutSeconds` and its upper bound.
const AFFINITY_DEFAULT: u32 = 10800;
const AFFINITY_MAX: u32 = 86400;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ServiceError {
    #[error("{0:?} is not a DNS label (lowercase letters, digits and '-', at most 63)")]
    Name(String),
    #[error("cluster IP {ip:?} is not an IPv4 address inside the service range {range}")]
    ClusterIp { ip: String, range: Net },
}

/// A transport protocol a Service port may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// From the API's spelling (`TCP` when unset); `None` for anything else.
    fn parse(text: Option<&str>) -> Option<Protocol> {
        match text.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// nftables' name for it.
    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One address and port traffic may be sent to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// One port of a Service, with where its traffic goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    pub protocol: Protocol,
    pub port: u16,
    pub node_port: Option<u16>,
    /// Every usable endpoint (ready ones; the terminating but serving ones only when none is
    /// ready), as kube-proxy's `CategorizeEndpoints`.
    pub cluster: Vec<Endpoint>,
    /// The same choice among the endpoints on this node only.
    pub local: Vec<Endpoint>,
}

/// A Service as the proxy programs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proxied {
    pub namespace: String,
    pub name: String,
    pub cluster_ip: Ipv4Addr,
    pub external_ips: Vec<Ipv4Addr>,
    pub ports: Vec<Port>,
    /// `sessionAffinity: ClientIP`: its timeout in seconds.
    pub affinity: Option<u32>,
    /// `internalTrafficPolicy: Local`.
    pub internal_local: bool,
    /// `externalTrafficPolicy: Local`.
    pub external_local: bool,
}

/// Whether `name` is a DNS label, as namespace and Service names are; only such a name becomes
/// part of an nftables chain name.
pub fn dns_label(name: &str) -> Result<&str, ServiceError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(name)
    } else {
        Err(ServiceError::Name(name.to_string()))
    }
}

/// What `service` asks the proxy for, given the EndpointSlices of its namespace; `None` for a
/// Service the proxy has nothing to do for (headless, ExternalName, no ports).
pub fn read(
    service: &Service,
    slices: &[&EndpointSlice],
    node: &str,
    service_range: Net,
) -> Result<Option<Proxied>, ServiceError> {
    let namespace = dns_label(service.metadata.namespace.as_deref().unwrap_or_default())?;
    let name = dns_label(service.metadata.name.as_deref().unwrap_or_default())?;
    let Some(spec) = &service.spec else {
        return Ok(None);
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Ok(None);
    }
    let cluster_ip = match spec.cluster_ip.as_deref() {
        None | Some("") | Some("None") => return Ok(None),
        Some(ip) => ip
            .parse::<Ipv4Addr>()
            .ok()
            .filter(|ip| service_range.contains(*ip))
            .ok_or_else(|| ServiceError::ClusterIp {
                ip: ip.to_string(),
                range: service_range,
            })?,
    };
    let node_ports = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
    let slices: Vec<&EndpointSlice> = slices
        .iter()
        .copied()
        .filter(|s| s.metadata.namespace.as_deref() == Some(namespace))
        .filter(|s| {
            let labels = s.metadata.labels.as_ref();
            labels
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
                .map(String::as_str)
                == Some(name)
        })
        .filter(|s| s.address_type == "IPv4")
        .collect();
    let mut ports = Vec::new();
    for port in spec.ports.iter().flatten() {
        let (Some(protocol), Ok(number)) = (
            Protocol::parse(port.protocol.as_deref()),
            u16::try_from(port.port),
        ) else {
            continue;
        };
        let node_port = port
            .node_port
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| node_ports && NODE_PORTS.contains(p));
        let wanted = port.name.as_deref().unwrap_or_default();
        let mut candidates = candidates(&slices, wanted, protocol, node);
        candidates.retain(|((endpoint, _), _)| routable(endpoint.ip, service_range));
        ports.push(Port {
            protocol,
            port: number,
            node_port,
            cluster: choose(candidates.iter().map(|(c, _)| *c)),
            local: choose(candidates.iter().filter(|(_, l)| *l).map(|(c, _)| *c)),
        });
    }
    if ports.is_empty() {
        return Ok(None);
    }
    let external_ips = spec
        .external_ips
        .iter()
        .flatten()
        .filter_map(|ip| ip.parse::<Ipv4Addr>().ok())
        .filter(|ip| routable(*ip, service_range))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .filter(|t| (1..=AFFINITY_MAX).contains(t))
            .unwrap_or(AFFINITY_DEFAULT)
    });
    Ok(Some(Proxied {
        namespace: namespace.to_string(),
        name: name.to_string(),
        cluster_ip,
        external_ips,
        ports,
        affinity,
        internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
        external_local: spec.external_traffic_policy.as_deref() == Some("Local"),
    }))
}

/// An address traffic may be taken over for (an external IP) or sent to (an endpoint): not
/// loopback, multicast, broadcast, unspecified or link-local (the cloud metadata address), and
/// not a cluster IP; Kubernetes refuses such endpoints too.
fn routable(ip: Ipv4Addr, service_range: Net) -> bool {
    !(ip.is_loopback()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_unspecified()
        || ip.is_link_local()
        || service_range.contains(ip))
}

/// How usable an endpoint is, as its conditions say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Condition {
    Ready,
    /// Terminating but still serving: used only when nothing is ready.
    Terminating,
    Unusable,
}

/// The endpoints of the slices for the port named `wanted`, with their condition and whether
/// they are on this node.
fn candidates(
    slices: &[&EndpointSlice],
    wanted: &str,
    protocol: Protocol,
    node: &str,
) -> Vec<((Endpoint, Condition), bool)> {
    let mut found = Vec::new();
    for slice in slices {
        let Some(port) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| {
                p.name.as_deref().unwrap_or_default() == wanted
                    && Protocol::parse(p.protocol.as_deref()) == Some(protocol)
            })
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
        else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let conditions = endpoint.conditions.as_ref();
            let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
            let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
            let condition = match (ready, serving, terminating) {
                (true, _, false) => Condition::Ready,
                (_, true, true) => Condition::Terminating,
                _ => Condition::Unusable,
            };
            let local = endpoint.node_name.as_deref() == Some(node);
            for address in &endpoint.addresses {
                if let Ok(ip) = address.parse::<Ipv4Addr>() {
                    found.push(((Endpoint { ip, port }, condition), local));
                }
            }
        }
    }
    found
}

/// The ready endpoints, or the terminating ones when none is ready; sorted, each once.
fn choose(candidates: impl Iterator<Item = (Endpoint, Condition)> + Clone) -> Vec<Endpoint> {
    let pick = |wanted: Condition| -> BTreeSet<Endpoint> {
        candidates
            .clone()
            .filter(|(_, c)| *c == wanted)
            .map(|(e, _)| e)
            .collect()
    };
    let ready = pick(Condition::Ready);
    let chosen = if ready.is_empty() {
        pick(Condition::Terminating)
    } else {
        ready
    };
    chosen.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn range() -> Net {
        "10.96.0.0/12".parse().expect("a CIDR")
    }

    fn service(spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"namespace": "t", "name": "web"}, "spec": spec}))
            .expect("a Service")
    }

    fn slice(endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"namespace": "t", "name": "web-abc",
                "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": endpoints,
        }))
        .expect("a slice")
    }

    fn web() -> Service {
        service(json!({"clusterIP": "10.96.0.5",
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}))
    }

    fn proxied(service: &Service, slices: &[&EndpointSlice]) -> Proxied {
        read(service, slices, "n1", range())
            .expect("a valid Service")
            .expect("a proxied Service")
    }

    fn ips(endpoints: &[Endpoint]) -> Vec<String> {
        endpoints
            .iter()
            .map(|e| format!("{}:{}", e.ip, e.port))
            .collect()
    }

    #[test]
    fn ready_endpoints_are_used_and_terminating_ones_only_when_none_is_ready() {
        let s = slice(json!([
            {"addresses": ["10.244.0.3"], "conditions": {"ready": true}, "nodeName": "n1"},
            {"addresses": ["10.244.0.4"], "conditions": {"ready": false, "serving": true, "terminating": true}},
            {"addresses": ["10.244.0.5"], "conditions": {"ready": false}},
            {"addresses": ["169.254.169.254", "127.0.0.1", "10.96.0.1"]},
        ]));
        let p = proxied(&web(), &[&s]);
        assert_eq!(ips(&p.ports[0].cluster), ["10.244.0.3:8080"]);
        assert_eq!(ips(&p.ports[0].local), ["10.244.0.3:8080"]);
        let s = slice(json!([
            {"addresses": ["10.244.0.4"], "conditions": {"ready": false, "serving": true, "terminating": true}},
            {"addresses": ["10.244.0.5"], "conditions": {"ready": false}},
        ]));
        let p = proxied(&web(), &[&s]);
        assert_eq!(ips(&p.ports[0].cluster), ["10.244.0.4:8080"]);
        assert!(p.ports[0].local.is_empty());
    }

    #[test]
    fn headless_and_external_name_services_are_not_proxied() {
        let headless = service(json!({"clusterIP": "None", "ports": [{"port": 80}]}));
        assert_eq!(read(&headless, &[], "n1", range()), Ok(None));
        let external = service(json!({"type": "ExternalName", "externalName": "example.com"}));
        assert_eq!(read(&external, &[], "n1", range()), Ok(None));
    }

    #[test]
    fn hostile_names_and_addresses_are_refused() {
        let mut bad = web();
        bad.metadata.name = Some("web\" accept;".into());
        assert!(matches!(
            read(&bad, &[], "n1", range()),
            Err(ServiceError::Name(_))
        ));
        let outside = service(json!({"clusterIP": "192.0.2.1", "ports": [{"port": 80}]}));
        assert!(matches!(
            read(&outside, &[], "n1", range()),
            Err(ServiceError::ClusterIp { .. })
        ));
    }

    #[test]
    fn node_ports_outside_the_range_and_odd_external_ips_are_left_out() {
        let s = service(json!({"type": "NodePort", "clusterIP": "10.96.0.5",
            "externalIPs": ["203.0.113.7", "127.0.0.1", "10.96.0.9", "nonsense"],
            "ports": [{"port": 80, "nodePort": 22}, {"port": 81, "protocol": "UDP", "nodePort": 30081}]}));
        let p = proxied(&s, &[]);
        assert_eq!(p.ports[0].node_port, None);
        assert_eq!(p.ports[1].node_port, Some(30081));
        assert_eq!(p.ports[1].protocol, Protocol::Udp);
        assert_eq!(p.external_ips, [Ipv4Addr::new(203, 0, 113, 7)]);
    }

    #[test]
    fn client_ip_affinity_has_a_bounded_timeout() {
        let s = service(json!({"clusterIP": "10.96.0.5", "ports": [{"port": 80}],
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 99999999}}}));
        let p = proxied(&s, &[]);
        assert_eq!(p.affinity, Some(AFFINITY_DEFAULT));
    }
}
