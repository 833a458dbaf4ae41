//! Surviving failures beyond one machine: an etcd member killed under two apiservers that keep
//! taking writes, and a node agent that fails over between apiservers without restarting its
//! pods.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use wasmkube_e2e::etcd::EtcdCluster;
use wasmkube_e2e::{Cluster, binary, eventually, kubectl_at, service_cidr, target_dir};

/// A second `wasmkube server` on the first one's etcd, with its CA, keys and tokens (as
/// tests/leader.rs: `join --control-plane` does not exist yet).
fn second_host(first: &Cluster, args: &[&str]) -> Result<Cluster> {
    let dir = tempfile::tempdir()?;
    let status = Command::new("cp")
        .arg("-a")
        .arg(first.dir.path().join("pki"))
        .arg(dir.path())
        .status()?;
    anyhow::ensure!(status.success(), "copying the first host's pki");
    Cluster::start_in(dir, args)
}

/// The names of the ConfigMaps in `default` as `c` lists them.
fn config_maps(c: &Cluster) -> Result<BTreeSet<String>> {
    let out = c.ok(&["get", "configmaps", "-o", "name"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.strip_prefix("configmap/"))
        .map(str::to_string)
        .collect())
}

/// The errors writes were refused with, and how many times each.
type Refusals = BTreeMap<String, usize>;

/// Writes ConfigMaps through the kubeconfigs in turn until stopped, noting each write the API
/// acknowledged and when.
struct Writer {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<Vec<(String, Instant)>>>,
    thread: Option<std::thread::JoinHandle<Refusals>>,
}

impl Writer {
    fn start(kubeconfigs: Vec<PathBuf>) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let (flag, acks) = (stop.clone(), acknowledged.clone());
        let thread = std::thread::spawn(move || {
            let mut refused = Refusals::new();
            for n in 0.. {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let name = format!("w{n}");
                let kubeconfig = &kubeconfigs[n % kubeconfigs.len()];
                let args = ["create", "configmap", &name, "--from-literal=k=v"];
                match kubectl_at(kubeconfig, &args, None) {
                    Ok(out) if out.status.success() => acks
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((name, Instant::now())),
                    Ok(out) => {
                        let why = String::from_utf8_lossy(&out.stderr);
                        let why = why.lines().next().unwrap_or_default();
                        *refused.entry(why.chars().take(160).collect()).or_default() += 1;
                    }
                    Err(e) => *refused.entry(e.to_string()).or_default() += 1,
                }
            }
            refused
        });
        Writer {
            stop,
            acknowledged,
            thread: Some(thread),
        }
    }

    /// How many writes were acknowledged so far.
    fn count(&self) -> usize {
        self.acknowledged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Stops; the acknowledged writes, and how many were refused with which error.
    fn finish(mut self) -> Result<(Vec<(String, Instant)>, Refusals)> {
        self.stop.store(true, Ordering::Relaxed);
        let refused = self
            .thread
            .take()
            .context("finished twice")?
            .join()
            .map_err(|_| anyhow::anyhow!("the writer panicked"))?;
        let acks =
            std::mem::take(&mut *self.acknowledged.lock().unwrap_or_else(|e| e.into_inner()));
        Ok((acks, refused))
    }
}

#[test]
fn an_etcd_member_is_killed_and_no_acknowledged_write_is_lost() -> Result<()> {
    let mut etcd = EtcdCluster::start(3)?;
    let store = etcd.store();
    let a = Cluster::start_with(&["--store", &store])?;
    let b = second_host(&a, &["--store", &store])?;
    let writer = Writer::start(vec![a.kubeconfig(), b.kubeconfig()]);
    eventually(Duration::from_secs(30), || Ok(writer.count() >= 10))?;

    // Kill the member that leads the raft group: the harder case (an election).
    let status = etcd.status(0)?;
    let leader = status["leader"].as_str().context("no leader")?.to_string();
    let victim = (0..3)
        .find(|&i| {
            etcd.status(i)
                .is_ok_and(|s| s["header"]["member_id"] == leader)
        })
        .context("no member is the leader")?;
    etcd.kill(victim);
    let killed = Instant::now();
    let before = writer.count();
    eventually(
        Duration::from_secs(30),
        || Ok(writer.count() >= before + 20),
    )?;
    let survived = killed.elapsed();

    etcd.restart(victim)?;
    let restarted = writer.count();
    eventually(Duration::from_secs(30), || {
        Ok(writer.count() >= restarted + 10)
    })?;
    let (acks, refused) = writer.finish()?;

    // The API stayed available: no long gap between acknowledged writes, and none refused
    // because a request went to the dead member (the store sends those again, to another; the
    // raft election may still refuse a few, printed).
    let longest = acks
        .windows(2)
        .map(|w| w[1].1 - w[0].1)
        .max()
        .unwrap_or_default();
    eprintln!(
        "{} writes acknowledged, refused: {refused:?}; 20 more within {survived:?} of the kill; longest gap {longest:?}",
        acks.len()
    );
    assert!(
        longest < Duration::from_secs(10),
        "the API stopped taking writes for {longest:?}"
    );
    let dead_member: Vec<&String> = refused
        .keys()
        .filter(|why| why.contains("connect"))
        .collect();
    assert!(
        dead_member.is_empty(),
        "writes refused for a dead member: {dead_member:?}"
    );

    // Every acknowledged write is readable through both servers.
    let written: BTreeSet<String> = acks.into_iter().map(|(name, _)| name).collect();
    for host in [&a, &b] {
        let listed = config_maps(host)?;
        let lost: Vec<&String> = written.difference(&listed).collect();
        assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    }

    // The member rejoined and caught up: every member names all three and is at the same
    // revision.
    for i in 0..3 {
        assert_eq!(etcd.members(i)?.len(), 3, "member {i}'s list");
    }
    let revision = |i: usize| -> Result<String> {
        Ok(etcd.status(i)?["header"]["revision"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    };
    eventually(Duration::from_secs(10), || {
        let revisions = (0..3).map(revision).collect::<Result<BTreeSet<_>>>()?;
        Ok(revisions.len() == 1)
    })
    .with_context(|| format!("member {victim} did not catch up: {}", etcd.log(victim)))?;
    Ok(())
}

/// The pod network and bridge of the fail-over test's node.
const POD_NETWORK: &str = "10.239.0.0/16";
const BRIDGE: &str = "wkfo0";
const NODE: &str = "failover";

/// Two servers on `etcd` for the node [`NODE`] and its pod network.
fn two_hosts(etcd: &EtcdCluster) -> Result<(Cluster, Cluster)> {
    let store = etcd.store();
    let services = service_cidr(POD_NETWORK)?;
    let args = [
        "--store",
        &store,
        "--cluster-cidr",
        POD_NETWORK,
        "--service-cidr",
        &services,
    ];
    let a = Cluster::start_with(&args)?;
    let b = second_host(&a, &args)?;
    Ok((a, b))
}

/// A node agent (`wasmkube join`) in this machine's namespace, with its own bridge and pod
/// network; stopped, its bridge and proxy table deleted, when dropped.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    /// Joins `servers` (URLs, in order) as node [`NODE`] with a bootstrap token of `c`.
    fn join(c: &Cluster, servers: &[String]) -> Result<Agent> {
        wasmkube_e2e::remove_bridge(BRIDGE);
        let join = c.join_flags()?;
        let dir = c.dir.path().join("agent");
        let log = c.dir.path().join("agent.log");
        let child = Command::new(binary())
            .arg("join")
            .args(servers)
            .args(&join)
            .arg("--data-dir")
            .arg(dir.join("join"))
            .arg("--node-dir")
            .arg(dir.join("state"))
            .arg("--log-dir")
            .arg(dir.join("logs"))
            .args(["--node-name", NODE, "--bridge", BRIDGE])
            .args(["--pod-network", POD_NETWORK, "--agent-port", "0"])
            .args(["--service-cidr", &service_cidr(POD_NETWORK)?])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        Ok(Agent { child, log })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        wasmkube_e2e::remove_bridge(BRIDGE);
    }
}

fn pod(name: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default}}
spec:
  nodeName: {NODE}
  terminationGracePeriodSeconds: 1
  containers: [{{name: c, image: busybox, imagePullPolicy: IfNotPresent, command: [sleep, '3600']}}]
"
    )
}

/// Waits until pod `name` runs, as `c` reads it.
fn running(c: &Cluster, name: &str, agent: &Agent) -> Result<()> {
    eventually(Duration::from_secs(60), || {
        let phase = c.ok(&["get", "pod", name, "-o", "jsonpath={.status.phase}"])?;
        Ok(phase == "Running")
    })
    .with_context(|| format!("pod {name} is not Running; agent log:\n{}", agent.log()))
}

/// Every containerd task of wasmkube's namespace: its PID by container ID.
fn tasks() -> Result<BTreeMap<String, String>> {
    let out = Command::new("ctr")
        .args(["-a", "/run/wasmkube/containerd.sock", "-n", "wasmkube"])
        .args(["tasks", "ls"])
        .output()?;
    if !out.status.success() {
        bail!("ctr tasks ls: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            Some((fields.next()?.to_string(), fields.next()?.to_string()))
        })
        .collect())
}

/// The containerd task PID of each container of the pods `c` lists, by container ID.
fn task_pids(c: &Cluster) -> Result<BTreeMap<String, String>> {
    let ids = c.ok(&[
        "get",
        "pods",
        "-o",
        "jsonpath={range .items[*].status.containerStatuses[*]}{.containerID}{\"\\n\"}{end}",
    ])?;
    let ids: BTreeSet<&str> = ids
        .lines()
        .filter_map(|l| l.strip_prefix("containerd://"))
        .collect();
    let mut tasks = tasks()?;
    tasks.retain(|id, _| ids.contains(id.as_str()));
    Ok(tasks)
}

/// Runs kubectl against some server and returns its stdout, failing unless it succeeds.
type Kubectl<'a> = &'a dyn Fn(&[&str]) -> Result<String>;

/// The renew time of the node's Lease.
fn lease_renewed(kubectl: Kubectl<'_>) -> Result<String> {
    let renew_time = "jsonpath={.spec.renewTime}";
    kubectl(&[
        "get",
        "lease",
        "-n",
        "kube-node-lease",
        NODE,
        "-o",
        renew_time,
    ])
}

/// Whether the node is Ready.
fn node_ready(kubectl: Kubectl<'_>) -> Result<bool> {
    let ready = "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}";
    Ok(kubectl(&["get", "node", NODE, "-o", ready])? == "True")
}

#[test]
fn a_node_agent_fails_over_between_apiservers_and_keeps_its_pods() -> Result<()> {
    let image = target_dir().join("images/busybox.tar");
    anyhow::ensure!(
        image.exists(),
        "{} is missing: run scripts/build-images.sh",
        image.display()
    );
    let etcd = EtcdCluster::start(1)?;
    let (mut a, mut b) = two_hosts(&etcd)?;
    a.wasmkube(&["image", "import", &image.display().to_string()])?;
    let url = |c: &Cluster| format!("https://127.0.0.1:{}", c.port);
    let agent = Agent::join(&a, &[url(&a), url(&b)])?;
    eventually(Duration::from_secs(60), || node_ready(&|args| b.ok(args)))
        .with_context(|| format!("the node is not Ready; agent log:\n{}", agent.log()))?;
    // The joined node's kubeconfig keeps both servers; kubectl reads it as it is.
    let kubeconfig = a.dir.path().join("agent/join/kubeconfig");
    let out = kubectl_at(&kubeconfig, &["get", "node", NODE, "-o", "name"], None)?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read_to_string(&kubeconfig)?.contains(&url(&b)));

    a.apply(&pod("first"))?;
    running(&a, "first", &agent)?;
    let pids = task_pids(&a)?;
    assert_eq!(pids.len(), 1, "{pids:?}");

    // The agent talks to the first server; it dies. The agent goes on through the second: its
    // lease is renewed, a new pod is started, the running one is left alone.
    a.kill();
    let killed = Instant::now();
    let renewed = lease_renewed(&|args| b.ok(args))?;
    b.apply(&pod("second"))?;
    running(&b, "second", &agent)?;
    eventually(Duration::from_secs(30), || {
        Ok(lease_renewed(&|args| b.ok(args))? != renewed)
    })?;
    let took = killed.elapsed();
    assert!(agent.log().contains("failing over"), "{}", agent.log());
    let after = task_pids(&b)?;
    assert_eq!(after.len(), 2, "{after:?}");
    for (id, pid) in &pids {
        assert_eq!(after.get(id), Some(pid), "container {id} was restarted");
    }

    // The first comes back and the second dies: the agent fails back.
    a.restart()?;
    b.kill();
    a.apply(&pod("third"))?;
    running(&a, "third", &agent)?;
    let last = task_pids(&a)?;
    assert_eq!(last.len(), 3, "{last:?}");
    for (id, pid) in &after {
        assert_eq!(last.get(id), Some(pid), "container {id} was restarted");
    }
    let restarts = a.ok(&[
        "get",
        "pods",
        "-o",
        "jsonpath={.items[*].status.containerStatuses[*].restartCount}",
    ])?;
    assert_eq!(restarts, "0 0 0");
    eprintln!("a new pod ran and the lease was renewed {took:?} after the first server died");
    // The agent stops the containers before it is stopped itself.
    a.ok(&["delete", "pods", "--all", "--timeout=60s"])?;
    let left = tasks()?;
    assert!(last.keys().all(|id| !left.contains_key(id)), "{left:?}");
    drop(agent);
    Ok(())
}

/// HAProxy running `manifests/haproxy/haproxy.cfg` on a free loopback port in front of
/// `servers` (ports on 127.0.0.1); stopped when dropped.
struct Haproxy {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Haproxy {
    fn start(servers: &[u16]) -> Result<Haproxy> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let shipped =
            std::fs::read_to_string(wasmkube_e2e::repo().join("manifests/haproxy/haproxy.cfg"))?;
        // The shipped file, its addresses replaced by this test's; no syslog here.
        let mut config: String = shipped
            .lines()
            .filter(|l| !l.trim_start().starts_with("server ") && !l.contains("log /dev/log"))
            .map(|l| l.replace("bind :6443", &format!("bind 127.0.0.1:{port}")) + "\n")
            .collect();
        for (i, server) in servers.iter().enumerate() {
            config += &format!("    server cp{i} 127.0.0.1:{server} check\n");
        }
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("haproxy.cfg");
        std::fs::write(&file, config)?;
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("haproxy.log"))?)
            .spawn()
            .context("starting haproxy (scripts/setup.sh installs it)")?;
        Ok(Haproxy { child, port, dir })
    }
}

impl Haproxy {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn kubectl_and_a_node_agent_go_through_haproxy_when_a_server_dies() -> Result<()> {
    let etcd = EtcdCluster::start(1)?;
    let (mut a, mut b) = two_hosts(&etcd)?;
    let lb = Haproxy::start(&[a.port, b.port])?;
    let lb_url = format!("https://127.0.0.1:{}", lb.port);
    // The admin's kubeconfig, pointed at the load balancer (both servers' certificates name
    // 127.0.0.1, as `--tls-san` would name a load balancer's address).
    let kubeconfig = a.dir.path().join("lb.kubeconfig");
    let admin = std::fs::read_to_string(a.kubeconfig())?;
    std::fs::write(
        &kubeconfig,
        admin.replace(&format!("https://127.0.0.1:{}", a.port), &lb_url),
    )?;
    let through = |args: &[&str]| -> Result<String> {
        let out = kubectl_at(&kubeconfig, args, None)?;
        if !out.status.success() {
            bail!("kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?)
    };
    eventually(Duration::from_secs(20), || {
        Ok(through(&["get", "--raw", "/readyz"]).is_ok())
    })
    .with_context(|| format!("haproxy:\n{}", lb.log()))?;

    let agent = Agent::join(&a, std::slice::from_ref(&lb_url))?;
    eventually(Duration::from_secs(60), || {
        Ok(node_ready(&through).unwrap_or(false))
    })
    .with_context(|| format!("the node is not Ready; agent log:\n{}", agent.log()))?;

    // Either server dies: kubectl and the agent go on through the load balancer.
    for victim in [&mut a, &mut b] {
        let renewed = lease_renewed(&through)?;
        victim.kill();
        let killed = Instant::now();
        let name = format!("after-{}", victim.port);
        eventually(Duration::from_secs(20), || {
            Ok(through(&["create", "configmap", &name, "--from-literal=k=v"]).is_ok())
        })?;
        let written = killed.elapsed();
        eventually(Duration::from_secs(30), || {
            Ok(lease_renewed(&through)? != renewed)
        })
        .with_context(|| format!("the lease was not renewed; agent log:\n{}", agent.log()))?;
        eprintln!(
            "a server died: kubectl wrote through the load balancer after {written:?}, the agent renewed its lease after {:?}",
            killed.elapsed()
        );
        victim.restart()?;
    }
    assert!(node_ready(&through)?);
    drop(agent);
    Ok(())
}
