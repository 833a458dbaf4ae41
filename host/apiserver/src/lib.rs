//! The wasmkube apiserver: the Kubernetes REST API over the revisioned store, as `fn app() -> Router`.

mod admission;
mod allocator;
mod apply;
pub mod config;
pub mod controllers;
mod discovery;
pub mod error;
pub mod events;
pub mod handlers;
pub mod metrics;
pub mod node_agent;
pub mod objects;
mod openapi;
pub mod request;
mod response;
mod serve;
pub mod strategy;
pub mod tls;
mod watch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use axum::Router;
use axum::routing::{any, get};
use serde_json::Value;
use wasmkube_model::resource::{PrinterColumn, Registry, ResourceInfo, ScalePaths, builtins};
use wasmkube_store::Store;

use crate::error::ApiError;
use crate::objects::Objects;

pub use crate::allocator::ServiceRange;
pub use crate::config::ClusterConfig;
pub use crate::metrics::Metrics;
pub use crate::serve::serve_tls;

/// The shared state of every request.
pub struct Server {
    pub objects: Objects,
    registry: ArcSwap<Registry>,
    pub metrics: Metrics,
    /// The stored CRDs, as of the last registry refresh.
    crds: ArcSwap<Vec<Value>>,
    /// Generated OpenAPI documents by path, dropped when the registry changes.
    openapi_cache: Mutex<HashMap<String, Arc<Value>>>,
    /// `/openapi/v2` in protobuf, dropped with the rest of the cache.
    openapi_v2_protobuf: Mutex<Option<Arc<Vec<u8>>>>,
    /// Where Services get their cluster IPs.
    pub service_range: ServiceRange,
    /// The pod network, node health timing and default tolerations.
    pub cluster: ClusterConfig,
    /// The bearer token every request must carry; `None` disables authentication (tests).
    token: Option<String>,
}

impl Server {
    /// A server over `store`, serving the built-ins and every CRD already stored, with the
    /// default [`ClusterConfig`].
    pub async fn new(store: Arc<dyn Store>, token: Option<String>) -> Result<Arc<Self>, ApiError> {
        Self::with_config(store, token, ClusterConfig::default()).await
    }

    /// A server over `store` for the cluster `cluster` describes.
    pub async fn with_config(
        store: Arc<dyn Store>,
        token: Option<String>,
        cluster: ClusterConfig,
    ) -> Result<Arc<Self>, ApiError> {
        let metrics = Metrics::default();
        let server = Arc::new(Server {
            objects: Objects::new(metrics::MeteredStore::wrap(store, &metrics)),
            registry: ArcSwap::from_pointee(Registry::new(builtins())),
            metrics,
            crds: ArcSwap::from_pointee(Vec::new()),
            openapi_cache: Mutex::new(HashMap::new()),
            openapi_v2_protobuf: Mutex::new(None),
            service_range: ServiceRange::default(),
            cluster,
            token,
        });
        server.refresh_registry().await?;
        Ok(server)
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.registry.load_full()
    }

    /// Rebuilds the registry from the built-ins and the stored CRDs (after any CRD write).
    pub async fn refresh_registry(&self) -> Result<(), ApiError> {
        let registry = self.registry();
        let crd_info = registry
            .by_kind("apiextensions.k8s.io/v1", "CustomResourceDefinition")
            .cloned()
            .ok_or_else(|| ApiError::Internal("CRDs are not served".into()))?;
        let crds = self
            .objects
            .list(&crd_info, None, None, None, None, |_| true)
            .await?;
        let mut resources = builtins();
        resources.extend(crds.items.iter().flat_map(crd_resources));
        self.registry.store(Arc::new(Registry::new(resources)));
        self.crds.store(Arc::new(crds.items));
        if let Ok(mut cache) = self.openapi_cache.lock() {
            cache.clear();
        }
        if let Ok(mut cache) = self.openapi_v2_protobuf.lock() {
            *cache = None;
        }
        Ok(())
    }
}

/// The resources a CRD serves: one per served version.
fn crd_resources(crd: &Value) -> Vec<ResourceInfo> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let list = |v: &Value| {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(String::from))
            .collect::<Vec<_>>()
    };
    spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["served"] != false)
        .map(|v| {
            let scale = &v["subresources"]["scale"];
            ResourceInfo {
                group: text(&spec["group"]),
                version: text(&v["name"]),
                kind: text(&names["kind"]),
                plural: text(&names["plural"]),
                singular: match text(&names["singular"]) {
                    s if s.is_empty() => text(&names["kind"]).to_lowercase(),
                    s => s,
                },
                short_names: list(&names["shortNames"]),
                categories: list(&names["categories"]),
                namespaced: spec["scope"] != "Cluster",
                status: v["subresources"]["status"].is_object(),
                scale: scale.is_object().then(|| ScalePaths {
                    spec_replicas: text(&scale["specReplicasPath"]),
                    status_replicas: text(&scale["statusReplicasPath"]),
                    label_selector: scale["labelSelectorPath"].as_str().map(String::from),
                }),
                extra_subresources: Vec::new(),
                custom: true,
                schema: v.pointer("/schema/openAPIV3Schema").cloned(),
                printer_columns: v["additionalPrinterColumns"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| PrinterColumn {
                        name: text(&c["name"]),
                        kind: text(&c["type"]),
                        json_path: text(&c["jsonPath"]),
                        priority: c["priority"].as_i64().unwrap_or(0),
                        description: text(&c["description"]),
                    })
                    .collect(),
            }
        })
        .collect()
}

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
        .route("/metrics", get(metrics::render))
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
            metrics::observe,
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
