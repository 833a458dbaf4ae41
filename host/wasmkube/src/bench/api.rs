//! The API bench: serves the real apiserver over HTTPS on loopback and drives it like a client.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use reqwest::Response;
use serde_json::Value;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, sleep_until, timeout};
use wasmkube_apiserver::tls::{Identity, Names};
use wasmkube_apiserver::{Server, app, serve_tls};
use wasmkube_controller::native;
use wasmkube_store::Store;
use wasmkube_store::bench::BenchRow;

use super::client::{Api, collection, name};
use super::rbac;

/// Creates per second of the open-loop phase.
pub const RATE: u32 = 1000;
/// The name of the open-loop create row (the design target's figure); it names [`RATE`].
pub const RATE_CREATE: &str = "create @ 1000/s";
/// The longest any closed-loop phase may run, whatever the object count.
const PHASE_LIMIT: Duration = Duration::from_secs(120);
/// How long the watch may stay silent before it is given up.
const WATCH_IDLE: Duration = Duration::from_secs(5);
/// Items per page of the paginated list.
const PAGE: usize = 500;
/// Times the whole collection is listed, in one request and page by page.
const LISTS: usize = 5;
/// The namespace of the closed-loop phases, and that of the open-loop phase and its watch.
const NAMESPACE: &str = "bench";
const RATE_NAMESPACE: &str = "bench-rate";

pub struct ApiOptions {
    pub objects: usize,
    pub concurrency: usize,
    pub duration: Duration,
}

/// Serves `store` on a free loopback port and measures every operation through it.
pub async fn run(
    store: Arc<dyn Store>,
    dir: &Path,
    opts: &ApiOptions,
) -> anyhow::Result<Vec<BenchRow>> {
    let identity = Identity::load_or_create(&dir.join("pki"), &Names::default())?;
    let server = Server::new(store, Some(identity.token.clone())).await?;
    wasmkube_apiserver::auth::bootstrap::reconcile(&server).await?;
    let server_ref = server.clone();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let port = listener.local_addr()?.port();
    let config = identity.server_config()?;
    let _tasks = AbortOnDrop(vec![
        native::spawn(server.clone()),
        tokio::spawn(async move {
            if let Err(e) = serve_tls(listener, config, app(server)).await {
                tracing::error!(error = %e, "the bench apiserver stopped");
            }
        }),
    ]);
    let api = Api::new(port, &identity)?;
    for namespace in [NAMESPACE, RATE_NAMESPACE] {
        api.create_namespace(namespace).await?;
    }
    let origin = Instant::now();
    let mut rows = phases(&api, opts, origin).await?;
    let writer = Api::as_user(port, &identity, rbac::USER)?;
    let rbac_rows = rbac::phases(
        &api,
        &writer,
        &server_ref,
        opts.concurrency,
        opts.duration,
        origin,
    );
    rows.extend(rbac_rows.await?);
    Ok(rows)
}

async fn phases(api: &Api, opts: &ApiOptions, origin: Instant) -> anyhow::Result<Vec<BenchRow>> {
    let (n, c) = (opts.objects, opts.concurrency);
    warm(api, NAMESPACE, c).await?;
    let mut rows = Vec::new();
    let (created, versions) = closed_loop(
        n,
        c,
        each(api, move |api, i| async move {
            let version = api.create(NAMESPACE, i, 0).await?;
            Ok((i, version))
        }),
    )
    .await;
    rows.push(created.row(format!("create, {c} clients")));
    let (got, _) = closed_loop(
        n,
        c,
        each(api, |api, i| async move {
            api.get(&format!("{}/{}", collection(NAMESPACE), name(i)))
                .await
        }),
    )
    .await;
    rows.push(got.row(format!("get, {c} clients")));
    let expected = versions.len();
    let (listed, _) = closed_loop(
        LISTS,
        1,
        each(api, move |api, _| async move {
            let (items, _) = api.list(NAMESPACE, None, None).await?;
            if items != expected {
                bail!("listed {items} ConfigMaps, expected {expected}");
            }
            Ok(())
        }),
    )
    .await;
    rows.push(listed.row(format!("list all ({expected})")));
    rows.push(
        paged_lists(api, expected)
            .await
            .row(format!("list page of {PAGE}")),
    );
    let mut by_index = vec![None; n];
    for (i, version) in versions {
        by_index[i] = Some(version);
    }
    let by_index = Arc::new(by_index);
    let (updated, _) = closed_loop(
        n,
        c,
        each(api, move |api, i| {
            let version = by_index[i].clone();
            async move {
                let version = version.context("its create failed")?;
                api.update(NAMESPACE, i, &version).await
            }
        }),
    )
    .await;
    rows.push(updated.row(format!("update, {c} clients")));
    let (deleted, _) = closed_loop(
        n,
        c,
        each(api, |api, i| async move { api.delete(NAMESPACE, i).await }),
    )
    .await;
    rows.push(deleted.row(format!("delete, {c} clients")));
    let (writes, watch) = open_loop(api, RATE_NAMESPACE, opts.duration, origin).await;
    rows.push(writes.row(RATE_CREATE));
    rows.push(watch.row(format!("watch delivery @ {RATE}/s")));
    Ok(rows)
}

/// Lists the collection page by page, [`LISTS`] times; each page is one sample.
async fn paged_lists(api: &Api, expected: usize) -> Samples {
    let mut samples = Samples::default();
    let start = Instant::now();
    let deadline = start + PHASE_LIMIT;
    // Bounded: each walk takes at most one page more than the collection holds.
    for _ in 0..LISTS {
        let (mut seen, mut token) = (0, None::<String>);
        for _ in 0..=expected.div_ceil(PAGE) {
            let began = Instant::now();
            match api.list(NAMESPACE, Some(PAGE), token.as_deref()).await {
                Ok((items, next)) => {
                    samples.ok(began.elapsed());
                    seen += items;
                    token = next;
                }
                Err(e) => {
                    samples.err(e);
                    break;
                }
            }
            if token.is_none() || Instant::now() > deadline {
                break;
            }
        }
        if seen != expected {
            samples.err(anyhow!(
                "paged through {seen} ConfigMaps, expected {expected}"
            ));
        }
    }
    samples.elapsed = start.elapsed();
    samples
}

/// Opens `concurrency` of the pool's connections (and their TLS handshakes) before a phase is
/// measured, each reading the Namespace `namespace`.
pub(super) async fn warm(api: &Api, namespace: &str, concurrency: usize) -> anyhow::Result<()> {
    let path = format!("/api/v1/namespaces/{namespace}");
    let (warm, _) = closed_loop(
        concurrency,
        concurrency,
        each(api, move |api, _| {
            let path = path.clone();
            async move { api.get(&path).await }
        }),
    )
    .await;
    if warm.errors > 0 {
        bail!("the apiserver is not answering: {}", warm.first_error());
    }
    Ok(())
}

/// Creates at [`RATE`] for `duration`, counting latency from each create's scheduled time (so a
/// stall is not hidden), while a watch measures delivery from that time to the event.
pub(super) async fn open_loop(
    api: &Api,
    namespace: &str,
    duration: Duration,
    origin: Instant,
) -> (Samples, Samples) {
    let total = (f64::from(RATE) * duration.as_secs_f64()) as usize;
    let watcher = api
        .watch(namespace, duration + 2 * WATCH_IDLE)
        .await
        .map(|response| tokio::spawn(watch_latencies(response, total, origin)));
    let period = Duration::from_secs_f64(1.0 / f64::from(RATE));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..total {
        let scheduled = start + period.mul_f64(i as f64);
        sleep_until(scheduled).await;
        let (api, namespace) = (api.clone(), namespace.to_string());
        let sent = micros(scheduled.duration_since(origin));
        tasks.spawn(async move {
            let result = api.create(&namespace, i, sent).await;
            (result, scheduled.elapsed())
        });
    }
    let mut writes = Samples::default();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((Ok(_), latency)) => writes.ok(latency),
            Ok((Err(e), _)) => writes.err(e),
            Err(e) => writes.err(e.into()),
        }
    }
    writes.elapsed = start.elapsed();
    let watch = match watcher {
        Ok(task) => task.await.unwrap_or_else(|e| Samples::failed(e.into())),
        Err(e) => Samples::failed(e),
    };
    (writes, watch)
}

/// Reads watch events until `total` have come, each timed from the send time it carries.
async fn watch_latencies(mut response: Response, total: usize, origin: Instant) -> Samples {
    let start = Instant::now();
    let mut samples = Samples::default();
    let mut buffer = Vec::new();
    while samples.latencies.len() < total && samples.errors == 0 {
        let chunk = match timeout(WATCH_IDLE, response.chunk()).await {
            Ok(Ok(Some(chunk))) => chunk,
            Ok(Ok(None)) => {
                samples.err(anyhow!("the watch ended early"));
                break;
            }
            Ok(Err(e)) => {
                samples.err(e.into());
                break;
            }
            Err(_) => {
                samples.err(anyhow!("no watch event for {WATCH_IDLE:?}"));
                break;
            }
        };
        let received = Instant::now();
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            match sent_at(&line) {
                Some(sent) => samples.ok(received.saturating_duration_since(origin + sent)),
                None => samples.err(anyhow!(
                    "unexpected watch line {}",
                    String::from_utf8_lossy(&line)
                )),
            }
        }
    }
    samples.elapsed = start.elapsed();
    samples
}

/// The send time stamped into the ConfigMap of an `ADDED` watch line.
fn sent_at(line: &[u8]) -> Option<Duration> {
    let event: Value = serde_json::from_slice(line).ok()?;
    if event["type"] != "ADDED" {
        return None;
    }
    let sent = event.pointer("/object/data/sent")?.as_str()?.parse().ok()?;
    Some(Duration::from_micros(sent))
}

/// The latencies and errors of one phase.
#[derive(Default)]
pub(super) struct Samples {
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
    pub(super) elapsed: Duration,
}

impl Samples {
    fn failed(error: anyhow::Error) -> Samples {
        let mut samples = Samples::default();
        samples.err(error);
        samples
    }

    pub(super) fn ok(&mut self, latency: Duration) {
        self.latencies.push(latency);
    }

    pub(super) fn err(&mut self, error: anyhow::Error) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| format!("{error:#}"));
    }

    fn first_error(&self) -> &str {
        self.first_error.as_deref().unwrap_or("")
    }

    fn merge(&mut self, other: Samples) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    pub(super) fn row(mut self, name: impl Into<String>) -> BenchRow {
        let name = name.into();
        if self.errors > 0 {
            tracing::warn!(operation = %name, errors = self.errors, first = self.first_error(), "bench errors");
        }
        self.latencies.sort_unstable();
        let n = self.latencies.len();
        let pick = |q: f64| match n {
            0 => 0,
            _ => micros(self.latencies[((n as f64 * q).ceil() as usize).clamp(1, n) - 1]),
        };
        BenchRow {
            ops: n,
            ops_per_sec: n as f64 / self.elapsed.as_secs_f64().max(1e-9),
            p50_us: pick(0.50),
            p99_us: pick(0.99),
            errors: self.errors,
            name,
        }
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// Adapts an operation on the API and an index into the closure [`closed_loop`] runs.
pub(super) fn each<T, F, Fut>(api: &Api, op: F) -> impl Fn(usize) -> Fut + Clone + Send + 'static
where
    F: Fn(Api, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<T>> + Send,
{
    let api = api.clone();
    move |i| op(api.clone(), i)
}

/// `concurrency` clients sharing the indices `0..count`, each doing one request after another,
/// for at most [`PHASE_LIMIT`]; returns the samples and what each success returned.
pub(super) async fn closed_loop<T, F, Fut>(
    count: usize,
    concurrency: usize,
    op: F,
) -> (Samples, Vec<T>)
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<T>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + PHASE_LIMIT;
    let mut clients = JoinSet::new();
    for _ in 0..concurrency.clamp(1, count.max(1)) {
        let (op, next) = (op.clone(), next.clone());
        clients.spawn(async move {
            let (mut samples, mut outputs) = (Samples::default(), Vec::new());
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || Instant::now() > deadline {
                    break;
                }
                let began = Instant::now();
                match op(i).await {
                    Ok(output) => {
                        samples.ok(began.elapsed());
                        outputs.push(output);
                    }
                    Err(e) => samples.err(e),
                }
            }
            (samples, outputs)
        });
    }
    let (mut samples, mut outputs) = (Samples::default(), Vec::new());
    while let Some(done) = clients.join_next().await {
        match done {
            Ok((part, out)) => {
                samples.merge(part);
                outputs.extend(out);
            }
            Err(e) => samples.err(e.into()),
        }
    }
    samples.elapsed = start.elapsed();
    (samples, outputs)
}

/// Aborts the server's tasks when the bench of one backend is over.
struct AbortOnDrop(Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}
