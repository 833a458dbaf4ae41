//! The resource endpoints: one entry point that parses the path and dispatches on verb and subresource.

mod delete;
mod read;
mod scale;
mod write;

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, Method, Uri};

use crate::Server;
use crate::discovery;
use crate::error::ApiError;
use crate::request::{self, Query, Target};

pub use delete::{DeleteOptions, Propagation, delete_object, remove_finalizer};
pub use read::Filter;
pub use write::{Update, WriteOptions, create_object, update_with};

/// Everything under `/api/` and `/apis/`.
pub async fn handle(
    State(server): State<Arc<Server>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    if let Some(response) = discovery::group_paths(&server, &path) {
        return response;
    }
    match route(&server, &method, &uri, &headers, body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn route(
    server: &Arc<Server>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let registry = server.registry();
    let target = request::parse(&registry, uri.path())?;
    let query: Query = axum::extract::Query::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| ApiError::BadRequest(format!("invalid query: {e}")))?;
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("application/json");
    let sub = target.subresource.as_deref();
    check_subresource(&target)?;
    match (method.clone(), target.name.is_some(), sub) {
        (Method::GET, false, None) if query.is_watch() => {
            crate::watch::serve(server, &target, &query, headers).await
        }
        (Method::GET, false, None) => read::list(server, &target, &query, headers).await,
        (Method::GET, true, Some("scale")) => scale::get(server, &target).await,
        (Method::GET, true, _) if query.is_watch() => {
            crate::watch::serve(server, &target, &query, headers).await
        }
        (Method::GET, true, _) => read::get(server, &target, &query, headers).await,
        (Method::POST, false, None) => {
            write::create(server, &target, &query, headers, content_type, &body).await
        }
        (Method::POST, true, Some("binding")) => {
            write::bind(server, &target, content_type, &body).await
        }
        (Method::POST, true, Some("eviction")) => delete::evict(server, &target).await,
        (Method::PUT, true, Some("scale")) => {
            scale::update(server, &target, &query, headers, content_type, &body).await
        }
        (Method::PUT, true, _) => {
            write::replace(server, &target, &query, headers, content_type, &body).await
        }
        (Method::PATCH, true, Some("scale")) => {
            scale::patch(server, &target, &query, headers, content_type, &body).await
        }
        (Method::PATCH, true, _) => {
            write::patch(server, &target, &query, headers, content_type, &body).await
        }
        (Method::DELETE, true, None) => {
            delete::delete(server, &target, &query, content_type, &body).await
        }
        (Method::DELETE, false, None) => {
            delete::delete_collection(server, &target, &query, content_type, &body).await
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

/// 404 for subresources the resource does not have.
fn check_subresource(target: &Target) -> Result<(), ApiError> {
    match target.subresource.as_deref() {
        None => Ok(()),
        Some("finalize") if target.info.kind == "Namespace" => Ok(()),
        Some(sub) if target.info.subresources().contains(&sub) => Ok(()),
        Some(_) => Err(ApiError::UnknownResource),
    }
}
