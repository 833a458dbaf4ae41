//! The wasmkube apiserver: the Kubernetes REST API over the revisioned store, as `fn app() -> Router`.

pub mod config;
mod discovery;
pub mod error;
mod handlers;
pub mod metrics;
pub mod node_agent;
pub mod objects;
mod openapi;
pub mod registry;
mod request;
mod response;
mod serve;
pub mod server;
pub mod tls;

use std::sync::Arc;

use axum::Router;
use axum::routing::{any, get};

use crate::error::ApiError;

pub use crate::config::{ClusterConfig, ServiceRange};
pub use crate::metrics::Metrics;
pub use crate::serve::serve_tls;
pub use crate::server::Server;

/// The whole HTTP API: discovery, OpenAPI, health, metrics and every resource. Every path
/// answers with or without a trailing slash, as kube-apiserver's router does (`/version/`).
pub fn app(server: Arc<Server>) -> Router {
    use tower::ServiceExt as _;
    Router::new().fallback_service(routes(server).map_request(trim_trailing_slash))
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
            authenticate,
        ))
        .with_state(server)
}

async fn health() -> &'static str {
    "ok"
}

/// Rejects requests without the server's bearer token with a 401 `Status` (health and version are public).
async fn authenticate(
    axum::extract::State(server): axum::extract::State<Arc<Server>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let public = matches!(
        request.uri().path(),
        "/healthz" | "/livez" | "/readyz" | "/version"
    );
    if let Some(token) = server.token.as_ref().filter(|_| !public) {
        let given = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            return ApiError::Unauthorized.into_response();
        }
    }
    next.run(request).await
}
