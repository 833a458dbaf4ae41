//! `wasmkube bench controllers`: a Deployment of many replicas over simulated nodes, run by the Wasm controllers — scale-up, a rolling update, and a hot swap of the Deployment controller in the middle of one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use wasmkube_apiserver::Server;
use wasmkube_controller::informer::Change;
use wasmkube_controller::module::PluginKind;
use wasmkube_controller::{Manager, module, supervisor};
use wasmkube_model::meta::ResourceExt;
use wasmkube_runtime::Runtime;

use super::cluster::{create, fresh_server, modify};
use super::hollow;

#[derive(clap::Args)]
pub struct ControllersArgs {
    /// Replicas of the Deployment.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=20_000))]
    replicas: u64,
    /// Simulated nodes the pods are spread over.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=5000))]
    nodes: u64,
    /// Where the built plugins are (`scripts/build-plugins.sh`).
    #[arg(long, default_value = "target/plugins/wasm32-wasip2/release")]
    plugins: PathBuf,
}

/// Every phase gives up after this long.
const PHASE_LIMIT: Duration = Duration::from_secs(300);

/// The same component with a custom section appended: another digest, the same code — what a
/// rebuilt plugin looks like to the host.
fn rebuilt(bytes: &[u8], tag: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            out.push(if n == 0 { byte } else { byte | 0x80 });
            if n == 0 {
                break;
            }
        }
    }
    let name = b"wasmkube-bench";
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name);
    body.extend_from_slice(tag.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0);
    leb(body.len(), &mut out);
    out.extend(body);
    out
}

/// The scheduler's place: every pod without a node is bound to the next hollow node in turn
/// (the hollow nodes run it).
fn bind_pods(
    server: Arc<Server>,
    manager: &Manager,
    nodes: usize,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let pods = server
        .registry()
        .by_kind("v1", "Pod")
        .cloned()
        .context("pods are served")?;
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    manager
        .informer(&pods)
        .add_handler(Arc::new(move |change: &Change| {
            let pod = &change.object;
            let unbound = pod["spec"]["nodeName"].is_null();
            if !change.deleted && unbound && !pod.is_deleting() {
                let _ = tx.send(pod.name().to_string());
            }
        }));
    let next = Arc::new(AtomicUsize::new(0));
    Ok(tokio::spawn(async move {
        let permits = Arc::new(tokio::sync::Semaphore::new(8));
        while let Some(name) = rx.recv().await {
            let (server, next, permit) = (
                server.clone(),
                next.clone(),
                permits.clone().acquire_owned().await,
            );
            tokio::spawn(async move {
                let _permit = permit;
                let node = hollow::node_name(next.fetch_add(1, Ordering::Relaxed) % nodes);
                let _ = modify(&server, "v1", "Pod", Some("default"), &name, None, |p| {
                    if p["spec"]["nodeName"].is_null() {
                        p["spec"]["nodeName"] = json!(node);
                    }
                })
                .await;
            });
        }
    }))
}

async fn deployment(server: &Server) -> anyhow::Result<Value> {
    let info = server
        .registry()
        .by_kind("apps/v1", "Deployment")
        .cloned()
        .context("deployments are served")?;
    Ok(server
        .objects
        .must_get(&info, Some("default"), "web")
        .await?
        .object)
}

/// Waits until the Deployment has `replicas` updated, available pods and nothing old.
async fn rolled_out(server: &Server, replicas: u64, image: &str) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while start.elapsed() < PHASE_LIMIT {
        let d = deployment(server).await?;
        let n = |f: &str| d["status"][f].as_u64().unwrap_or(0);
        let current = d.pointer("/metadata/generation") == d.pointer("/status/observedGeneration");
        if current
            && n("replicas") == replicas
            && n("updatedReplicas") == replicas
            && n("availableReplicas") == replicas
            && d["spec"]["template"]["spec"]["containers"][0]["image"] == image
        {
            return Ok(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("the rollout to {image} did not finish within {PHASE_LIMIT:?}")
}

async fn set_image(server: &Server, image: &str) -> anyhow::Result<()> {
    modify(
        server,
        "apps/v1",
        "Deployment",
        Some("default"),
        "web",
        None,
        |d| d["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image),
    )
    .await
}

/// Pods that exist and are not being deleted, and ReplicaSets.
async fn census(server: &Server) -> anyhow::Result<(usize, Vec<(String, u64)>)> {
    let registry = server.registry();
    let pods = registry
        .by_kind("v1", "Pod")
        .cloned()
        .context("pods are served")?;
    let sets = registry
        .by_kind("apps/v1", "ReplicaSet")
        .cloned()
        .context("replicasets are served")?;
    let live = server
        .objects
        .list(&pods, Some("default"), None, None, None, |p| {
            !p.is_deleting()
        })
        .await?
        .items
        .len();
    let rs = server
        .objects
        .list(&sets, Some("default"), None, None, None, |_| true)
        .await?
        .items;
    Ok((
        live,
        rs.iter()
            .map(|r| {
                (
                    r["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    r["spec"]["replicas"].as_u64().unwrap_or(0),
                )
            })
            .collect(),
    ))
}

fn read_plugin(dir: &Path, name: &str) -> anyhow::Result<Vec<u8>> {
    let path = dir.join(format!("wasmkube_plugin_{name}.wasm"));
    std::fs::read(&path)
        .with_context(|| format!("reading {} (run scripts/build-plugins.sh)", path.display()))
}

pub async fn run(args: ControllersArgs) -> anyhow::Result<()> {
    let (dir, server) = fresh_server().await?;
    let manager = Manager::new(server.clone());
    let nodes = usize::try_from(args.nodes)?;
    let _hollow = hollow::start(&server, &manager, nodes, 1, |_| None).await?;
    let _binder = bind_pods(server.clone(), &manager, nodes)?;
    let runtime = Arc::new(Runtime::new(dir.path().join("cache"))?);
    let _supervisor = supervisor::spawn(server.clone(), manager.clone(), runtime);
    let deploy_bytes = read_plugin(&args.plugins, "deployment")?;
    module::install(
        &server,
        "replicaset",
        PluginKind::Controller,
        &read_plugin(&args.plugins, "replicaset")?,
    )
    .await?;
    module::install(&server, "deployment", PluginKind::Controller, &deploy_bytes).await?;

    eprintln!(
        "bench: a Deployment of {} replicas over {} simulated nodes…",
        args.replicas, args.nodes
    );
    let n = args.replicas;
    let deploy = json!({"metadata": {"name": "web"}, "spec": {"replicas": n, "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "busybox:1"}]}}}});
    let start = Instant::now();
    create(&server, "apps/v1", "Deployment", Some("default"), deploy).await?;
    let scale_up = start.elapsed() + rolled_out(&server, n, "busybox:1").await?;

    eprintln!("bench: a rolling update…");
    set_image(&server, "busybox:2").await?;
    let rolling_update = rolled_out(&server, n, "busybox:2").await?;

    eprintln!(
        "bench: a rolling update with a hot swap of the Deployment controller in the middle…"
    );
    set_image(&server, "busybox:3").await?;
    let swap_start = Instant::now();
    while deployment(&server).await?["status"]["updatedReplicas"]
        .as_u64()
        .unwrap_or(0)
        < n / 4
    {
        if swap_start.elapsed() > PHASE_LIMIT {
            bail!("the third rollout never got a quarter of the way");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let new_module = rebuilt(&deploy_bytes, "v2");
    let new_digest = module::digest(&new_module);
    let written = Instant::now();
    module::install(&server, "deployment", PluginKind::Controller, &new_module).await?;
    let plugins = server
        .registry()
        .get("wasmkube.dev", "v1alpha1", "plugins")
        .cloned()
        .context("plugins are served")?;
    loop {
        let p = server
            .objects
            .must_get(&plugins, None, "deployment")
            .await?
            .object;
        if p["status"]["activeDigest"] == new_digest.as_str() && p["status"]["phase"] == "Running" {
            break;
        }
        if written.elapsed() > PHASE_LIMIT {
            bail!(
                "the new Deployment controller never took over: {:#}",
                p["status"]
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let swap_in_force = written.elapsed();
    let swapped_rollout = swap_start.elapsed() + rolled_out(&server, n, "busybox:3").await?;
    let (live_pods, sets) = census(&server).await?;
    let scaled_sets: Vec<&(String, u64)> = sets.iter().filter(|(_, r)| *r > 0).collect();
    let nothing_lost =
        live_pods as u64 == n && scaled_sets.len() == 1 && scaled_sets[0].1 == n && sets.len() == 3;

    let metrics = server.metrics.render();
    let deployment_us = mean_reconcile_us(&metrics, "deployment");
    let replicaset_us = mean_reconcile_us(&metrics, "replicaset");
    let secs = |d: Duration| d.as_secs_f64();
    println!(
        "Deployment of {n} replicas over {} simulated nodes, ReplicaSet and Deployment controllers in Wasm",
        args.nodes
    );
    println!(
        "  create → all pods bound, running, available   {:>9.3} s",
        secs(scale_up)
    );
    println!(
        "  rolling update (25% surge, 25% unavailable)  {:>9.3} s",
        secs(rolling_update)
    );
    println!(
        "  rolling update with a controller hot swap    {:>9.3} s",
        secs(swapped_rollout)
    );
    println!(
        "  hot swap: write → new module in force        {:>9.3} s",
        secs(swap_in_force)
    );
    println!(
        "  mean reconcile, host calls included: Deployment {deployment_us:.0} µs, ReplicaSet {replicaset_us:.0} µs"
    );
    println!(
        "  after it: {live_pods} live pods, ReplicaSets {sets:?}: {}",
        if nothing_lost {
            "nothing lost or doubled"
        } else {
            "MISMATCH"
        }
    );
    println!(
        "{}",
        json!({"replicas": n, "nodes": args.nodes, "scale_up_s": secs(scale_up), "rolling_update_s": secs(rolling_update),
            "rolling_update_with_swap_s": secs(swapped_rollout), "swap_in_force_ms": swap_in_force.as_secs_f64() * 1000.0,
            "live_pods": live_pods, "replicasets": sets.len(), "nothing_lost": nothing_lost,
            "deployment_reconcile_mean_us": deployment_us, "replicaset_reconcile_mean_us": replicaset_us})
    );
    if !nothing_lost {
        bail!("pods or ReplicaSets do not add up after the swap");
    }
    Ok(())
}

/// A plugin's mean reconcile time in µs (Wasm and host calls, API writes included), from the
/// `wasmkube_plugin_reconcile_duration_seconds` histogram in the server's metrics text.
fn mean_reconcile_us(metrics: &str, plugin: &str) -> f64 {
    let value = |series: &str| {
        let prefix =
            format!("wasmkube_plugin_reconcile_duration_seconds_{series}{{plugin=\"{plugin}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let count = value("count");
    if count == 0.0 {
        0.0
    } else {
        value("sum") / count * 1e6
    }
}
