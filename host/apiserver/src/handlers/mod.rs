//! The resource endpoints: one entry point that parses the path and dispatches on verb and subresource.

mod delete;
pub mod metrics;
mod plugin_log;
mod read;
mod scale;
pub mod snapshot;
pub mod streams;
mod token;
mod watch;
mod write;

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, Method, Uri};

use serde_json::Value;

use crate::auth::User;
use crate::discovery;
use crate::error::ApiError;
use crate::request::{self, Query, Target};
use crate::response::Format;
use crate::server::Server;

/// Everything under `/api/` and `/apis/`.
pub async fn handle(
    State(server): State<Arc<Server>>,
    user: Option<Extension<Arc<User>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    if let Some(response) = discovery::group_paths(&server, &path) {
        return response;
    }
    let user = user.map_or_else(|| Arc::new(User::token_admin()), |Extension(user)| user);
    match route(&server, user, &method, &uri, &headers, body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// One resource request, parsed: what every endpoint gets.
pub struct Call<'a> {
    pub server: &'a Arc<Server>,
    /// Who makes the request.
    pub user: Arc<User>,
    pub target: Target,
    pub query: Query,
    pub headers: &'a HeaderMap,
    pub content_type: &'a str,
    pub body: Bytes,
}

impl Call<'_> {
    /// JSON or a Table, as the client accepts.
    pub fn format(&self) -> Format {
        Format::negotiate(self.headers, self.query.include_object.as_deref())
    }

    /// The field manager of this write.
    pub fn manager(&self) -> String {
        request::field_manager(self.query.field_manager.as_deref(), self.headers)
    }

    /// The body as an object.
    pub fn object(&self) -> Result<Value, ApiError> {
        request::parse_body(&self.body, self.content_type)
    }
}

async fn route(
    server: &Arc<Server>,
    user: Arc<User>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let registry = server.registry();
    let target = request::parse(&registry, uri.path())?;
    let invalid_query = |e: axum::extract::rejection::QueryRejection| {
        ApiError::BadRequest(format!("invalid query: {e}"))
    };
    let query: Query = axum::extract::Query::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(invalid_query)?;
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("application/json");
    check_subresource(&target)?;
    let call = Call {
        server,
        user,
        target,
        query,
        headers,
        content_type,
        body,
    };
    let (named, sub, watch) = (
        call.target.name.is_some(),
        call.target.subresource.as_deref(),
        call.query.is_watch(),
    );
    if call.target.info.create_only() {
        return match (method, named) {
            (&Method::POST, false) => write::review(&call),
            _ => Err(ApiError::MethodNotAllowed),
        };
    }
    match (method.clone(), named, sub) {
        (Method::GET, false, None) if watch => watch::serve(&call).await,
        (Method::GET, false, None) => read::list(&call).await,
        (Method::GET, true, Some("scale")) => scale::get(&call).await,
        (Method::GET, true, Some("log")) => {
            let pairs: Vec<(String, String)> = axum::extract::Query::try_from_uri(uri)
                .map(|q| q.0)
                .map_err(invalid_query)?;
            plugin_log::get(&call, &pairs).await
        }
        (_, _, Some("log")) => Err(ApiError::MethodNotAllowed),
        (Method::GET, true, _) if watch => watch::serve(&call).await,
        (Method::GET, true, _) => read::get(&call).await,
        (Method::POST, false, None) => write::create(&call).await,
        (Method::POST, true, Some("binding")) => write::bind(&call).await,
        (Method::POST, true, Some("eviction")) => delete::evict(&call).await,
        (Method::POST, true, Some("token")) => token::request(&call).await,
        (Method::PUT, true, Some("scale")) => scale::update(&call).await,
        (Method::PUT, true, _) => write::replace(&call).await,
        (Method::PATCH, true, Some("scale")) => scale::patch(&call).await,
        (Method::PATCH, true, _) => write::patch(&call).await,
        (Method::DELETE, true, None) => delete::delete(&call).await,
        (Method::DELETE, false, None) => delete::delete_collection(&call).await,
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
