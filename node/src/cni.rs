//! Pod networking: a network namespace per pod, attached by the standard CNI plugin binaries.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::command::{CommandError, run};

/// Where Debian's containernetworking-plugins puts the plugin binaries.
pub const DEFAULT_PLUGIN_DIR: &str = "/usr/lib/cni";
/// Where `ip netns` keeps named network namespaces.
const NETNS_DIR: &str = "/run/netns";
/// The CNI network name and the pods' interface.
const NETWORK: &str = "wasmkube";
const IFNAME: &str = "eth0";

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("CNI plugin {plugin} answered without an IP address: {result}")]
    NoAddress { plugin: String, result: String },
    #[error("{path}: {source}")]
    State {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A hostPort mapping for the portmap plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
    pub host_ip: String,
}

/// The node's pod network: its bridge, its pod CIDR and where state is kept.
#[derive(Clone, Debug)]
pub struct Cni {
    pub plugin_dir: PathBuf,
    /// Where host-local keeps its allocations and we keep each pod's ADD result.
    pub state_dir: PathBuf,
    /// The Linux bridge the pods of this node hang off.
    pub bridge: String,
    /// This node's pod CIDR (from `spec.podCIDR`).
    pub pod_cidr: String,
    /// The whole cluster's pod CIDR: traffic leaving it is masqueraded.
    pub cluster_cidr: String,
}

/// The network namespace of the pod with this uid.
pub fn netns_path(uid: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(netns_name(uid))
}

fn netns_name(uid: &str) -> String {
    format!("wk-{uid}")
}

/// How a pod is networked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Network {
    /// A network namespace of its own on the node's bridge, with these host ports mapped.
    Pod(Vec<PortMapping>),
    /// The node's own network namespace (`hostNetwork`): the pod's IP is the node's, `ip`, and
    /// its ports are the node's ports.
    Host(String),
}

impl Cni {
    /// The chain a pod is attached with: bridge + host-local, then portmap when it maps host
    /// ports, each a complete plugin configuration.
    fn chain(&self, ports: &[PortMapping]) -> Vec<Value> {
        let mut chain = vec![json!({
            "cniVersion": "1.0.0", "name": NETWORK,
            "type": "bridge", "bridge": self.bridge, "isGateway": true,
            "ipMasq": false, "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": self.pod_cidr}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": self.state_dir.join("networks"),
            },
        })];
        if !ports.is_empty() {
            let mappings: Vec<Value> = ports
                .iter()
                .map(|p| {
                    json!({"hostPort": p.host_port, "containerPort": p.container_port,
                        "protocol": p.protocol.to_lowercase(), "hostIP": p.host_ip})
                })
                .collect();
            chain.push(json!({
                "cniVersion": "1.0.0", "name": NETWORK, "type": "portmap",
                "capabilities": {"portMappings": true}, "snat": true,
                "runtimeConfig": {"portMappings": mappings},
            }));
        }
        chain
    }

    /// Prepares the node: forwarding on, and masquerade for traffic from this node's pods to
    /// anywhere outside the cluster's pod network.
    pub async fn prepare_node(&self) -> Result<(), CniError> {
        std::fs::create_dir_all(self.state_dir.join("results")).map_err(|source| {
            CniError::State {
                path: self.state_dir.clone(),
                source,
            }
        })?;
        run("sysctl", &["-qw", "net.ipv4.ip_forward=1"]).await?;
        let rule = [
            "POSTROUTING",
            "-s",
            &self.pod_cidr,
            "!",
            "-d",
            &self.cluster_cidr,
            "-m",
            "comment",
            "--comment",
            "wasmkube pods to the outside",
            "-j",
            "MASQUERADE",
        ];
        let check: Vec<&str> = ["-t", "nat", "-C"].iter().copied().chain(rule).collect();
        if run("iptables", &check).await.is_err() {
            let append: Vec<&str> = ["-t", "nat", "-A"].iter().copied().chain(rule).collect();
            run("iptables", &append).await?;
        }
        Ok(())
    }

    /// Creates the pod's network namespace and attaches it: loopback up, `eth0` on the bridge
    /// with an address from the node's range, host ports mapped. Returns the pod IP.
    pub async fn attach(&self, uid: &str, network: &Network) -> Result<String, CniError> {
        let ports = match network {
            Network::Pod(ports) => ports,
            Network::Host(ip) => return self.attach_host(uid, ip),
        };
        let attached = self.try_attach(uid, ports).await;
        if attached.is_err() {
            // Leave nothing half made: the next attempt starts from scratch.
            let _ = self.detach(uid, ports).await;
        }
        attached
    }

    async fn try_attach(&self, uid: &str, ports: &[PortMapping]) -> Result<String, CniError> {
        let netns = netns_path(uid);
        if !netns.exists() {
            run("ip", &["netns", "add", &netns_name(uid)]).await?;
        }
        let lo = json!({"cniVersion": "1.0.0", "name": "lo", "type": "loopback"});
        self.invoke("ADD", uid, &lo, "lo").await?;
        let mut previous: Option<Value> = None;
        for mut plugin in self.chain(ports) {
            if let Some(previous) = &previous {
                plugin["prevResult"] = previous.clone();
            }
            previous = Some(self.invoke("ADD", uid, &plugin, IFNAME).await?);
        }
        let result = previous.unwrap_or(Value::Null);
        let path = self.result_path(uid);
        std::fs::write(&path, result.to_string())
            .map_err(|source| CniError::State { path, source })?;
        pod_ip(&result).ok_or_else(|| CniError::NoAddress {
            plugin: "bridge".into(),
            result: result.to_string(),
        })
    }

    /// The pod IP of an attached pod, from the result kept at attach time.
    pub fn address(&self, uid: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.result_path(uid)).ok()?;
        pod_ip(&serde_json::from_str(&text).ok()?)
    }

    /// Records a pod on the node's network: no namespace, no plugin, the node's address kept
    /// as its result so that [`Cni::address`] and [`Cni::attached`] know it like the others.
    fn attach_host(&self, uid: &str, ip: &str) -> Result<String, CniError> {
        let prefix = if ip.contains(':') { 128 } else { 32 };
        let result = json!({"hostNetwork": true, "ips": [{"address": format!("{ip}/{prefix}")}]});
        let path = self.result_path(uid);
        let write = std::fs::create_dir_all(self.state_dir.join("results"))
            .and_then(|()| std::fs::write(&path, result.to_string()));
        write.map_err(|source| CniError::State { path, source })?;
        Ok(ip.to_string())
    }

    /// Detaches the pod (the plugins in reverse: its host ports, then its address) and removes
    /// its network namespace; a pod on the node's network only loses its record. Safe to
    /// repeat.
    pub async fn detach(&self, uid: &str, ports: &[PortMapping]) -> Result<(), CniError> {
        let previous = std::fs::read_to_string(self.result_path(uid))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok());
        if previous.as_ref().is_some_and(|p| p["hostNetwork"] == true) {
            let _ = std::fs::remove_file(self.result_path(uid));
            return Ok(());
        }
        for mut plugin in self.chain(ports).into_iter().rev() {
            if let Some(previous) = &previous {
                plugin["prevResult"] = previous.clone();
            }
            self.invoke("DEL", uid, &plugin, IFNAME).await?;
        }
        if netns_path(uid).exists() {
            run("ip", &["netns", "delete", &netns_name(uid)]).await?;
        }
        let _ = std::fs::remove_file(self.result_path(uid));
        Ok(())
    }

    /// The uids of pods attached on this node (by the results kept at attach time).
    pub fn attached(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.state_dir.join("results")) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|name| name.strip_suffix(".json").map(str::to_string))
            .collect()
    }

    fn result_path(&self, uid: &str) -> PathBuf {
        self.state_dir.join("results").join(format!("{uid}.json"))
    }

    /// Runs one plugin binary as the CNI spec says: the command in the environment, the
    /// configuration on stdin, the result (or an error object) on stdout.
    async fn invoke(
        &self,
        command: &str,
        uid: &str,
        config: &Value,
        ifname: &str,
    ) -> Result<Value, CniError> {
        let plugin = config["type"].as_str().unwrap_or_default().to_string();
        let binary = self.plugin_dir.join(&plugin);
        let label = format!("CNI {command} {plugin}");
        let mut child = Command::new(&binary)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", uid)
            .env("CNI_NETNS", netns_path(uid))
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", &self.plugin_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| CommandError::Spawn {
                command: binary.display().to_string(),
                source,
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(config.to_string().as_bytes()).await;
        }
        let output = child
            .wait_with_output()
            .await
            .map_err(|source| CommandError::Spawn {
                command: binary.display().to_string(),
                source,
            })?;
        let result: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        if !output.status.success() {
            let message = result
                .get("msg")
                .and_then(Value::as_str)
                .map(|m| match result.get("details").and_then(Value::as_str) {
                    Some(details) => format!("{m}: {details}"),
                    None => m.to_string(),
                })
                .unwrap_or_else(|| String::from_utf8_lossy(&output.stderr).trim().to_string());
            return Err(CommandError::Failed {
                command: label,
                message,
            }
            .into());
        }
        Ok(result)
    }
}

/// The first IPv4 address of a CNI result, without its prefix length.
fn pod_ip(result: &Value) -> Option<String> {
    result["ips"]
        .as_array()?
        .iter()
        .filter_map(|ip| ip["address"].as_str())
        .map(|a| a.split('/').next().unwrap_or(a).to_string())
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pod_ip_is_the_first_address_without_its_prefix() {
        let result = json!({"cniVersion": "1.0.0",
            "ips": [{"address": "10.244.0.7/24", "gateway": "10.244.0.1", "interface": 2}]});
        assert_eq!(pod_ip(&result).as_deref(), Some("10.244.0.7"));
        assert_eq!(pod_ip(&json!({})), None);
    }
}
