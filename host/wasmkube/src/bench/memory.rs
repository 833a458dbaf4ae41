//! `wasmkube bench memory`: the resident memory of a real `wasmkube up`, idle and with pods.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use containerd_client::services::v1::ListContainersRequest;
use serde_json::{Value, json};
use wasmkube_node::api::{Api, Connection};
use wasmkube_node::containerd::Containerd;

use super::node::{PodNetwork, Process, delete_pods, start_pods, status_kb, wasmkube};

const NODE: &str = "bench-memory";
const BRIDGE: &str = "wkmem0";
/// A pod network of its own, apart from `wasmkube up`'s default and `bench node`'s.
const POD_NETWORK: &str = "10.247.0.0/16";
const PLUGINS: &str = "/apis/wasmkube.dev/v1alpha1/plugins";

#[derive(clap::Args)]
pub struct MemoryArgs {
    /// Pods run at once (busybox `sleep 3600`).
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Seconds `wasmkube up` idles before each sample.
    #[arg(long, default_value_t = 30)]
    idle_seconds: u64,
    /// The apiserver's port.
    #[arg(long, default_value_t = 16443)]
    port: u16,
    #[arg(long, default_value = "/run/wasmkube/containerd.sock")]
    containerd: PathBuf,
    /// The image archive imported first.
    #[arg(long, default_value = "target/images/busybox.tar")]
    image: PathBuf,
    /// Write a jemalloc heap profile of `wasmkube up` into this directory at each sample (a
    /// binary built with `--features heap-profile`; profiling adds its own memory to the figures).
    #[arg(long)]
    heap_profile: Option<PathBuf>,
}

/// jemalloc's profiler on, one sample per 64 KiB allocated on average.
const PROFILE_CONF: &str = "prof:true,lg_prof_sample:16";

/// Resident memory of a process in KiB: all of it, anonymous and file-backed; and its threads.
#[derive(Clone, Copy)]
struct Rss {
    total: u64,
    anon: u64,
    file: u64,
    threads: u64,
}

impl Rss {
    fn of(pid: u32) -> anyhow::Result<Rss> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        Ok(Rss {
            total: status_kb(&status, "VmRSS")?,
            anon: status_kb(&status, "RssAnon")?,
            file: status_kb(&status, "RssFile")? + status_kb(&status, "RssShmem")?,
            // A count, not KiB, but the line reads the same way.
            threads: status_kb(&status, "Threads")?,
        })
    }
}

/// Idles `seconds`, then samples; returns the sample and the peak total seen each second. With
/// `--heap-profile`, asks the process for a heap profile (SIGUSR2) after sampling.
async fn idle(args: &MemoryArgs, pid: u32) -> anyhow::Result<(Rss, u64)> {
    let mut peak = 0;
    for _ in 0..args.idle_seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        peak = peak.max(Rss::of(pid)?.total);
    }
    let rss = Rss::of(pid)?;
    if args.heap_profile.is_some() {
        let status = tokio::process::Command::new("kill")
            .args(["-USR2", &pid.to_string()])
            .status()
            .await?;
        if !status.success() {
            bail!("kill -USR2 {pid}: {status}");
        }
        // The profile is written by the process's runtime; give it a moment before moving on.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok((rss, peak.max(rss.total)))
}

/// Waits until the Node is Ready (with a heartbeat at or after `since`, RFC 3339 in seconds as
/// the agent writes it; "" for any) and every Plugin is Running.
async fn wait_ready(api: &Api, since: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let node = api.get(&format!("/api/v1/nodes/{NODE}")).await?;
        let ready = node
            .as_ref()
            .and_then(|n| n.pointer("/status/conditions")?.as_array())
            .into_iter()
            .flatten()
            .any(|c| {
                c["type"] == "Ready"
                    && c["status"] == "True"
                    && c["lastHeartbeatTime"].as_str().unwrap_or_default() >= since
            });
        let (plugins, _) = api.list(PLUGINS).await?;
        let running = !plugins.is_empty()
            && plugins
                .iter()
                .all(|p| p.pointer("/status/phase").and_then(Value::as_str) == Some("Running"));
        if ready && running {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the node was not Ready with every plugin Running within 180 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until containerd holds no container of the bench's node.
async fn wait_no_containers(containerd: &Containerd) -> anyhow::Result<()> {
    let filter = format!("labels.\"{}\"=={NODE}", wasmkube_node::pod::LABEL_NODE);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = containerd
            .containers()
            .list(containerd.request(ListContainersRequest {
                filters: vec![filter.clone()],
            }))
            .await?
            .into_inner()
            .containers
            .len();
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{left} containers of the deleted pods are still in containerd after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until a restarted `wasmkube up` answers (it keeps the first start's identity, so `api`
/// still fits).
async fn wait_served(api: &Api, up: &mut Process) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while api.get("/version").await.is_err() {
        if let Some(status) = up.0.try_wait()? {
            bail!("the restarted wasmkube up ended before it served: {status}");
        }
        if Instant::now() > deadline {
            bail!("the restarted wasmkube up did not serve within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Starts `wasmkube up` on the bench's directories; its log is appended to `up.log`.
fn start_up(args: &MemoryArgs, dir: &Path) -> anyhow::Result<Process> {
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(dir.join("up.log"))?;
    let mut child = wasmkube()?;
    child
        .args(["up", "--port", &args.port.to_string()])
        .args(["--cluster-cidr", POD_NETWORK, "--pod-network", POD_NETWORK])
        .args(["--node-name", NODE, "--bridge", BRIDGE, "--agent-port", "0"])
        .arg("--containerd")
        .arg(&args.containerd)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--node-dir")
        .arg(dir.join("node"))
        .arg("--log-dir")
        .arg(dir.join("logs"))
        .env("NO_COLOR", "1")
        .env("RUST_LIB_BACKTRACE", "0")
        .stdout(Stdio::null())
        .stderr(log);
    if let Some(profiles) = &args.heap_profile {
        child
            .env("_RJEM_MALLOC_CONF", PROFILE_CONF)
            .env("WASMKUBE_HEAP_PROFILE_DIR", profiles);
    }
    let child = child.spawn().context("starting wasmkube up")?;
    Ok(Process(child))
}

async fn measure(args: &MemoryArgs, dir: &Path) -> anyhow::Result<Value> {
    let mut up = start_up(args, dir)?;
    let pid = up.0.id();
    let kubeconfig = dir.join("data/kubeconfig");
    while !kubeconfig.exists() {
        if let Some(status) = up.0.try_wait()? {
            bail!("wasmkube up ended before it served: {status}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let api = Api::new(&Connection::from_kubeconfig(&kubeconfig)?)?;
    let containerd = Containerd::connect(&args.containerd).await?;
    wasmkube_node::image::import(&containerd, &args.image).await?;
    let started = Instant::now();
    wait_ready(&api, "").await?;
    let ready_after = started.elapsed();
    let (idle_rss, idle_peak) = idle(args, pid).await?;

    let names: Vec<String> = (0..args.pods).map(|i| format!("mem-{i:03}")).collect();
    start_pods(&api, None, &names, true).await?;
    let (pods_rss, pods_peak) = idle(args, pid).await?;
    delete_pods(&api, &names).await?;
    wait_no_containers(&containerd).await?;
    let after_rss = Rss::of(pid)?;
    drop(up);

    // A restart on the same data directory (killed, as a stop without a clean shutdown): the
    // built-ins are current and compiled, so it installs and compiles nothing.
    let restarted = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut up = start_up(args, dir)?;
    let restart_pid = up.0.id();
    wait_served(&api, &mut up).await?;
    wait_ready(&api, &restarted).await?;
    let (restart_rss, restart_peak) = idle(args, restart_pid).await?;
    drop(up);

    let mb = |kb: u64| kb as f64 / 1024.0;
    let row = |label: &str, r: Rss, peak: u64| {
        println!(
            "  {label:<18} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8}",
            mb(r.total),
            mb(r.anon),
            mb(r.file),
            mb(peak),
            r.threads
        );
    };
    println!(
        "memory: wasmkube up (pid {pid}), MB; ready {:.1} s after the image import, {} s idle before each sample",
        ready_after.as_secs_f64(),
        args.idle_seconds
    );
    println!(
        "  {:<18} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "", "RSS", "anon", "file", "peak", "threads"
    );
    row("idle", idle_rss, idle_peak);
    row(&format!("{} pods running", args.pods), pods_rss, pods_peak);
    row("pods deleted", after_rss, after_rss.total);
    row("restarted, idle", restart_rss, restart_peak);
    let figures = json!({"pods": args.pods, "idle_seconds": args.idle_seconds,
        "rss_idle_mb": mb(idle_rss.total), "rss_anon_idle_mb": mb(idle_rss.anon),
        "rss_file_idle_mb": mb(idle_rss.file), "rss_idle_peak_mb": mb(idle_peak),
        "rss_100_pods_mb": mb(pods_rss.total), "rss_anon_100_pods_mb": mb(pods_rss.anon),
        "rss_file_100_pods_mb": mb(pods_rss.file), "rss_100_pods_peak_mb": mb(pods_peak),
        "rss_after_delete_mb": mb(after_rss.total), "ready_secs": ready_after.as_secs_f64(),
        "rss_restart_idle_mb": mb(restart_rss.total), "rss_anon_restart_idle_mb": mb(restart_rss.anon),
        "rss_file_restart_idle_mb": mb(restart_rss.file), "rss_restart_idle_peak_mb": mb(restart_peak),
        "threads_idle": idle_rss.threads, "threads_100_pods": pods_rss.threads,
        "threads_restart_idle": restart_rss.threads});
    Ok(figures)
}

pub async fn run(args: MemoryArgs) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("wasmkube-bench-memory-")
        .tempdir()?;
    let network = PodNetwork::new(BRIDGE);
    let result = measure(&args, dir.path()).await;
    drop(network);
    if let Some(profiles) = &args.heap_profile {
        // Its lines say what each profile's jemalloc totals were.
        let kept = profiles.join("up.log");
        if let Err(error) = std::fs::copy(dir.path().join("up.log"), &kept) {
            eprintln!("memory: up.log not kept as {}: {error}", kept.display());
        }
    }
    match result {
        Ok(figures) => {
            println!("{figures}");
            Ok(())
        }
        Err(error) => {
            let log = std::fs::read_to_string(dir.path().join("up.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            for line in tail.into_iter().rev() {
                eprintln!("up: {line}");
            }
            Err(error)
        }
    }
}
