//! A throwaway etcd cluster of several members on loopback ports (the `etcd` binary of
//! scripts/etcd.sh), each in a directory of its own, whose members a test can kill -9 and start
//! again; read through etcd's JSON gateway (`/v3/...`), so no client library is needed.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::eventually;

/// How long a member may take to become healthy.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One member: its name, ports and process.
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// A running etcd cluster; every member killed and its data removed on drop.
pub struct EtcdCluster {
    dir: tempfile::TempDir,
    members: Vec<Member>,
}

/// `n` free loopback ports, all held until all are chosen.
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let held = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    Ok(held
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<_>>()?)
}

impl EtcdCluster {
    /// Starts a cluster of `n` members and waits until every one is healthy.
    pub fn start(n: usize) -> Result<EtcdCluster> {
        let ports = free_ports(2 * n)?;
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                child: None,
            })
            .collect();
        let mut cluster = EtcdCluster {
            dir: tempfile::Builder::new().prefix("etcd-cluster-").tempdir()?,
            members,
        };
        for i in 0..n {
            cluster.spawn(i)?;
        }
        for i in 0..n {
            cluster.wait_healthy(i)?;
        }
        Ok(cluster)
    }

    /// `etcd://127.0.0.1:A,127.0.0.1:B,…`, as `wasmkube server --store` takes it.
    pub fn store(&self) -> String {
        let clients: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect();
        format!("etcd://{}", clients.join(","))
    }

    /// Kills member `i` with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its data directory (it rejoins as the member it was) and
    /// waits until it is healthy.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.kill(i);
        self.spawn(i)?;
        self.wait_healthy(i)
    }

    /// Member `i`'s `/v3/maintenance/status`: its `header.revision`, `raftIndex`, `leader`, …
    pub fn status(&self, i: usize) -> Result<Value> {
        self.post(i, "/v3/maintenance/status", "{}")
    }

    /// The member list as member `i` sees it: `members[].name`.
    pub fn members(&self, i: usize) -> Result<Vec<String>> {
        let list = self.post(i, "/v3/cluster/member/list", "{}")?;
        Ok(list["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["name"].as_str().map(str::to_string))
            .collect())
    }

    /// What member `i` logged.
    pub fn log(&self, i: usize) -> String {
        let path = self.member_dir(i).join("etcd.log");
        std::fs::read_to_string(path).unwrap_or_default()
    }

    fn member_dir(&self, i: usize) -> std::path::PathBuf {
        self.dir.path().join(&self.members[i].name)
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let peers: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect();
        let dir = self.member_dir(i);
        std::fs::create_dir_all(&dir)?;
        let member = &self.members[i];
        let client = format!("http://127.0.0.1:{}", member.client_port);
        let peer = format!("http://127.0.0.1:{}", member.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("etcd.log"))?;
        let child = Command::new("etcd")
            .arg(format!("--name={}", member.name))
            .arg(format!("--data-dir={}", dir.join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={}", peers.join(",")))
            .arg("--initial-cluster-state=new")
            .arg("--initial-cluster-token=wasmkube-test")
            .args(["--logger=zap", "--log-level=warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting etcd (install it with scripts/etcd.sh)")?;
        self.members[i].child = Some(child);
        Ok(())
    }

    fn wait_healthy(&mut self, i: usize) -> Result<()> {
        eventually(START_TIMEOUT, || {
            if let Some(child) = self.members[i].child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("etcd member {i} exited with {status}: {}", self.log(i));
            }
            Ok(self.get(i, "/health").is_ok_and(|h| h["health"] == "true"))
        })
        .with_context(|| format!("etcd member {i}: {}", self.log(i)))
    }

    fn get(&self, i: usize, path: &str) -> Result<Value> {
        self.http(i, &format!("GET {path} HTTP/1.0\r\n\r\n"))
    }

    fn post(&self, i: usize, path: &str, body: &str) -> Result<Value> {
        let request = format!(
            "POST {path} HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.http(i, &request)
    }

    /// Sends `request` to member `i`'s client port (3 s at most) and reads the JSON answer.
    fn http(&self, i: usize, request: &str) -> Result<Value> {
        use std::io::{Read as _, Write as _};
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], self.members[i].client_port));
        let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(3))?;
        stream.set_read_timeout(Some(Duration::from_secs(3)))?;
        stream.write_all(request.as_bytes())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        let (head, body) = answer.split_once("\r\n\r\n").context("no HTTP answer")?;
        if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
            bail!("etcd member {i}: {head}");
        }
        Ok(serde_json::from_str(body)?)
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
