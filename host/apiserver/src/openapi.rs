//! `/openapi/v2` and `/openapi/v3`: documents generated from the types (and CRD schemas), cached until the registry changes.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serde_json::Value;
use wasmkube_model::openapi;
use wasmkube_model::resource::ResourceInfo;

use crate::error::ApiError;
use crate::server::Server;

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

/// What kubectl asks for (`…spec.v2@v1.0+protobuf`), and the Content-Type kube-openapi answers
/// with (Go cannot parse the `@` form back).
const V2_PROTOBUF_ACCEPT: [&str; 2] = [
    "com.github.proto-openapi.spec.v2@v1.0+protobuf",
    "com.github.proto-openapi.spec.v2.v1.0+protobuf",
];
const V2_PROTOBUF_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// `/openapi/v2`: gnostic protobuf when asked for (kubectl's client-side validation), else JSON.
pub async fn v2(State(server): State<Arc<Server>>, headers: HeaderMap) -> Response {
    let doc = cached(&server, "v2", || Some(openapi::v2(&server.registry())));
    let accept = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match doc {
        Some(doc) if V2_PROTOBUF_ACCEPT.iter().any(|t| accept.contains(t)) => {
            let bytes = match server.openapi_v2_protobuf.lock() {
                Ok(mut cache) => cache
                    .get_or_insert_with(|| Arc::new(openapi::v2_protobuf(&doc)))
                    .clone(),
                Err(_) => Arc::new(openapi::v2_protobuf(&doc)),
            };
            (
                [(http::header::CONTENT_TYPE, V2_PROTOBUF_TYPE)],
                bytes.as_ref().clone(),
            )
                .into_response()
        }
        doc => respond(doc),
    }
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
    // Keyed by what the document is of, not by the path's spelling.
    respond(cached(&server, &format!("v3:{group}/{version}"), || {
        openapi::v3_group_version_with(
            &server.registry(),
            group,
            version,
            &|info: &ResourceInfo| crd_schema(&crds, info),
        )
    }))
}
