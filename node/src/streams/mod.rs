//! The agent's own HTTPS API, the kubelet's streaming endpoints: container logs, exec, attach
//! and port-forward, which the apiserver proxies `kubectl logs/exec/attach/port-forward` to,
//! authenticated by its client certificate (`server.rs`).

mod attach;
mod channel;
pub mod container_logs;
mod exec;
mod portforward;
mod server;
mod session;
mod spdy;

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use http::StatusCode;
use serde_json::{Value, json};

use crate::api::{Api, ApiError};
use crate::console::Consoles;
use crate::pod::{LABEL_ATTEMPT, LABEL_CONTAINER, LABEL_POD_UID};
use crate::runtime::{Found, Runtime, RuntimeError};
use container_logs::{LogOptions, LogQuery, LogStream, LogsError};

pub use server::{ServeError, bind, serve};

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Logs(#[from] LogsError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl IntoResponse for StreamError {
    /// A Kubernetes `Status`, which the apiserver hands on to kubectl.
    fn into_response(self) -> Response {
        let (code, reason) = match &self {
            StreamError::BadRequest(_) | StreamError::Logs(LogsError::BadOption(_)) => {
                (StatusCode::BAD_REQUEST, "BadRequest")
            }
            StreamError::Logs(LogsError::NotStarted { .. } | LogsError::NoPrevious { .. }) => {
                (StatusCode::BAD_REQUEST, "BadRequest")
            }
            StreamError::NotFound(_) => (StatusCode::NOT_FOUND, "NotFound"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        };
        let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.to_string(), "reason": reason,
            "code": code.as_u16()});
        (code, axum::Json(status)).into_response()
    }
}

/// What the endpoints need of the agent.
pub struct Streams {
    pub api: Api,
    pub runtime: Arc<dyn Runtime>,
    pub node_name: String,
    /// Container logs, laid out as the kubelet's `/var/log/pods`.
    pub log_dir: PathBuf,
    /// The running containers' consoles, for attach.
    pub consoles: Arc<Consoles>,
}

impl Streams {
    /// The pod, if it is on this node.
    async fn pod(&self, namespace: &str, name: &str) -> Result<Value, StreamError> {
        let pod = self
            .api
            .get(&format!("/api/v1/namespaces/{namespace}/pods/{name}"))
            .await?
            .filter(|pod| {
                pod.pointer("/spec/nodeName").and_then(Value::as_str) == Some(&self.node_name)
            })
            .ok_or_else(|| {
                StreamError::NotFound(format!(
                    "pod \"{name}\" not found on node {}",
                    self.node_name
                ))
            })?;
        Ok(pod)
    }

    /// The containers of this node's pod `uid` named `container`, newest first.
    async fn containers(&self, uid: &str, container: &str) -> Result<Vec<Found>, StreamError> {
        let mut found: Vec<Found> = self
            .runtime
            .list()
            .await?
            .into_iter()
            .filter(|c| {
                c.labels.get(LABEL_POD_UID).map(String::as_str) == Some(uid)
                    && c.labels.get(LABEL_CONTAINER).map(String::as_str) == Some(container)
            })
            .collect();
        found.sort_by_key(|c| std::cmp::Reverse(c.created));
        Ok(found)
    }

    /// The id of the running container `container` of the pod, once the pod and container are
    /// checked.
    async fn running(
        &self,
        namespace: &str,
        name: &str,
        container: &str,
    ) -> Result<String, StreamError> {
        let pod = self.pod(namespace, name).await?;
        check_container(&pod, container)?;
        self.containers(uid(&pod), container)
            .await?
            .into_iter()
            .find(|c| c.exit.is_none())
            .map(|c| c.id)
            .ok_or_else(|| {
                StreamError::BadRequest(format!(
                    "container {container} in pod {name} is not running"
                ))
            })
    }
}

fn uid(pod: &Value) -> &str {
    pod.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// That the pod has a container (or init container) `name`.
fn check_container(pod: &Value, name: &str) -> Result<(), StreamError> {
    let spec = &pod["spec"];
    let named = |list: &Value| {
        list.as_array()
            .is_some_and(|l| l.iter().any(|c| c["name"] == name))
    };
    if named(&spec["containers"]) || named(&spec["initContainers"]) {
        return Ok(());
    }
    let pod_name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Err(StreamError::BadRequest(format!(
        "container {name} is not valid for pod {pod_name}"
    )))
}

/// The restart count the pod's status reports for the container.
fn restart_count(pod: &Value, container: &str) -> u32 {
    ["containerStatuses", "initContainerStatuses"]
        .iter()
        .filter_map(|list| pod["status"][list].as_array())
        .flatten()
        .find(|s| s["name"] == container)
        .and_then(|s| s["restartCount"].as_u64())
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0)
}

/// The endpoints.
pub fn router(streams: Arc<Streams>) -> Router {
    Router::new()
        .route("/containerLogs/{namespace}/{pod}/{container}", get(logs))
        .route("/exec/{namespace}/{pod}/{container}", any(exec::exec))
        .route("/attach/{namespace}/{pod}/{container}", any(attach::attach))
        .route(
            "/portForward/{namespace}/{pod}",
            any(portforward::port_forward),
        )
        .with_state(streams)
}

/// `GET /containerLogs/{namespace}/{pod}/{container}`: the container's log, followed if asked.
async fn logs(
    State(streams): State<Arc<Streams>>,
    Path((namespace, name, container)): Path<(String, String, String)>,
    Query(query): Query<LogQuery>,
) -> Result<Response, StreamError> {
    let options = LogOptions::parse(&query, chrono::Utc::now())?;
    let pod = streams.pod(&namespace, &name).await?;
    check_container(&pod, &container)?;
    let uid = uid(&pod);
    let dir = streams
        .log_dir
        .join(format!("{namespace}_{name}_{uid}"))
        .join(&container);
    let restarts = restart_count(&pod, &container);
    let attempt = container_logs::attempt(&dir, options.previous, restarts, &name, &container)?;
    // Following ends when that attempt's process ends.
    let found = streams.containers(uid, &container).await?;
    let id = found
        .into_iter()
        .find(|c| c.labels.get(LABEL_ATTEMPT) == Some(&attempt.to_string()))
        .map(|c| c.id);
    let runtime = streams.runtime.clone();
    let exited = async move {
        if let Some(id) = id {
            let _ = runtime.wait(&id).await;
        }
    };
    let stream = LogStream::open(&dir, attempt, options, exited).await?;
    let body = futures::stream::unfold(stream, |mut stream| async move {
        let chunk = stream.next().await?;
        Some((Ok::<_, Infallible>(bytes::Bytes::from(chunk)), stream))
    });
    Ok((
        [(http::header::CONTENT_TYPE, "text/plain")],
        Body::from_stream(body),
    )
        .into_response())
}
