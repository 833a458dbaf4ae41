//! `/openapi/v2` and `/openapi/v3`: documents generated from the types (and CRD schemas), cached until the registry changes.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use wasmkube_model::openapi;
use wasmkube_model::resource::ResourceInfo;

use crate::Server;
use crate::error::ApiError;

/// The `openAPIV3Schema` a CRD declares for one of its versions.
fn crd_schema(crds: &[Value], info: &ResourceInfo) -> Option<Value> {
    crds.iter()
        .filter(|crd| {
            crd["spec"]["group"] == info.group.as_str()
                && crd["spec"]["names"]["plural"] == info.plural.as_str()
        })
        .flat_map(|crd| {
            crd["spec"]["versions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|v| v["name"] == info.version.as_str())
        .and_then(|v| v.pointer("/schema/openAPIV3Schema").cloned())
}

fn cached(server: &Server, key: &str, build: impl FnOnce() -> Option<Value>) -> Option<Arc<Value>> {
    if let Some(doc) = server
        .openapi_cache
        .lock()
        .ok()
        .and_then(|c| c.get(key).cloned())
    {
        return Some(doc);
    }
    let doc = Arc::new(build()?);
    if let Ok(mut cache) = server.openapi_cache.lock() {
        cache.insert(key.to_string(), doc.clone());
    }
    Some(doc)
}

fn respond(doc: Option<Arc<Value>>) -> Response {
    match doc {
        Some(doc) => axum::Json(doc.as_ref()).into_response(),
        None => ApiError::UnknownResource.into_response(),
    }
}

pub async fn v2(State(server): State<Arc<Server>>) -> Response {
    respond(cached(&server, "v2", || {
        Some(openapi::v2(&server.registry()))
    }))
}

pub async fn v3_root(State(server): State<Arc<Server>>) -> Response {
    respond(cached(&server, "v3", || {
        Some(openapi::v3_root(&server.registry()))
    }))
}

/// `/openapi/v3/api/v1` and `/openapi/v3/apis/{group}/{version}` (the `hash` query is ignored).
pub async fn v3_group_version(
    State(server): State<Arc<Server>>,
    Path(path): Path<String>,
) -> Response {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version) = match segments.as_slice() {
        ["api", version] => ("", *version),
        ["apis", group, version] => (*group, *version),
        _ => return ApiError::UnknownResource.into_response(),
    };
    let crds = server.crds.load_full();
    respond(cached(&server, &path, || {
        openapi::v3_group_version_with(
            &server.registry(),
            group,
            version,
            &|info: &ResourceInfo| crd_schema(&crds, info),
        )
    }))
}
