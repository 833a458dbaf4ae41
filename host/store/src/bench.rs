//! A small benchmark of any [`Store`]: write latency at a fixed rate and at full speed, point
//! gets, prefix ranges and watch delivery, with throughput and p50/p99 latencies.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until, timeout};

use crate::{Compare, Op, Range, Store, StoreError, Txn, TxnResult, WatchItem};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Every key written goes under this prefix, which should be empty beforehand.
    pub prefix: String,
    /// How long each timed phase runs.
    pub duration: Duration,
    /// Creates per second of the open-loop write phase.
    pub rate: u32,
    /// Concurrent clients of the max-throughput write and get phases.
    pub concurrency: usize,
    /// Bytes per value written.
    pub value_size: usize,
    /// Keys under the prefix read by the range phase.
    pub range_keys: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            prefix: "/bench/".into(),
            duration: Duration::from_secs(5),
            rate: 1000,
            concurrency: 32,
            value_size: 1024,
            range_keys: 1000,
        }
    }
}

/// One measured operation.
#[derive(Clone, Debug)]
pub struct BenchRow {
    pub name: String,
    pub ops: usize,
    pub ops_per_sec: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub errors: usize,
}

/// The results of [`run`], one row per operation; `Display` prints an aligned table.
#[derive(Clone, Debug, Default)]
pub struct BenchReport {
    pub rows: Vec<BenchRow>,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<28} {:>9} {:>11} {:>10} {:>10} {:>7}",
            "operation", "ops", "ops/s", "p50 µs", "p99 µs", "errors"
        )?;
        for row in &self.rows {
            writeln!(
                f,
                "{:<28} {:>9} {:>11.0} {:>10} {:>10} {:>7}",
                row.name, row.ops, row.ops_per_sec, row.p50_us, row.p99_us, row.errors
            )?;
        }
        Ok(())
    }
}

/// Latencies of one phase.
struct Samples {
    latencies: Vec<Duration>,
    errors: usize,
    elapsed: Duration,
}

impl Samples {
    fn row(mut self, name: impl Into<String>) -> BenchRow {
        self.latencies.sort_unstable();
        let pick = |q: f64| {
            let n = self.latencies.len();
            if n == 0 {
                return 0;
            }
            let i = ((n as f64 * q).ceil() as usize).clamp(1, n) - 1;
            u64::try_from(self.latencies[i].as_micros()).unwrap_or(u64::MAX)
        };
        BenchRow {
            name: name.into(),
            ops: self.latencies.len(),
            ops_per_sec: self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(1e-9),
            p50_us: pick(0.50),
            p99_us: pick(0.99),
            errors: self.errors,
        }
    }
}

/// Runs every phase against `store` and reports.
pub async fn run(store: Arc<dyn Store>, opts: BenchOptions) -> BenchReport {
    let origin = Instant::now();
    let mut rows = Vec::new();
    let (writes, watch) = open_loop_writes(&store, &opts, origin).await;
    rows.push(writes.row(format!("create @ {}/s", opts.rate)));
    rows.push(watch.row("watch delivery"));
    rows.push(
        max_writes(&store, &opts, origin)
            .await
            .row(format!("create, {} clients", opts.concurrency)),
    );
    let keys = (writes_written(&opts) as usize).max(1);
    rows.push(
        gets(&store, &opts, keys)
            .await
            .row(format!("get, {} clients", opts.concurrency)),
    );
    rows.push(
        ranges(&store, &opts, origin)
            .await
            .row(format!("range of {} keys", opts.range_keys)),
    );
    BenchReport { rows }
}

fn writes_written(opts: &BenchOptions) -> u64 {
    (f64::from(opts.rate) * opts.duration.as_secs_f64()) as u64
}

/// A value of `size` bytes starting with the microseconds since `origin`, for watch latency.
fn stamped_value(size: usize, origin: Instant) -> Bytes {
    let micros = u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX);
    let mut value = vec![b'x'; size.max(8)];
    value[..8].copy_from_slice(&micros.to_le_bytes());
    Bytes::from(value)
}

async fn create(store: &dyn Store, key: String, value: Bytes) -> Result<(), StoreError> {
    let txn = Txn {
        compare: vec![Compare::ModRevision {
            key: key.clone(),
            revision: 0,
        }],
        success: vec![Op::Put { key, value }],
    };
    match store.txn(txn).await? {
        TxnResult::Succeeded { .. } => Ok(()),
        TxnResult::Failed { .. } => Err(StoreError::Embedded("bench key already exists".into())),
    }
}

/// Creates at a fixed rate, each in its own task so that a slow answer does not delay the next
/// request (open loop), while a watch measures how long each change takes to be delivered.
async fn open_loop_writes(
    store: &Arc<dyn Store>,
    opts: &BenchOptions,
    origin: Instant,
) -> (Samples, Samples) {
    let prefix = format!("{}w/", opts.prefix);
    let total = writes_written(opts);
    let watcher = match store.watch(&prefix, 0, Duration::ZERO).await {
        Ok(mut stream) => Some(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            while (latencies.len() as u64) < total {
                let item = timeout(Duration::from_secs(10), stream.next()).await;
                match item {
                    Ok(Some(Ok(WatchItem::Event(event)))) => {
                        let mut stamp = [0; 8];
                        stamp.copy_from_slice(&event.kv.value[..8]);
                        let sent = origin + Duration::from_micros(u64::from_le_bytes(stamp));
                        latencies.push(Instant::now().saturating_duration_since(sent));
                    }
                    Ok(Some(Ok(WatchItem::Progress { .. }))) => {}
                    _ => {
                        errors += 1;
                        break;
                    }
                }
            }
            (latencies, errors)
        })),
        Err(_) => None,
    };
    let period = Duration::from_secs_f64(1.0 / f64::from(opts.rate.max(1)));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..total {
        let scheduled = start + period.mul_f64(i as f64);
        sleep_until(scheduled).await;
        let (store, key) = (store.clone(), format!("{prefix}{i:010}"));
        let value = stamped_value(opts.value_size, origin);
        tasks.spawn(async move {
            let began = Instant::now();
            let result = create(store.as_ref(), key, value).await;
            (result.is_ok(), began.elapsed())
        });
    }
    let writes = collect(tasks, start).await;
    let watch = match watcher {
        Some(task) => {
            let (latencies, errors) = task.await.unwrap_or_default();
            Samples {
                latencies,
                errors,
                elapsed: start.elapsed(),
            }
        }
        None => Samples {
            latencies: Vec::new(),
            errors: 1,
            elapsed: start.elapsed(),
        },
    };
    (writes, watch)
}

async fn collect(mut tasks: JoinSet<(bool, Duration)>, start: Instant) -> Samples {
    let mut samples = Samples {
        latencies: Vec::new(),
        errors: 0,
        elapsed: Duration::ZERO,
    };
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((true, latency)) => samples.latencies.push(latency),
            _ => samples.errors += 1,
        }
    }
    samples.elapsed = start.elapsed();
    samples
}

/// `concurrency` clients each doing one thing after another until `duration` is over.
async fn closed_loop<F, Fut>(opts: &BenchOptions, op: F) -> Samples
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), StoreError>> + Send,
{
    let start = Instant::now();
    let end = start + opts.duration;
    let mut clients = JoinSet::new();
    for client in 0..opts.concurrency.max(1) {
        let op = op.clone();
        clients.spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0);
            let mut n = 0;
            while Instant::now() < end {
                let began = Instant::now();
                match op(client, n).await {
                    Ok(()) => latencies.push(began.elapsed()),
                    Err(_) => errors += 1,
                }
                n += 1;
            }
            (latencies, errors)
        });
    }
    let mut samples = Samples {
        latencies: Vec::new(),
        errors: 0,
        elapsed: Duration::ZERO,
    };
    while let Some(done) = clients.join_next().await {
        match done {
            Ok((latencies, errors)) => {
                samples.latencies.extend(latencies);
                samples.errors += errors;
            }
            Err(_) => samples.errors += 1,
        }
    }
    samples.elapsed = start.elapsed();
    samples
}

async fn max_writes(store: &Arc<dyn Store>, opts: &BenchOptions, origin: Instant) -> Samples {
    let (store, prefix, size) = (store.clone(), opts.prefix.clone(), opts.value_size);
    closed_loop(opts, move |client, n| {
        let (store, key) = (store.clone(), format!("{prefix}c/{client:04}/{n:010}"));
        async move { create(store.as_ref(), key, stamped_value(size, origin)).await }
    })
    .await
}

async fn gets(store: &Arc<dyn Store>, opts: &BenchOptions, keys: usize) -> Samples {
    let (store, prefix) = (store.clone(), format!("{}w/", opts.prefix));
    closed_loop(opts, move |client, n| {
        // A cheap spread over the keys written by the open-loop phase.
        let i = (client as u64 * 7919 + n * 104_729) % keys as u64;
        let (store, key) = (store.clone(), format!("{prefix}{i:010}"));
        async move { store.get(&key).await.map(drop) }
    })
    .await
}

async fn ranges(store: &Arc<dyn Store>, opts: &BenchOptions, origin: Instant) -> Samples {
    let prefix = format!("{}r/", opts.prefix);
    // etcd allows 128 operations per transaction by default.
    let keys: Vec<usize> = (0..opts.range_keys).collect();
    for chunk in keys.chunks(100) {
        let success = chunk
            .iter()
            .map(|i| Op::Put {
                key: format!("{prefix}{i:06}"),
                value: stamped_value(opts.value_size, origin),
            })
            .collect();
        let txn = Txn {
            compare: Vec::new(),
            success,
        };
        if store.txn(txn).await.is_err() {
            break;
        }
    }
    let store = store.clone();
    let single = BenchOptions {
        concurrency: 1,
        ..opts.clone()
    };
    closed_loop(&single, move |_, _| {
        let (store, prefix) = (store.clone(), prefix.clone());
        async move {
            let range = Range {
                prefix,
                ..Range::default()
            };
            store.range(range).await.map(drop)
        }
    })
    .await
}
