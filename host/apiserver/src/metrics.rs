//! Prometheus metrics: request counts and latency by verb and resource, and open watches.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::Server;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
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
}

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

    fn record(&self, verb: &str, resource: &str, code: u16, seconds: f64) {
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
                for (bound, count) in BUCKETS.iter().zip(h.counts) {
                    let _ = writeln!(
                        out,
                        "apiserver_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}"
                    );
                }
                let _ = writeln!(
                    out,
                    "apiserver_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(
                    out,
                    "apiserver_request_duration_seconds_sum{{{labels}}} {}",
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "apiserver_request_duration_seconds_count{{{labels}}} {}",
                    h.count
                );
            }
        }
        let _ = writeln!(
            out,
            "# TYPE apiserver_registered_watchers gauge\napiserver_registered_watchers {}",
            self.watches.load(Ordering::Relaxed)
        );
        out
    }
}

/// The verb and resource of a request path, as Kubernetes labels them.
fn classify(method: &http::Method, path: &str, query: &str) -> (String, String) {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest: &[&str] = match segments.as_slice() {
        ["api", _, rest @ ..] => rest,
        ["apis", _, _, rest @ ..] => rest,
        _ => return (method.as_str().to_lowercase(), String::new()),
    };
    let rest = match rest {
        ["namespaces", _, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let resource = rest.first().copied().unwrap_or("").to_string();
    let item = rest.len() > 1;
    let verb = match *method {
        http::Method::GET if query.contains("watch=true") || query.contains("watch=1") => "watch",
        http::Method::GET if item => "get",
        http::Method::GET => "list",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE if item => "delete",
        http::Method::DELETE => "deletecollection",
        _ => "other",
    };
    (verb.into(), resource)
}

/// Middleware recording every request.
pub async fn observe(State(server): State<Arc<Server>>, request: Request, next: Next) -> Response {
    let (verb, resource) = classify(
        request.method(),
        request.uri().path(),
        request.uri().query().unwrap_or(""),
    );
    let start = Instant::now();
    let response = next.run(request).await;
    server.metrics.record(
        &verb,
        &resource,
        response.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    response
}

pub async fn render(State(server): State<Arc<Server>>) -> String {
    server.metrics.render()
}
