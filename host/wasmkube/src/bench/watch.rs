//! `wasmkube bench watch`: many watchers of one resource, each served by the store itself and
//! then through the watch cache: events delivered per second, and this process's memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};
use wasmkube_store::embedded::EmbeddedStore;
use wasmkube_store::etcd::EtcdStore;
use wasmkube_store::etcd::testing::EtcdServer;
use wasmkube_store::watch_cache::{WatchCache, WatchCacheConfig};
use wasmkube_store::{Op, Store, Txn, WatchItem};

use super::node::status_kb;
use super::{Backend, StoreChoice};

/// What every watcher watches: one namespace of one resource.
const PREFIX: &str = "/registry/core/pods/bench/";
/// Bytes of each value written.
const VALUE: usize = 1024;
/// Concurrent writers.
const WRITERS: usize = 8;
/// The longest a watcher may wait for its next event.
const STALL: Duration = Duration::from_secs(60);

#[derive(clap::Args)]
pub struct WatchArgs {
    /// Concurrent watchers of one resource.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    watchers: u64,
    /// Writes (1 KiB values) whose events every watcher receives.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    writes: u64,
    /// Which store to measure.
    #[arg(long, value_enum, default_value = "both")]
    store: StoreChoice,
}

/// One measured configuration.
struct Row {
    backend: Backend,
    cached: bool,
    seconds: f64,
    events_per_sec: f64,
    writes_per_sec: f64,
    /// Resident memory added by opening the watchers, and the most added while delivering (MiB).
    opened_mib: f64,
    peak_mib: f64,
}

fn rss_kib() -> anyhow::Result<u64> {
    status_kb(&std::fs::read_to_string("/proc/self/status")?, "VmRSS")
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub async fn run(args: WatchArgs) -> anyhow::Result<()> {
    let backends: &[Backend] = match args.store {
        StoreChoice::Embedded => &[Backend::Embedded],
        StoreChoice::Etcd => &[Backend::Etcd],
        StoreChoice::Both => &[Backend::Embedded, Backend::Etcd],
    };
    let watchers = usize::try_from(args.watchers)?;
    let writes = usize::try_from(args.writes)?;
    let mut rows = Vec::new();
    for &backend in backends {
        for cached in [false, true] {
            eprintln!(
                "bench: {watchers} watchers of the {} store{}…",
                backend.name(),
                if cached {
                    " through the watch cache"
                } else {
                    ""
                }
            );
            rows.push(measure(backend, cached, watchers, writes).await?);
        }
    }
    println!(
        "{:<10} {:<6} {:>9} {:>14} {:>10} {:>14} {:>14}",
        "store", "cache", "seconds", "events/s", "writes/s", "open +MiB", "peak +MiB"
    );
    for r in &rows {
        println!(
            "{:<10} {:<6} {:>9.2} {:>14.0} {:>10.0} {:>14.1} {:>14.1}",
            r.backend.name(),
            if r.cached { "yes" } else { "no" },
            r.seconds,
            r.events_per_sec,
            r.writes_per_sec,
            r.opened_mib,
            r.peak_mib
        );
    }
    let results: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "store": r.backend.name(), "cached": r.cached, "seconds": r.seconds,
                "events_per_sec": r.events_per_sec, "writes_per_sec": r.writes_per_sec,
                "opened_mib": r.opened_mib, "peak_mib": r.peak_mib,
            })
        })
        .collect();
    let parameters = json!({
        "watchers": watchers, "writes": writes, "value_bytes": VALUE, "writers": WRITERS,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
    });
    println!(
        "{}",
        json!({"bench": "watch", "parameters": parameters, "results": results})
    );
    Ok(())
}

/// A fresh store of `backend`, and what must outlive it.
async fn open(
    backend: Backend,
    dir: &tempfile::TempDir,
) -> anyhow::Result<(Arc<dyn Store>, Option<EtcdServer>)> {
    Ok(match backend {
        Backend::Embedded => (EmbeddedStore::open(&dir.path().join("store.redb"))?, None),
        Backend::Etcd => {
            let etcd = EtcdServer::start().await.context("starting etcd")?;
            let store = EtcdStore::connect(&etcd.endpoints())
                .await
                .context("connecting to etcd")?;
            (store, Some(etcd))
        }
    })
}

async fn measure(
    backend: Backend,
    cached: bool,
    watchers: usize,
    writes: usize,
) -> anyhow::Result<Row> {
    let dir = tempfile::Builder::new()
        .prefix("wasmkube-bench-")
        .tempdir()?;
    let (raw, etcd) = open(backend, &dir).await?;
    let store: Arc<dyn Store> = if cached {
        WatchCache::new(raw.clone(), WatchCacheConfig::default())
    } else {
        raw.clone()
    };
    let before = rss_kib()?;
    let start = store.revision().await? + 1;
    let mut readers = JoinSet::new();
    for _ in 0..watchers {
        let mut stream = store.watch(PREFIX, start, Duration::ZERO).await?;
        readers.spawn(async move {
            let mut seen = 0;
            while seen < writes {
                match timeout(STALL, stream.next()).await {
                    Ok(Some(Ok(WatchItem::Event(_)))) => seen += 1,
                    Ok(Some(Ok(WatchItem::Progress { .. }))) => {}
                    Ok(Some(Err(err))) => bail!("a watcher failed after {seen} events: {err}"),
                    Ok(None) => bail!("a watch ended after {seen} events"),
                    Err(_) => bail!("a watcher stalled after {seen} events"),
                }
            }
            Ok(Instant::now())
        });
    }
    let opened = rss_kib()?.saturating_sub(before);
    let peak = Arc::new(AtomicU64::new(opened));
    let sampler = tokio::spawn({
        let peak = peak.clone();
        async move {
            loop {
                if let Ok(rss) = rss_kib() {
                    peak.fetch_max(rss.saturating_sub(before), Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let began = Instant::now();
    let mut writers = JoinSet::new();
    for w in 0..WRITERS {
        let store = store.clone();
        let value = vec![b'x'; VALUE];
        writers.spawn(async move {
            for i in (w..writes).step_by(WRITERS) {
                let key = format!("{PREFIX}p{}", i % 100);
                let txn = Txn {
                    compare: vec![],
                    success: vec![Op::Put {
                        key,
                        value: value.clone().into(),
                    }],
                };
                store.txn(txn).await?;
            }
            anyhow::Ok(Instant::now())
        });
    }
    let mut written = began;
    while let Some(done) = writers.join_next().await {
        written = written.max(done??);
    }
    let mut delivered = began;
    while let Some(done) = readers.join_next().await {
        delivered = delivered.max(done??);
    }
    sampler.abort();
    let seconds = (delivered - began).as_secs_f64();
    let events = (watchers * writes) as f64;
    drop(store);
    drop(raw);
    drop(etcd);
    Ok(Row {
        backend,
        cached,
        seconds,
        events_per_sec: events / seconds.max(f64::EPSILON),
        writes_per_sec: writes as f64 / (written - began).as_secs_f64().max(f64::EPSILON),
        opened_mib: mib(opened),
        peak_mib: mib(peak.load(Ordering::Relaxed)),
    })
}
