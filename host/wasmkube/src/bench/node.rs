//! `wasmkube bench node`: a real node agent in its own process under a real apiserver: pod
//! start latency (100 pods at once and one by one), the machine's CPU time per pod of the burst,
//! the agent's RSS and CPU with the pods idle,
//! and the time to adopt them after the agent is killed and started again.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use wasmkube_model::meta::ResourceExt;
use wasmkube_node::api::{Api, Connection};

const NODE: &str = "bench";
const NAMESPACE: &str = "default";
/// A pod network of its own, apart from the one of a cluster `wasmkube up` may run.
const POD_NETWORK: &str = "10.246.0.0/16";

#[derive(clap::Args)]
pub struct NodeArgs {
    /// Pods started at once, then one by one.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Seconds the idle agent is sampled for.
    #[arg(long, default_value_t = 30)]
    idle_seconds: u64,
    #[arg(long, default_value = "/run/wasmkube/containerd.sock")]
    containerd: PathBuf,
    /// The image archive imported first.
    #[arg(long, default_value = "target/images/busybox.tar")]
    image: PathBuf,
}

/// The bench node's pod bridge.
const BRIDGE: &str = "wkbench0";

/// A child process killed when dropped.
pub(super) struct Process(pub(super) Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A bench node's pod bridge and its service proxy's nftables table, deleted when made (an
/// earlier run's) and when dropped: left, the bridge's route would hold its pod subnet for the
/// next cluster on this machine. Made before the processes that use it, so dropped after them.
pub(super) struct PodNetwork(&'static str);

impl PodNetwork {
    pub(super) fn new(bridge: &'static str) -> PodNetwork {
        let network = PodNetwork(bridge);
        network.remove();
        network
    }

    fn remove(&self) {
        let _ = Command::new("ip").args(["link", "delete", self.0]).output();
        let table = format!("wasmkube-{}", self.0);
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &table])
            .output();
    }
}

impl Drop for PodNetwork {
    fn drop(&mut self) {
        self.remove();
    }
}

pub(super) fn wasmkube() -> anyhow::Result<Command> {
    Ok(Command::new(std::env::current_exe()?))
}

/// Starts the agent; returns it and how long until it logged its adoption (and how many it
/// adopted).
fn start_agent(dir: &Path) -> anyhow::Result<(Process, Duration, u64)> {
    let began = Instant::now();
    let mut child = wasmkube()?
        .args([
            "node",
            "--node-name",
            NODE,
            "--bridge",
            BRIDGE,
            "--pod-network",
            POD_NETWORK,
        ])
        .arg("--kubeconfig")
        .arg(dir.join("kubeconfig"))
        .arg("--node-dir")
        .arg(dir.join("node"))
        .arg("--log-dir")
        .arg(dir.join("logs"))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the node agent")?;
    let stderr = child.stderr.take().context("the agent's stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let line = line?;
        if line.contains("adopted the running containers") {
            let running = line
                .split("running=")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let elapsed = began.elapsed();
            // The agent's warnings tell why a figure is off (a failed start, a slow stop).
            std::thread::spawn(move || {
                for line in lines.map_while(Result::ok) {
                    if line.contains(" WARN ") || line.contains(" ERROR ") {
                        eprintln!("agent: {line}");
                    }
                }
            });
            return Ok((Process(child), elapsed, running));
        }
    }
    bail!("the node agent ended before adopting its pods")
}

/// A busybox pod that sleeps an hour, on `node` (or wherever the scheduler puts it).
fn pod(name: &str, node: Option<&str>) -> Value {
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"terminationGracePeriodSeconds": 1,
            "containers": [{"name": "sleep", "image": "busybox", "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "3600"]}]}});
    if let Some(node) = node {
        pod["spec"]["nodeName"] = json!(node);
    }
    pod
}

pub(super) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

/// Creates `names` on `node` (unscheduled when `None`), all at once when `burst`, else each after
/// the previous runs, and returns each pod's time from its create request to the status that
/// says Running.
pub(super) async fn start_pods(
    api: &Api,
    node: Option<&str>,
    names: &[String],
    burst: bool,
) -> anyhow::Result<Vec<Duration>> {
    let path = format!("/api/v1/namespaces/{NAMESPACE}/pods");
    let (_, version) = api.list(&path).await?;
    let mut watch = api.watch(&path, &version).await?;
    let mut sent: HashMap<String, Instant> = HashMap::new();
    let mut latencies = Vec::new();
    let mut pending = names.iter();
    let create = |name: &String| {
        let api = api.clone();
        let path = path.clone();
        let body = pod(name, node);
        async move { api.create(&path, &body).await }
    };
    if burst {
        let now = Instant::now();
        let creates: Vec<_> = names.iter().map(create).collect();
        for name in names {
            sent.insert(name.clone(), now);
        }
        for result in futures::future::join_all(creates).await {
            result?;
        }
    } else if let Some(name) = pending.next() {
        sent.insert(name.clone(), Instant::now());
        create(name).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while latencies.len() < names.len() {
        let event = tokio::time::timeout_at(deadline.into(), watch.next())
            .await
            .context("pods did not all start within 300 s")?
            .context("the watch ended")??;
        let name = event.object.name();
        let running = event
            .object
            .pointer("/status/phase")
            .and_then(Value::as_str)
            == Some("Running");
        if running && let Some(at) = sent.remove(name) {
            latencies.push(at.elapsed());
            if !burst && let Some(next) = pending.next() {
                sent.insert(next.clone(), Instant::now());
                create(next).await?;
            }
        }
    }
    latencies.sort();
    Ok(latencies)
}

/// Deletes `names` and waits until the apiserver has none left (the agent has stopped them).
pub(super) async fn delete_pods(api: &Api, names: &[String]) -> anyhow::Result<()> {
    for name in names {
        api.delete(&format!("/api/v1/namespaces/{NAMESPACE}/pods/{name}"), 1)
            .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while !api
        .list(&format!("/api/v1/namespaces/{NAMESPACE}/pods"))
        .await?
        .0
        .is_empty()
    {
        if Instant::now() > deadline {
            bail!("pods were not all deleted within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// A field in KiB of /proc/PID/status (`VmRSS`, `RssAnon`…).
pub(super) fn status_kb(status: &str, field: &str) -> anyhow::Result<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("{field} in /proc/PID/status"))
}

/// Clock ticks per second of the CPU times in /proc (`USER_HZ`, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// CPU time (clock ticks) spent by every process on the machine, from the `cpu` line of
/// /proc/stat: user, nice, system, irq, softirq and steal (not idle nor iowait; guest time is
/// already counted in user).
fn machine_busy_ticks() -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let times: Vec<u64> = stat
        .lines()
        .find_map(|l| l.strip_prefix("cpu "))
        .context("the cpu line of /proc/stat")?
        .split_whitespace()
        .map(|t| t.parse().context("a CPU time in /proc/stat"))
        .collect::<anyhow::Result<_>>()?;
    Ok([0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| times.get(i).copied().unwrap_or(0))
        .sum())
}

/// The process's resident set (KiB) and CPU time (clock ticks) from /proc.
fn usage(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = status_kb(&status, "VmRSS")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = fields
        .get(11)
        .and_then(|u| u.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
    Ok((rss, ticks))
}

pub async fn run(args: NodeArgs) -> anyhow::Result<()> {
    let _network = PodNetwork::new(BRIDGE);
    let dir = tempfile::tempdir()?;
    let _server = Process(
        wasmkube()?
            .args([
                "server",
                "--port",
                "0",
                "--cluster-cidr",
                POD_NETWORK,
                "--data-dir",
            ])
            .arg(dir.path())
            .stderr(Stdio::null())
            .stdout(Stdio::null())
            .spawn()?,
    );
    let kubeconfig = dir.path().join("kubeconfig");
    while !kubeconfig.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let api = Api::new(&Connection::from_kubeconfig(&kubeconfig)?)?;
    let containerd = wasmkube_node::containerd::Containerd::connect(&args.containerd).await?;
    wasmkube_node::image::import(&containerd, &args.image).await?;
    let (agent, _, _) = start_agent(dir.path())?;

    let burst: Vec<String> = (0..args.pods).map(|i| format!("burst-{i:03}")).collect();
    let busy_before = machine_busy_ticks()?;
    let at_once = start_pods(&api, Some(NODE), &burst, true).await?;
    let busy_ticks = machine_busy_ticks()?.saturating_sub(busy_before);
    let cpu_ms_per_pod = busy_ticks as f64 / TICKS_PER_SEC * 1000.0 / args.pods.max(1) as f64;

    let (rss_before, ticks_before) = usage(agent.0.id())?;
    tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
    let (rss, ticks_after) = usage(agent.0.id())?;
    let cpu_percent =
        (ticks_after - ticks_before) as f64 / TICKS_PER_SEC / args.idle_seconds as f64 * 100.0;

    drop(agent);
    let (agent, adopt_wall, adopted) = start_agent(dir.path())?;

    delete_pods(&api, &burst).await?;
    let serial: Vec<String> = (0..args.pods).map(|i| format!("serial-{i:03}")).collect();
    let one_by_one = start_pods(&api, Some(NODE), &serial, false).await?;
    delete_pods(&api, &serial).await?;
    drop(agent);

    let row = |label: &str, l: &[Duration]| {
        println!(
            "  {label:<12} p50 {:>7.1} ms   p99 {:>7.1} ms   max {:>7.1} ms",
            percentile(l, 50.0),
            percentile(l, 99.0),
            percentile(l, 100.0)
        );
    };
    println!(
        "node: pod start (create with nodeName → Running, image present), {} pods",
        args.pods
    );
    row("at once", &at_once);
    println!(
        "  {:<12} {cpu_ms_per_pod:.1} ms of CPU per pod (every process on the machine, from /proc/stat)",
        "at once"
    );
    row("one by one", &one_by_one);
    println!(
        "  idle agent with {} pods: RSS {:.1} MB (was {:.1} MB after the start), CPU {:.2} % over {} s",
        args.pods,
        rss as f64 / 1024.0,
        rss_before as f64 / 1024.0,
        cpu_percent,
        args.idle_seconds
    );
    println!(
        "  agent restarted: {adopted} running containers adopted {:.0} ms after it started",
        adopt_wall.as_secs_f64() * 1000.0
    );
    println!(
        "{}",
        json!({"pods": args.pods,
            "at_once_p50_ms": percentile(&at_once, 50.0), "at_once_p99_ms": percentile(&at_once, 99.0),
            "cpu_ms_per_pod": cpu_ms_per_pod,
            "one_by_one_p50_ms": percentile(&one_by_one, 50.0), "one_by_one_p99_ms": percentile(&one_by_one, 99.0),
            "idle_rss_mb": rss as f64 / 1024.0, "idle_cpu_percent": cpu_percent,
            "adopted": adopted, "adopt_ms": adopt_wall.as_secs_f64() * 1000.0})
    );
    if adopted != args.pods as u64 {
        bail!(
            "the restarted agent adopted {adopted} of {} running containers",
            args.pods
        );
    }
    Ok(())
}
