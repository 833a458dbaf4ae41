//! The wasmkube apiserver: the Kubernetes REST API over the revisioned store, as `fn app() -> Router`.

pub mod auth;
pub mod certificates;
pub mod config;
mod discovery;
pub mod error;
mod handlers;
pub mod metrics;
pub mod node_agent;
pub mod objects;
mod openapi;
pub mod plugin_logs;
pub mod registry;
mod request;
mod response;
mod serve;
pub mod server;
pub mod tls;

use std::sync::Arc;

use axum::Router;
use axum::routing::{any, get};
use tokio::sync::Semaphore;

use crate::error::ApiError;

pub use crate::config::{ClusterConfig, ServiceRange};
pub use crate::metrics::Metrics;
pub use crate::serve::serve_tls;
pub use crate::server::Server;

/// The whole HTTP API: discovery, OpenAPI, health, metrics and every resource. Every path
/// answers with or without a trailing slash, as kube-apiserver's router does (`/version/`).
pub fn app(server: Arc<Server>) -> Router {
    use tower::ServiceExt as _;
    let slots = Arc::new(Semaphore::new(MAX_REQUESTS_IN_FLIGHT));
    Router::new()
        .fallback_service(routes(server).map_request(trim_trailing_slash))
        .layer(axum::middleware::from_fn_with_state(slots, limit_in_flight))
}

/// Requests served at once, long-running ones (watches, logs, exec, attach, port-forward)
/// aside: kube-apiserver's `--max-requests-inflight` (400) and
/// `--max-mutating-requests-inflight` (200) together.
pub const MAX_REQUESTS_IN_FLIGHT: usize = 600;

/// Whether a request may run for as long as its client wants (not counted in flight).
fn long_running(request: &axum::extract::Request) -> bool {
    let path = request.uri().path();
    let watch = request.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|pair| matches!(pair, "watch=true" | "watch=1" | "follow=true" | "follow=1"))
    });
    watch
        || path.contains("/watch/")
        || ["/exec", "/attach", "/portforward", "/log"]
            .iter()
            .any(|streamed| path.ends_with(streamed))
}

/// Answers 429 with `Retry-After` past [`MAX_REQUESTS_IN_FLIGHT`] requests at once.
async fn limit_in_flight(
    axum::extract::State(slots): axum::extract::State<Arc<Semaphore>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if long_running(&request) {
        return next.run(request).await;
    }
    let Ok(_slot) = slots.try_acquire() else {
        return ApiError::TooManyRequests.into_response();
    };
    next.run(request).await
}

/// `/version/` → `/version`, keeping the query; `/` stays.
fn trim_trailing_slash(mut request: axum::extract::Request) -> axum::extract::Request {
    let path = request.uri().path();
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = match path.trim_end_matches('/') {
            "" => "/",
            trimmed => trimmed,
        };
        let path_and_query = match request.uri().query() {
            Some(query) => format!("{trimmed}?{query}"),
            None => trimmed.to_string(),
        };
        let mut parts = request.uri().clone().into_parts();
        if let Ok(pq) = path_and_query.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = http::Uri::from_parts(parts) {
                *request.uri_mut() = uri;
            }
        }
    }
    request
}

fn routes(server: Arc<Server>) -> Router {
    Router::new()
        .route("/version", get(discovery::version))
        .route("/api", get(discovery::api))
        .route("/apis", get(discovery::apis))
        .route("/openapi/v2", get(openapi::v2))
        .route("/openapi/v3", get(openapi::v3_root))
        .route("/openapi/v3/{*path}", get(openapi::v3_group_version))
        .route("/healthz", get(health))
        .route("/livez", get(health))
        .route("/readyz", get(health))
        .route("/metrics", get(handlers::metrics::render))
        .route("/wasmkube/snapshot", get(handlers::snapshot::take))
        .route(
            "/api/v1/namespaces/{namespace}/pods/{name}/log",
            any(handlers::streams::log),
        )
        .route(
            "/api/v1/namespaces/{namespace}/pods/{name}/exec",
            any(handlers::streams::exec),
        )
        .route(
            "/api/v1/namespaces/{namespace}/pods/{name}/attach",
            any(handlers::streams::attach),
        )
        .route(
            "/api/v1/namespaces/{namespace}/pods/{name}/portforward",
            any(handlers::streams::port_forward),
        )
        .route("/api/{*rest}", any(handlers::handle))
        .route("/apis/{*rest}", any(handlers::handle))
        .fallback(|| async { ApiError::UnknownResource })
        .layer(axum::middleware::from_fn_with_state(
            server.clone(),
            handlers::metrics::observe,
        ))
        .layer(axum::middleware::from_fn_with_state(
            server.clone(),
            auth::guard,
        ))
        .with_state(server)
}

async fn health() -> &'static str {
    "ok"
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use axum::body::Body;
    use tower::ServiceExt as _;

    /// A router under a cap of `cap` whose `/hold` and `/watch/x` count themselves in `entered`
    /// and wait until `release` says true.
    fn capped(
        cap: usize,
        entered: Arc<AtomicUsize>,
        release: tokio::sync::watch::Receiver<bool>,
    ) -> Router {
        let wait = move || {
            let (entered, mut release) = (entered.clone(), release.clone());
            async move {
                entered.fetch_add(1, Ordering::SeqCst);
                let _ = release.wait_for(|go| *go).await;
            }
        };
        Router::new()
            .route("/hold", get(wait.clone()))
            .route("/watch/x", get(wait))
            .route("/quick", get(health))
            .layer(axum::middleware::from_fn_with_state(
                Arc::new(Semaphore::new(cap)),
                limit_in_flight,
            ))
    }

    fn call(app: &Router, path: &str) -> tokio::task::JoinHandle<http::Response<Body>> {
        let request = http::Request::get(path)
            .body(Body::empty())
            .expect("request");
        let app = app.clone();
        tokio::spawn(async move { app.oneshot(request).await.expect("infallible") })
    }

    #[tokio::test]
    async fn past_the_cap_a_request_gets_429_with_retry_after_and_long_running_ones_do_not_count() {
        let entered = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let app = capped(2, entered.clone(), released);
        let held: Vec<_> = (0..2).map(|_| call(&app, "/hold")).collect();
        // A watch is long-running: it neither takes a slot nor is refused.
        let watch = call(&app, "/watch/x");
        while entered.load(Ordering::SeqCst) < 3 {
            tokio::task::yield_now().await;
        }
        let refused = call(&app, "/quick").await.expect("task");
        assert_eq!(refused.status(), http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()[http::header::RETRY_AFTER], "1");
        let body = axum::body::to_bytes(refused.into_body(), 1 << 16)
            .await
            .expect("body");
        let status: serde_json::Value = serde_json::from_slice(&body).expect("a Status");
        assert_eq!(status["reason"], "TooManyRequests");
        assert_eq!(status["details"]["retryAfterSeconds"], 1);
        // Once the held requests end, their slots serve again.
        release.send_replace(true);
        for done in held.into_iter().chain([watch]) {
            assert_eq!(done.await.expect("task").status(), http::StatusCode::OK);
        }
        let served = call(&app, "/quick").await.expect("task");
        assert_eq!(served.status(), http::StatusCode::OK);
    }
}
