//! Test hosts: network namespaces on one bridge (scripts/test-hosts.sh), each running a node
//! agent of a cluster, so that traffic between nodes crosses a real (virtual) network.

use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{Result, bail};

use crate::{Cluster, binary, eventually, repo};

/// The host's own address on the test hosts' bridge: a cluster whose first node runs in the
/// host's namespace gives its agent `--node-ip` this address, and the agents in test hosts reach
/// the API at it.
pub const HOST_SIDE: &str = "172.31.0.1";

/// One test host, removed (agent stopped, namespace and veth deleted) when dropped.
pub struct TestHost {
    name: String,
    address: String,
    agent: Option<Child>,
    log: std::path::PathBuf,
}

fn script(args: &[&str]) -> Result<()> {
    let out = Command::new(repo().join("scripts/test-hosts.sh"))
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!(
            "test-hosts.sh {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

impl TestHost {
    /// Makes test host `name` (`[a-z][a-z0-9]{0,9}`) at 172.31.0.`n`.
    pub fn add(name: &str, n: u8) -> Result<TestHost> {
        script(&["add", name, &n.to_string()])?;
        Ok(TestHost {
            name: name.to_string(),
            address: format!("172.31.0.{n}"),
            agent: None,
            log: std::env::temp_dir().join(format!("wasmkube-test-host-{name}.log")),
        })
    }

    /// Its address on the bridge (its node's InternalIP).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Joins this host to `c` as node `node` (`wasmkube join`), its pods on `bridge`, its state
    /// in the cluster's directory, with `extra` flags of the agent (the cluster's
    /// `--service-cidr` and `--cluster-dns`, say), and waits until the Node is Ready.
    pub fn start_agent(
        &mut self,
        c: &Cluster,
        node: &str,
        bridge: &str,
        extra: &[&str],
    ) -> Result<()> {
        // A bridge left by an earlier run would hold the same pod subnet.
        let _ = Command::new("ip")
            .args([
                "-n",
                &format!("wkh-{}", self.name),
                "link",
                "delete",
                bridge,
            ])
            .output();
        let dir = self.dir(c);
        // It joins as an operator would join a machine: with a bootstrap token and the CA's
        // pin from `wasmkube token create`, at the address this host reaches the API at.
        let join = c.join_flags()?;
        let log = std::fs::File::create(&self.log)?;
        let agent = Command::new(repo().join("scripts/test-hosts.sh"))
            .args(["run", &self.name, "--"])
            .arg(binary())
            .args(["join", &format!("https://{HOST_SIDE}:{}", c.port)])
            .args(&join)
            .arg("--data-dir")
            .arg(self.data_dir(c))
            .args(["--node-name", node, "--bridge", bridge])
            .args(["--node-ip", &self.address])
            .arg("--node-dir")
            .arg(dir.join("state"))
            .arg("--log-dir")
            .arg(dir.join("logs"))
            .args(extra)
            .stderr(log)
            .spawn()?;
        self.agent = Some(agent);
        let ready = "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}";
        eventually(Duration::from_secs(30), || {
            let out = c.kubectl(&["get", "node", node, "-o", ready])?;
            Ok(out.status.success() && out.stdout == b"True")
        })
        .map_err(|e| {
            anyhow::anyhow!(
                "node {node} in test host {}: {e}\n{}",
                self.name,
                self.log()
            )
        })
    }

    /// Where its agent keeps its kubeconfig: the node's key and certificate, and nothing of
    /// the admin's.
    pub fn data_dir(&self, c: &Cluster) -> std::path::PathBuf {
        self.dir(c).join("join")
    }

    /// Whether any regular file this host's agent keeps (kubeconfig, pod state, logs) contains
    /// `secret`.
    pub fn holds(&self, c: &Cluster, secret: &str) -> Result<bool> {
        let mut dirs = vec![self.dir(c)];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    dirs.push(entry.path());
                } else if kind.is_file()
                    && String::from_utf8_lossy(&std::fs::read(entry.path())?).contains(secret)
                {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Its files, in the cluster's directory.
    fn dir(&self, c: &Cluster) -> std::path::PathBuf {
        c.dir.path().join(format!("host-{}", self.name))
    }

    /// What its agent logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            let _ = agent.kill();
            let _ = agent.wait();
        }
        let _ = script(&["del", &self.name]);
    }
}
