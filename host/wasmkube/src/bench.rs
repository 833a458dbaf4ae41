//! `wasmkube bench`: measures the control plane, prints aligned tables and then one JSON line.

mod all;
mod api;
mod client;
mod cluster;
mod controllers;
mod dns;
mod hollow;
mod memory;
mod node;
mod rbac;
mod report;
mod scheduler;
mod services;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tempfile::TempDir;
use wasmkube_store::Store;
use wasmkube_store::bench::{BenchOptions, BenchRow};
use wasmkube_store::etcd::testing::EtcdServer;

use crate::server::open_store;

#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    target: BenchTarget,
}

#[derive(clap::Subcommand)]
enum BenchTarget {
    /// Every other benchmark in turn, as child processes, then one table of each figure against
    /// its target (DESIGN.md §3) and one JSON line.
    All(all::AllArgs),
    /// The store alone, then the Kubernetes API over HTTPS, on the embedded store and on etcd.
    Api(ApiArgs),
    /// A large Deployment run by the Wasm controllers over simulated nodes, with a hot swap.
    Controllers(controllers::ControllersArgs),
    /// The scheduler over hollow nodes: pods per second and latency, Wasm and native policy.
    Scheduler(scheduler::SchedulerArgs),
    /// A real node agent (containerd, CNI): pod start latency, idle RSS and CPU, adoption.
    Node(node::NodeArgs),
    /// The resident memory of a real `wasmkube up`, idle and with 100 running pods.
    Memory(memory::MemoryArgs),
    /// The node agent's DNS server with many Services: queries per second and latency.
    Dns(dns::DnsArgs),
    /// The node agent's service proxy on nftables: 1000 Services × 10 endpoints programmed, then
    /// EndpointSlice changes timed until their rules are in force.
    Services(services::ServicesArgs),
    /// Many watchers of one resource, on the store itself and through the watch cache: events
    /// delivered per second and memory.
    Watch(watch::WatchArgs),
}

#[derive(clap::Args)]
struct ApiArgs {
    /// ConfigMaps created, read, listed, updated and deleted through the API.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    objects: u64,
    /// Concurrent clients of the closed-loop phases.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
    concurrency: u64,
    /// Which store to measure.
    #[arg(long, value_enum, default_value = "both")]
    store: StoreChoice,
    /// Seconds each timed phase runs (the fixed-rate phases and the store's closed loops).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    duration_secs: u64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum StoreChoice {
    Embedded,
    Etcd,
    Both,
}

/// One store implementation under test.
#[derive(Clone, Copy, PartialEq)]
enum Backend {
    Embedded,
    Etcd,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Embedded => "embedded",
            Backend::Etcd => "etcd",
        }
    }
}

/// The rows measured on each backend, in the order run.
type Results = Vec<(Backend, Vec<BenchRow>)>;

/// A fresh store in a temporary directory (beside a fresh etcd for [`Backend::Etcd`]); the
/// fields drop in order, so the store is closed before etcd is killed.
struct Backing {
    store: Arc<dyn Store>,
    dir: TempDir,
    _etcd: Option<EtcdServer>,
}

impl Backing {
    async fn open(backend: Backend) -> anyhow::Result<Backing> {
        let dir = tempfile::Builder::new()
            .prefix("wasmkube-bench-")
            .tempdir()
            .context("creating a temporary directory")?;
        let (spec, etcd) = match backend {
            Backend::Embedded => ("embedded".to_owned(), None),
            Backend::Etcd => {
                let etcd = EtcdServer::start().await.context("starting etcd")?;
                let address = etcd.endpoint().trim_start_matches("http://").to_owned();
                (format!("etcd://{address}"), Some(etcd))
            }
        };
        let store = open_store(&spec, &Default::default(), dir.path()).await?;
        Ok(Backing {
            store,
            dir,
            _etcd: etcd,
        })
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.target {
        BenchTarget::All(args) => all::run(args).await,
        BenchTarget::Api(args) => run_api(args).await,
        BenchTarget::Controllers(args) => controllers::run(args).await,
        BenchTarget::Scheduler(args) => scheduler::run(args).await,
        BenchTarget::Node(args) => node::run(args).await,
        BenchTarget::Memory(args) => memory::run(args).await,
        BenchTarget::Dns(args) => dns::run(args).await,
        BenchTarget::Services(args) => services::run(args).await,
        BenchTarget::Watch(args) => watch::run(args).await,
    }
}

async fn run_api(args: ApiArgs) -> anyhow::Result<()> {
    let backends: &[Backend] = match args.store {
        StoreChoice::Embedded => &[Backend::Embedded],
        StoreChoice::Etcd => &[Backend::Etcd],
        StoreChoice::Both => &[Backend::Embedded, Backend::Etcd],
    };
    let duration = Duration::from_secs(args.duration_secs);
    let concurrency = usize::try_from(args.concurrency)?;
    let store_options = BenchOptions {
        duration,
        concurrency,
        rate: api::RATE,
        ..BenchOptions::default()
    };
    let api_options = api::ApiOptions {
        objects: usize::try_from(args.objects)?,
        concurrency,
        duration,
    };
    let mut store_results = Results::new();
    for &backend in backends {
        eprintln!("bench: the {} store alone…", backend.name());
        let backing = Backing::open(backend).await?;
        let report = wasmkube_store::bench::run(backing.store.clone(), store_options.clone()).await;
        store_results.push((backend, report.rows));
    }
    let mut api_results = Results::new();
    for &backend in backends {
        eprintln!("bench: the API over HTTPS on the {} store…", backend.name());
        let backing = Backing::open(backend).await?;
        let rows = api::run(backing.store.clone(), backing.dir.path(), &api_options).await?;
        api_results.push((backend, rows));
    }
    println!(
        "{}",
        report::table("store alone (1 KiB values)", &store_results)
    );
    println!(
        "{}",
        report::table("API over HTTPS (1 KiB ConfigMaps)", &api_results)
    );
    let target = report::Target::of(&api_results);
    println!("{target}\n");
    let parameters = serde_json::json!({
        "objects": args.objects,
        "concurrency": args.concurrency,
        "duration_secs": args.duration_secs,
        "rate_per_sec": api::RATE,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
    });
    println!(
        "{}",
        report::json(parameters, &store_results, &api_results, &target)
    );
    Ok(())
}
