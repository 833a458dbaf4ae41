//! `wasmkube bench scheduler`: the real scheduler against an in-process host with hollow nodes
//! and a stream of pending pods, its policy in Wasm or native; optionally a policy swap in the
//! middle, with a census proving every pod was bound exactly once.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use wasmkube_apiserver::Server;
use wasmkube_apiserver::plugin_logs::{Role, Version};
use wasmkube_controller::Manager;
use wasmkube_controller::module::{self, PluginKind};
use wasmkube_policy_default::DefaultPolicy;
use wasmkube_runtime::Runtime;
use wasmkube_scheduler::policy::NativePolicy;
use wasmkube_scheduler::source::{self, Native, Source};

use super::cluster::{create, fresh_server};
use super::hollow;

#[derive(clap::Args)]
pub struct SchedulerArgs {
    /// Hollow nodes.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=20_000))]
    nodes: u64,
    /// Pending pods created (as fast as the API takes them, or at `--rate`).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=200_000))]
    pods: u64,
    /// Where the policy runs; `both` runs Wasm then native, in fresh clusters, and compares.
    #[arg(long, value_enum, default_value = "both")]
    policy: PolicyChoice,
    /// `plain` pods, or pods in groups of 10 with required anti-affinity per node and a zone
    /// topology spread (maxSkew 1).
    #[arg(long, value_enum, default_value = "plain")]
    workload: Workload,
    /// Pods created per second (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Swap the policy (a profile adding the PreferLabel example) a third of the way through,
    /// and back at two thirds; report how soon each took effect.
    #[arg(long)]
    swap: bool,
    /// Where the built plugins are (`scripts/build-plugins.sh`).
    #[arg(long, default_value = "target/plugins/wasm32-wasip2/release")]
    plugins: PathBuf,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum PolicyChoice {
    Wasm,
    Native,
    Both,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum Workload {
    Plain,
    Spread,
}

/// Nodes carrying this label are the ones the PreferLabel example prefers during a swap.
const PREFERRED: (&str, &str) = ("bench.wasmkube.dev/preferred", "true");
const ZONES: usize = 10;
const PHASE_LIMIT: Duration = Duration::from_secs(600);

/// What one run measured.
struct Figures {
    pods_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    seconds: f64,
    /// Write → in force, for each swap.
    swaps_ms: Vec<f64>,
    /// Pods bound to preferred nodes while the PreferLabel profile was in force, and in all.
    preferred_during_swap: u64,
    bound: u64,
    errors: u64,
}

fn pod(i: u64, workload: Workload) -> Value {
    let mut pod = json!({"metadata": {"name": format!("pod-{i:06}"), "labels": {"bench": "scheduler"}},
        "spec": {"containers": [{"name": "c", "image": "busybox",
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}});
    if workload == Workload::Spread {
        let group = format!("group-{}", i / 10);
        let selector = json!({"matchLabels": {"app": group}});
        pod["metadata"]["labels"]["app"] = json!(group);
        pod["spec"]["topologySpreadConstraints"] = json!([{"maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": selector}]);
        pod["spec"]["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "kubernetes.io/hostname", "labelSelector": selector}]}});
    }
    pod
}

/// The profile a swap installs: the default policy, then PreferLabel scoring preferred nodes.
fn swap_profile() -> Value {
    json!({"apiVersion": "wasmkube.dev/v1alpha1", "kind": "SchedulerProfile",
        "metadata": {"name": "default-scheduler"},
        "spec": {"policies": [
            {"plugin": "default"},
            {"plugin": "preferlabel", "scores": [{"name": "PreferLabel", "weight": 100,
                "args": {"key": PREFERRED.0, "value": PREFERRED.1}}]}]}})
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

/// The nodes of the pods bound so far, as the informer sees them (a census, not a progress
/// check: it copies every pod's node name).
fn census(manager: &Manager, server: &Server) -> Vec<String> {
    let Some(pods) = server.registry().by_kind("v1", "Pod").cloned() else {
        return Vec::new();
    };
    let list = manager.informer(&pods).list(Some("default"));
    list.iter()
        .filter_map(|p| p["spec"]["nodeName"].as_str().map(String::from))
        .collect()
}

async fn run_once(args: &SchedulerArgs, wasm: bool) -> anyhow::Result<Figures> {
    let (dir, server) = fresh_server().await?;
    let manager = Manager::new(server.clone());
    let nodes = usize::try_from(args.nodes)?;
    eprintln!("bench: {nodes} hollow nodes…");
    let _hollow = hollow::start(&server, &manager, nodes, ZONES, |i| {
        (i % 10 == 0).then(|| (PREFERRED.0.to_string(), PREFERRED.1.to_string()))
    })
    .await?;

    let source: Arc<dyn Source> = if wasm {
        let runtime = Arc::new(Runtime::new(dir.path().join("cache"))?);
        for (name, file) in [
            ("default", "wasmkube_policy_default"),
            ("preferlabel", "wasmkube_policy_preferlabel"),
        ] {
            let path = args.plugins.join(format!("{file}.wasm"));
            let bytes = std::fs::read(&path).with_context(|| {
                format!("reading {} (run scripts/build-plugins.sh)", path.display())
            })?;
            module::install(&server, name, PluginKind::Scheduler, &bytes).await?;
            runtime.load(&bytes)?; // compiled before the clock starts, as a running cluster would have
        }
        Arc::new(source::Plugins {
            server: server.clone(),
            manager: manager.clone(),
            runtime,
        })
    } else {
        let log = (server.plugin_logs).writer("default", Version::new(Role::Active, "native"));
        let host = source::policy_host("default", log, &server, &manager);
        let prefer_host = host.clone();
        Arc::new(
            Native::default()
                .with(
                    "default",
                    Box::new(move || Box::new(NativePolicy::<DefaultPolicy>::new(host.clone()))),
                )
                .with(
                    "preferlabel",
                    Box::new(move || {
                        Box::new(
                            NativePolicy::<wasmkube_policy_preferlabel::PreferLabel>::new(
                                prefer_host.clone(),
                            ),
                        )
                    }),
                ),
        )
    };
    let scheduler = wasmkube_scheduler::start(server.clone(), manager.clone(), source)
        .await
        .context("starting the scheduler")?;
    let mut swaps = scheduler.shared.swaps_applied.subscribe();
    swaps.wait_for(|n| *n >= 1).await?;
    scheduler.shared.stats().latencies = Some(Vec::new());

    eprintln!(
        "bench: {} pods ({} policy)…",
        args.pods,
        if wasm { "Wasm" } else { "native" }
    );
    let total = args.pods;
    let started = Instant::now();
    let creator = {
        let (server, rate, workload) = (server.clone(), args.rate, args.workload);
        tokio::spawn(async move {
            let permits = Arc::new(tokio::sync::Semaphore::new(8));
            for i in 0..total {
                if rate > 0 {
                    let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let server = server.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let _ = create(&server, "v1", "Pod", Some("default"), pod(i, workload)).await;
                });
            }
        })
    };

    let mut swaps_ms = Vec::new();
    let mut preferred_during_swap = 0;
    loop {
        let done = scheduler.shared.stats().scheduled;
        if args.swap && swaps_ms.is_empty() && done >= total / 3 {
            let before = *swaps.borrow();
            let written = Instant::now();
            create(
                &server,
                "wasmkube.dev/v1alpha1",
                "SchedulerProfile",
                None,
                swap_profile(),
            )
            .await?;
            swaps.wait_for(|n| *n > before).await?;
            swaps_ms.push(written.elapsed().as_secs_f64() * 1000.0);
        }
        if args.swap && swaps_ms.len() == 1 && done >= 2 * total / 3 {
            preferred_during_swap = census(&manager, &server)
                .iter()
                .filter(|n| {
                    n.trim_start_matches("hollow-")
                        .parse::<usize>()
                        .is_ok_and(|i| i % 10 == 0)
                })
                .count() as u64;
            let before = *swaps.borrow();
            let written = Instant::now();
            let info = server
                .registry()
                .get("wasmkube.dev", "v1alpha1", "schedulerprofiles")
                .cloned()
                .context("profiles are served")?;
            wasmkube_apiserver::registry::delete_object(
                &server,
                &info,
                None,
                "default-scheduler",
                &wasmkube_apiserver::registry::DeleteOptions::background(),
            )
            .await?;
            swaps.wait_for(|n| *n > before).await?;
            swaps_ms.push(written.elapsed().as_secs_f64() * 1000.0);
        }
        if done >= total {
            break;
        }
        if started.elapsed() > PHASE_LIMIT {
            bail!("only {done} of {total} pods bound after {PHASE_LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    creator.await?;
    // The informer catches up with the last bindings; then every pod must be on a node.
    let mut placed = 0;
    for _ in 0..200 {
        placed = census(&manager, &server).len() as u64;
        if placed == total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (mut latencies, errors, bound_count) = {
        let mut stats = scheduler.shared.stats();
        (
            stats.latencies.take().unwrap_or_default(),
            stats.errors,
            stats.scheduled,
        )
    };
    latencies.sort();
    Ok(Figures {
        pods_per_sec: total as f64 / seconds,
        p50_ms: percentile(&latencies, 50.0),
        p99_ms: percentile(&latencies, 99.0),
        seconds,
        swaps_ms,
        preferred_during_swap,
        bound: bound_count.min(placed),
        errors,
    })
}

pub async fn run(args: SchedulerArgs) -> anyhow::Result<()> {
    let order: &[bool] = match args.policy {
        PolicyChoice::Wasm => &[true],
        PolicyChoice::Native => &[false],
        PolicyChoice::Both => &[true, false],
    };
    let mut results = Vec::new();
    for &wasm in order {
        results.push((wasm, run_once(&args, wasm).await?));
    }
    let workload = match args.workload {
        Workload::Plain => "plain pods",
        Workload::Spread => "anti-affinity + topology spread",
    };
    println!(
        "scheduler: {} pods onto {} hollow nodes, {workload}",
        args.pods, args.nodes
    );
    for (wasm, f) in &results {
        println!(
            "  {:<7} {:>8.0} pods/s   p50 {:>8.1} ms   p99 {:>8.1} ms   ({:.2} s, {} bound, {} errors)",
            if *wasm { "Wasm" } else { "native" },
            f.pods_per_sec,
            f.p50_ms,
            f.p99_ms,
            f.seconds,
            f.bound,
            f.errors
        );
        if !f.swaps_ms.is_empty() {
            println!(
                "          swaps in force after {:?} ms; {} pods on preferred nodes (1 in 10) by the swap back",
                f.swaps_ms
                    .iter()
                    .map(|m| (m * 10.0).round() / 10.0)
                    .collect::<Vec<_>>(),
                f.preferred_during_swap
            );
        }
    }
    let first = &results[0].1;
    let mut json = json!({"nodes": args.nodes, "pods": args.pods, "workload": workload,
        "policy": if results[0].0 { "wasm" } else { "native" },
        "pods_per_sec": first.pods_per_sec, "p50_ms": first.p50_ms, "p99_ms": first.p99_ms,
        "bound": first.bound, "errors": first.errors});
    if let Some((_, native)) = results.get(1) {
        json["native_pods_per_sec"] = json!(native.pods_per_sec);
        json["native_p50_ms"] = json!(native.p50_ms);
        json["native_p99_ms"] = json!(native.p99_ms);
        json["wasm_native_ratio"] = json!(native.pods_per_sec / first.pods_per_sec);
    }
    if !first.swaps_ms.is_empty() {
        json["swap_in_force_ms"] = json!(first.swaps_ms);
        json["preferred_during_swap"] = json!(first.preferred_during_swap);
    }
    println!("{json}");
    if results.iter().any(|(_, f)| f.bound != args.pods) {
        bail!("pods were not all bound exactly once");
    }
    Ok(())
}
