//! Requests handed on to a node agent over HTTPS: plain ones streamed back, upgraded ones
//! (WebSocket, SPDY) spliced byte for byte once both sides switched protocols.

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::{HeaderMap, StatusCode, header};
use hyper_util::rt::TokioIo;

use super::Agent;
use crate::error::ApiError;

/// Headers that belong to one hop, or that the proxy sets itself.
fn hop_by_hop(name: &header::HeaderName) -> bool {
    [
        header::HOST,
        header::AUTHORIZATION,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
    ]
    .contains(name)
}

/// A client of `agent` presenting the apiserver's client certificate. The agents' serving
/// certificates are their own, self-signed: not verified (as kube-apiserver does not verify
/// kubelets' by default).
fn client(agent: &Agent) -> Result<reqwest::Client, ApiError> {
    let failed =
        |e: reqwest::Error| ApiError::Internal(format!("building the node agent client: {e}"));
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .danger_accept_invalid_certs(true)
        .http1_only();
    if let Some(pem) = &agent.client_pem {
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).map_err(failed)?);
    }
    builder.build().map_err(failed)
}

async fn send(
    agent: &Agent,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, ApiError> {
    request
        .send()
        .await
        .map_err(|e| ApiError::Internal(format!("reaching the node agent at {}: {e}", agent.base)))
}

/// The agent's answer as ours: its status, content type and body, streamed.
fn pass_on(response: reqwest::Response) -> Result<Response, ApiError> {
    let mut reply = Response::builder().status(response.status());
    if let Some(content_type) = response.headers().get(header::CONTENT_TYPE) {
        reply = reply.header(header::CONTENT_TYPE, content_type);
    }
    reply
        .body(Body::from_stream(response.bytes_stream()))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// `GET path` on the agent, its answer streamed back.
pub async fn get(agent: &Agent, path: &str) -> Result<Response, ApiError> {
    let response = send(agent, client(agent)?.get(format!("{}{path}", agent.base))).await?;
    pass_on(response)
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("upgrade"))
}

/// Hands an upgrade request on to the agent; when it switches protocols, so do we, and the two
/// connections are joined. Anything else it answers is passed back.
pub async fn upgrade(
    agent: &Agent,
    path: &str,
    mut request: Request,
) -> Result<Response, ApiError> {
    if !is_upgrade(request.headers()) {
        return Err(ApiError::BadRequest("Upgrade request required".into()));
    }
    let ours = hyper::upgrade::on(&mut request);
    let mut forward =
        client(agent)?.request(request.method().clone(), format!("{}{path}", agent.base));
    for (name, value) in request.headers() {
        if !hop_by_hop(name) {
            forward = forward.header(name, value);
        }
    }
    let response = send(agent, forward).await?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return pass_on(response);
    }
    let mut reply = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (name, value) in response.headers() {
        reply = reply.header(name, value);
    }
    let theirs = response.upgrade();
    tokio::spawn(async move {
        match tokio::join!(ours, theirs) {
            (Ok(ours), Ok(mut theirs)) => {
                let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(ours), &mut theirs).await;
            }
            (Err(e), _) => tracing::debug!(error = %e, "the client's upgrade failed"),
            (_, Err(e)) => tracing::debug!(error = %e, "the node agent's upgrade failed"),
        }
    });
    reply
        .body(Body::empty())
        .map_err(|e| ApiError::Internal(e.to_string()))
}
