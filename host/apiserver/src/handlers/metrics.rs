//! `/metrics`, and the middleware that times every request into the server's metrics.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::server::Server;

/// The verb and resource of a request path, as Kubernetes labels them.
fn classify(method: &http::Method, path: &str, query: &str) -> (String, String) {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest: &[&str] = match segments.as_slice() {
        ["api", _, rest @ ..] => rest,
        ["apis", _, _, rest @ ..] => rest,
        // Only the methods HTTP defines: any other token would be a new series.
        _ => {
            let verb = match *method {
                http::Method::GET => "get",
                http::Method::HEAD => "head",
                http::Method::POST => "post",
                http::Method::PUT => "put",
                http::Method::PATCH => "patch",
                http::Method::DELETE => "delete",
                http::Method::OPTIONS => "options",
                _ => "other",
            };
            return (verb.into(), String::new());
        }
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
    let (verb, mut resource) = classify(
        request.method(),
        request.uri().path(),
        request.uri().query().unwrap_or(""),
    );
    // Labels only from the resources served: a client inventing paths makes no new series.
    if !resource.is_empty() && !server.registry().all().iter().any(|i| i.plural == resource) {
        resource = "unknown".into();
    }
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
