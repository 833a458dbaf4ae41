//! The node's own object: registered with what the machine has, kept alive by a Lease renewed
//! every 10 s, its conditions reported every minute, and routes to the other nodes' pods.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::api::{Api, ApiError};
use crate::container::Allocatable;
use crate::pod::event::{Recorder, Subject};

/// How often the Lease is renewed, and its duration.
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
const LEASE_SECONDS: u64 = 40;
/// How often the conditions' heartbeat is written when nothing changed.
const STATUS_EVERY: Duration = Duration::from_secs(60);
/// The port the agent's API (logs, exec, port-forward) listens on by default, as the kubelet's.
pub const AGENT_PORT: u16 = 10250;

/// What the machine has and is, read once at start.
#[derive(Clone, Debug)]
pub struct Machine {
    pub hostname: String,
    pub address: String,
    pub cpus: u64,
    pub memory: u64,
    pub storage: u64,
    pub kernel: String,
    pub os_image: String,
    pub machine_id: String,
    pub runtime_version: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl Machine {
    /// Reads the machine: CPUs, memory (`/proc/meminfo`), the size of the filesystem holding
    /// `data_dir`, kernel and OS release.
    pub fn read(data_dir: &std::path::Path, address: String, runtime_version: String) -> Machine {
        let memory = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0);
        let storage = std::process::Command::new("df")
            .args(["-B1", "--output=size"])
            .arg(data_dir)
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .nth(1)
                    .and_then(|l| l.trim().parse::<u64>().ok())
            })
            .unwrap_or(0);
        let os_image = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| "Linux".into());
        Machine {
            hostname: read("/proc/sys/kernel/hostname"),
            address,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
            memory,
            storage,
            kernel: read("/proc/sys/kernel/osrelease"),
            os_image,
            machine_id: read("/etc/machine-id"),
            runtime_version,
        }
    }

    /// What pods may use: everything, less 100 MiB of memory kept for the system.
    pub fn allocatable(&self) -> Allocatable {
        Allocatable {
            cpu_milli: i64::try_from(self.cpus * 1000).unwrap_or(i64::MAX),
            memory: i64::try_from(self.memory.saturating_sub(100 << 20)).unwrap_or(i64::MAX),
        }
    }
}

/// The first global IPv4 address of the machine (of its network namespace), not one of the pod
/// network's bridges.
pub fn host_address() -> String {
    host_addresses()
        .into_iter()
        .find(|a| a.is_ipv4() && !a.to_string().starts_with("10.244."))
        .map_or_else(|| "127.0.0.1".into(), |a| a.to_string())
}

/// The host's global addresses (IPv4 and IPv6), as `ip addr show scope global` lists them.
pub fn host_addresses() -> Vec<IpAddr> {
    let output = std::process::Command::new("ip")
        .args(["-o", "addr", "show", "scope", "global"])
        .output();
    let Ok(output) = output else {
        return Vec::new();
    };
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "inet" || *w == "inet6")?;
            words.next()?.split('/').next()?.parse().ok()
        })
        .collect()
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn conditions(stamp: &str) -> Value {
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": stamp, "lastTransitionTime": stamp})
    };
    json!([
        condition(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available"
        ),
        condition(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure"
        ),
        condition(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available"
        ),
        condition(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status"
        ),
    ])
}

/// The Node's status from the machine, with the port the agent's API listens on.
pub fn node_status(machine: &Machine, images: &[(String, u64)], agent_port: u16) -> Value {
    let allocatable = machine.allocatable();
    let capacity = json!({
        "cpu": machine.cpus.to_string(),
        "memory": format!("{}Ki", machine.memory / 1024),
        "pods": "110",
        "ephemeral-storage": format!("{}Ki", machine.storage / 1024),
    });
    let images: Vec<Value> = images
        .iter()
        .map(|(name, size)| json!({"names": [name], "sizeBytes": size}))
        .collect();
    json!({
        "capacity": capacity,
        "allocatable": {
            "cpu": machine.cpus.to_string(),
            "memory": format!("{}Ki", allocatable.memory / 1024),
            "pods": "110",
            "ephemeral-storage": format!("{}Ki", machine.storage / 1024),
        },
        "conditions": conditions(&now()),
        "addresses": [
            {"type": "InternalIP", "address": machine.address},
            {"type": "Hostname", "address": machine.hostname},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": agent_port}},
        "nodeInfo": {
            "machineID": machine.machine_id, "systemUUID": machine.machine_id, "bootID": "",
            "kernelVersion": machine.kernel, "osImage": machine.os_image,
            "containerRuntimeVersion": format!("containerd://{}", machine.runtime_version),
            "kubeletVersion": concat!("v1.32.0-wasmkube.", env!("CARGO_PKG_VERSION")),
            "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
        },
        "images": images,
    })
}

/// Creates the Node (or takes over an existing one) and writes its status; returns the Node.
pub async fn register(
    api: &Api,
    name: &str,
    machine: &Machine,
    images: &[(String, u64)],
    agent_port: u16,
) -> Result<Value, ApiError> {
    let path = format!("/api/v1/nodes/{name}");
    if api.get(&path).await?.is_none() {
        let labels = BTreeMap::from([
            ("kubernetes.io/hostname", name),
            ("kubernetes.io/os", "linux"),
            ("kubernetes.io/arch", "amd64"),
        ]);
        let node = json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels}, "spec": {}});
        match api.create("/api/v1/nodes", &node).await {
            Ok(_) => {}
            Err(e) if e.status() == Some(reqwest::StatusCode::CONFLICT) => {}
            Err(e) => return Err(e),
        }
    }
    let status = node_status(machine, images, agent_port);
    api.merge_patch(&format!("{path}/status"), &json!({"status": status}))
        .await
}

/// Renews the node's Lease (creating it the first time).
pub async fn renew_lease(api: &Api, name: &str) -> Result<(), ApiError> {
    let path = format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}");
    let renew = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
    match api.get(&path).await? {
        Some(mut lease) => {
            lease["spec"]["renewTime"] = json!(renew);
            lease["spec"]["holderIdentity"] = json!(name);
            api.replace(&path, &lease).await?;
        }
        None => {
            let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": "kube-node-lease",
                    "ownerReferences": []},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS,
                    "renewTime": renew}});
            api.create(
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                &lease,
            )
            .await?;
        }
    }
    Ok(())
}

/// Renews the Lease every 10 s and refreshes the conditions' heartbeat every minute.
pub async fn heartbeat(api: Api, name: String) {
    let mut last_status = tokio::time::Instant::now();
    loop {
        if let Err(e) = renew_lease(&api, &name).await {
            tracing::warn!(error = %e, "renewing the node lease");
        }
        if last_status.elapsed() >= STATUS_EVERY {
            let patch = json!({"status": {"conditions": conditions(&now())}});
            match api
                .merge_patch(&format!("/api/v1/nodes/{name}/status"), &patch)
                .await
            {
                Ok(_) => last_status = tokio::time::Instant::now(),
                Err(e) => tracing::warn!(error = %e, "reporting the node status"),
            }
        }
        tokio::time::sleep(LEASE_RENEW).await;
    }
}

/// `cidr` (`a.b.c.d/n`) as its first address and prefix length, host bits clear.
pub(crate) fn ipv4_net(cidr: &str) -> Option<(u32, u32)> {
    let (ip, prefix) = cidr.split_once('/')?;
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    let prefix: u32 = prefix.parse().ok().filter(|p| *p <= 32)?;
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    (u32::from(ip) & !mask == 0).then_some((u32::from(ip), prefix))
}

/// Whether `cidr` is an IPv4 network inside the cluster's pod network `cluster`: only such a
/// pod CIDR may become a route or a masquerade rule (never `0.0.0.0/0`, never an option).
pub fn within_cluster(cidr: &str, cluster: &str) -> bool {
    let (Some((net, prefix)), Some((base, bits))) = (ipv4_net(cidr), ipv4_net(cluster)) else {
        return false;
    };
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    prefix >= bits && net & mask == base
}

/// The route to another node's pods a Node object asks for: its pod CIDR (inside the cluster's
/// pod network) via its InternalIP (an IPv4 address); `None` for this node or a Node that asks
/// for less or other.
/// What to do about another node's pod CIDR.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// Route `cidr` via `address`.
    Via { cidr: String, address: String },
    /// A pod CIDR outside the cluster's pod network, or no IPv4 InternalIP: ignored.
    Refused { node: String, cidr: String },
}

fn route_of(node: &Value, own: &str, cluster: &str) -> Option<Route> {
    let other = node.pointer("/metadata/name").and_then(Value::as_str)?;
    let cidr = node.pointer("/spec/podCIDR").and_then(Value::as_str)?;
    let address = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
        .and_then(|a| a["address"].as_str())?;
    if other == own {
        return None;
    }
    if !within_cluster(cidr, cluster) || address.parse::<std::net::Ipv4Addr>().is_err() {
        return Some(Route::Refused {
            node: other.to_string(),
            cidr: cidr.to_string(),
        });
    }
    Some(Route::Via {
        cidr: cidr.to_string(),
        address: address.to_string(),
    })
}

/// Records that `node`'s pod CIDR is ignored: a Warning Event on that Node.
pub fn ignored_pod_cidr(events: &Recorder, node: &str, cidr: &str, cluster: &str) {
    tracing::warn!(
        node,
        cidr,
        cluster,
        "ignoring a pod CIDR outside the cluster's pod network"
    );
    let message = format!(
        "Ignoring pod CIDR {cidr:?} of node {node}: not inside the cluster's pod network {cluster} \
         (or the node has no IPv4 InternalIP); no bridge or route is made from it"
    );
    events.warning(&Subject::node(node), "InvalidPodCIDR", &message);
}

/// Keeps a route to every other node's pod CIDR through that node's address, so pods reach
/// pods on other nodes of the same network (as flannel's host-gw does). A pod CIDR outside the
/// cluster's pod network gets no route and one Event.
pub async fn routes(api: Api, name: String, cluster_cidr: String, events: Recorder) {
    let mut refused = HashSet::new();
    loop {
        match api.list("/api/v1/nodes").await {
            Ok((nodes, _)) => {
                for route in nodes
                    .iter()
                    .filter_map(|node| route_of(node, &name, &cluster_cidr))
                {
                    match route {
                        Route::Via { cidr, address } => {
                            let _ = tokio::process::Command::new("ip")
                                .args(["route", "replace", &cidr, "via", &address])
                                .output()
                                .await;
                        }
                        Route::Refused { node, cidr } => {
                            if refused.insert((node.clone(), cidr.clone())) {
                                ignored_pod_cidr(&events, &node, &cidr, &cluster_cidr);
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "listing nodes for routes"),
        }
        tokio::time::sleep(LEASE_RENEW).await;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_pod_cidrs_inside_the_cluster_network_become_routes() {
        let cluster = "10.244.0.0/16";
        assert!(within_cluster("10.244.3.0/24", cluster));
        for bad in [
            "0.0.0.0/0",
            "10.245.0.0/24",
            "10.0.0.0/8",
            "10.244.3.1/24",
            "-6",
            "default",
            "10.244.3.0/33",
        ] {
            assert!(!within_cluster(bad, cluster), "{bad}");
        }
        let node = |cidr: &str, address: &str| {
            json!({"metadata": {"name": "other"}, "spec": {"podCIDR": cidr},
                "status": {"addresses": [{"type": "InternalIP", "address": address}]}})
        };
        assert_eq!(
            route_of(&node("10.244.3.0/24", "192.168.1.2"), "me", cluster),
            Some(Route::Via {
                cidr: "10.244.3.0/24".into(),
                address: "192.168.1.2".into()
            })
        );
        let refused = |cidr: &str| {
            Some(Route::Refused {
                node: "other".into(),
                cidr: cidr.into(),
            })
        };
        assert_eq!(
            route_of(&node("0.0.0.0/0", "192.168.1.2"), "me", cluster),
            refused("0.0.0.0/0")
        );
        assert_eq!(
            route_of(&node("10.244.3.0/24", "-net"), "me", cluster),
            refused("10.244.3.0/24")
        );
        assert_eq!(
            route_of(&node("10.244.3.0/24", "192.168.1.2"), "other", cluster),
            None
        );
    }
}
