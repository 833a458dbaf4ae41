//! Prometheus metrics: request counts and latency by verb and resource, and open watches.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmkube_store::{
    KeyValue, Range, RangeResult, Store, StoreError, Txn, TxnResult, WatchStream,
};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A latency histogram in the buckets above.
#[derive(Clone, Debug, Default)]
pub struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, seconds: f64) {
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// The server's metrics.
#[derive(Default)]
pub struct Metrics {
    /// (verb, resource, code) → count.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// (verb, resource) → latency.
    latency: Mutex<BTreeMap<(String, String), Histogram>>,
    watches: Arc<AtomicI64>,
    /// store operation → latency, shared with the [`MeteredStore`] in front of the store.
    store: Arc<Mutex<BTreeMap<&'static str, Histogram>>>,
    /// Metrics of other parts of the host (the plugins, the scheduler), appended to every scrape,
    /// by the part's name.
    collectors: Mutex<BTreeMap<&'static str, Collector>>,
}

/// Writes more metrics, in the Prometheus text format.
pub type Collector = Box<dyn Fn(&mut String) + Send + Sync>;

/// Counts one open watch while alive.
pub struct WatchGuard(Arc<AtomicI64>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    pub fn watch_started(&self) -> WatchGuard {
        self.watches.fetch_add(1, Ordering::Relaxed);
        WatchGuard(self.watches.clone())
    }

    pub(crate) fn record(&self, verb: &str, resource: &str, code: u16, seconds: f64) {
        if let Ok(mut requests) = self.requests.lock() {
            *requests
                .entry((verb.into(), resource.into(), code))
                .or_default() += 1;
        }
        if let Ok(mut latency) = self.latency.lock() {
            latency
                .entry((verb.into(), resource.into()))
                .or_default()
                .observe(seconds);
        }
    }

    /// The Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::from("# TYPE apiserver_request_total counter\n");
        if let Ok(requests) = self.requests.lock() {
            for ((verb, resource, code), n) in requests.iter() {
                let _ = writeln!(
                    out,
                    "apiserver_request_total{{verb=\"{verb}\",resource=\"{resource}\",code=\"{code}\"}} {n}"
                );
            }
        }
        out.push_str("# TYPE apiserver_request_duration_seconds histogram\n");
        if let Ok(latency) = self.latency.lock() {
            for ((verb, resource), h) in latency.iter() {
                let labels = format!("verb=\"{verb}\",resource=\"{resource}\"");
                write_histogram(&mut out, "apiserver_request_duration_seconds", &labels, h);
            }
        }
        out.push_str("# TYPE etcd_request_duration_seconds histogram\n");
        if let Ok(store) = self.store.lock() {
            for (op, h) in store.iter() {
                write_histogram(
                    &mut out,
                    "etcd_request_duration_seconds",
                    &format!("operation=\"{op}\""),
                    h,
                );
            }
        }
        let _ = writeln!(
            out,
            "# TYPE apiserver_registered_watchers gauge\napiserver_registered_watchers {}",
            self.watches.load(Ordering::Relaxed)
        );
        for collector in self
            .collectors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            collector(&mut out);
        }
        out
    }

    /// Adds the metrics `collector` writes to every scrape, in place of the collector of an
    /// earlier `part` of that name (a part started again, in a new term of leadership, replaces
    /// its predecessor's metrics rather than repeating them).
    pub fn set_collector(&self, part: &'static str, collector: Collector) {
        self.collectors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(part, collector);
    }
}

/// Writes `h` as the histogram `name` with `labels` (`key="value",…`).
pub fn write_histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    for (bound, count) in BUCKETS.iter().zip(h.counts) {
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
}

/// A [`Store`] that times every operation of the store behind it into the server's metrics.
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    latency: Arc<Mutex<BTreeMap<&'static str, Histogram>>>,
}

impl MeteredStore {
    pub fn wrap(inner: Arc<dyn Store>, metrics: &Metrics) -> Arc<dyn Store> {
        Arc::new(MeteredStore {
            inner,
            latency: metrics.store.clone(),
        })
    }

    async fn timed<T>(&self, op: &'static str, f: impl std::future::Future<Output = T>) -> T {
        let start = Instant::now();
        let result = f.await;
        if let Ok(mut latency) = self.latency.lock() {
            latency
                .entry(op)
                .or_default()
                .observe(start.elapsed().as_secs_f64());
        }
        result
    }
}

#[async_trait::async_trait]
impl Store for MeteredStore {
    async fn get(&self, key: &str) -> Result<(Option<KeyValue>, i64), StoreError> {
        self.timed("get", self.inner.get(key)).await
    }

    async fn range(&self, range: Range) -> Result<RangeResult, StoreError> {
        self.timed("range", self.inner.range(range)).await
    }

    async fn count(&self, prefix: &str) -> Result<i64, StoreError> {
        self.timed("count", self.inner.count(prefix)).await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError> {
        self.timed("txn", self.inner.txn(txn)).await
    }

    async fn watch(
        &self,
        prefix: &str,
        start_revision: i64,
        progress_interval: Duration,
    ) -> Result<WatchStream, StoreError> {
        self.timed(
            "watch",
            self.inner.watch(prefix, start_revision, progress_interval),
        )
        .await
    }

    async fn compact(&self, revision: i64) -> Result<(), StoreError> {
        self.timed("compact", self.inner.compact(revision)).await
    }

    async fn revision(&self) -> Result<i64, StoreError> {
        self.timed("revision", self.inner.revision()).await
    }
}
