//! NodePorts: the host ports a pod wants must be free on the node.

use wasmkube_sdk::k8s_openapi::api::core::v1::PodSpec;

use crate::view::NodeInfo;

/// The address that binds every IP.
const ANY_IP: &str = "0.0.0.0";

/// A host port a container binds: IP (`0.0.0.0` for all), protocol and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    ip: String,
    protocol: String,
    port: i32,
}

/// The host ports of a pod's containers (Kubernetes' `GetContainerPorts`: regular containers,
/// ports with `hostPort` > 0), with empty IPs and protocols defaulted.
pub fn pod_ports(spec: &PodSpec) -> Vec<HostPort> {
    spec.containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.is_some_and(|port| port > 0))
        .map(|p| HostPort {
            ip: p
                .host_ip
                .clone()
                .filter(|ip| !ip.is_empty())
                .unwrap_or_else(|| ANY_IP.to_string()),
            protocol: p
                .protocol
                .clone()
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "TCP".to_string()),
            port: p.host_port.unwrap_or(0),
        })
        .collect()
}

/// The host ports used on a node, each with the number of pods using it.
#[derive(Debug, Default)]
pub struct UsedPorts(Vec<(HostPort, u32)>);

impl UsedPorts {
    pub fn add(&mut self, port: &HostPort) {
        match self.0.iter_mut().find(|(p, _)| p == port) {
            Some((_, count)) => *count += 1,
            None => self.0.push((port.clone(), 1)),
        }
    }

    pub fn remove(&mut self, port: &HostPort) {
        if let Some(i) = self.0.iter().position(|(p, _)| p == port) {
            self.0[i].1 -= 1;
            if self.0[i].1 == 0 {
                self.0.swap_remove(i);
            }
        }
    }

    /// Kubernetes' `HostPortInfo.CheckConflict`: the same protocol and port on the same IP,
    /// where `0.0.0.0` on either side conflicts with every IP.
    fn conflicts(&self, wanted: &HostPort) -> bool {
        self.0.iter().any(|(used, _)| {
            used.port == wanted.port
                && used.protocol == wanted.protocol
                && (wanted.ip == ANY_IP || used.ip == ANY_IP || used.ip == wanted.ip)
        })
    }
}

/// The NodePorts filter for one pod; `None` when it wants no host port.
pub struct PortsFilter(Vec<HostPort>);

impl PortsFilter {
    pub fn new(spec: &PodSpec) -> Option<PortsFilter> {
        let wanted = pod_ports(spec);
        (!wanted.is_empty()).then_some(PortsFilter(wanted))
    }

    pub fn check(&self, node: &NodeInfo) -> bool {
        !self.0.iter().any(|p| node.ports.conflicts(p))
    }
}

/// The filter's reason.
pub const REASON: &str = "node(s) didn't have free ports for the requested pod ports";
