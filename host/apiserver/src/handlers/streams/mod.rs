//! `pods/log`, `pods/exec`, `pods/attach` and `pods/portforward`: kubectl's streaming requests, checked here and
//! handed to the node agent of the pod's node, as kube-apiserver hands them to the kubelet.

mod proxy;

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use http::{Method, Uri};
use serde_json::Value;

use crate::Server;
use crate::error::ApiError;

/// The port a node agent listens on when its Node does not say.
const DEFAULT_AGENT_PORT: u64 = 10250;

/// A node agent's API: its node, its base URL, the CA its serving certificate must chain to,
/// and the client certificate and key (PEM) it is reached with.
pub struct Agent {
    node: String,
    base: String,
    ca_pem: Option<String>,
    client_pem: Option<String>,
}

async fn object(
    server: &Server,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Value, ApiError> {
    let registry = server.registry();
    let info = registry
        .by_kind("v1", kind)
        .ok_or_else(|| ApiError::Internal(format!("{kind} is not served")))?;
    Ok(server.objects.must_get(info, namespace, name).await?.object)
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect()
}

/// The container a request is about: the one named, or the pod's only container.
fn container(pod: &Value, requested: Option<&str>) -> Result<String, ApiError> {
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let spec = &pod["spec"];
    let containers = names(&spec["containers"]);
    let init = names(&spec["initContainers"]);
    match requested.filter(|c| !c.is_empty()) {
        Some(wanted) if containers.contains(&wanted) || init.contains(&wanted) => {
            Ok(wanted.to_string())
        }
        Some(wanted) => Err(ApiError::BadRequest(format!(
            "container {wanted} is not valid for pod {name}"
        ))),
        None if containers.len() == 1 => Ok(containers[0].to_string()),
        None => {
            let mut message = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                message.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(ApiError::BadRequest(message))
        }
    }
}

/// The agent of the node the pod is on.
async fn agent(server: &Server, pod: &Value) -> Result<Agent, ApiError> {
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::BadRequest(format!("pod {name} does not have a host assigned")))?;
    let node = object(server, "Node", None, node_name).await?;
    let addresses = node.pointer("/status/addresses").and_then(Value::as_array);
    let address = addresses
        .and_then(|a| {
            a.iter()
                .find(|a| a["type"] == "InternalIP")
                .or_else(|| a.first())
        })
        .and_then(|a| a["address"].as_str())
        .ok_or_else(|| ApiError::BadRequest(format!("node {node_name} has no address")))?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .filter(|p| *p > 0)
        .unwrap_or(DEFAULT_AGENT_PORT);
    let host = if address.contains(':') {
        format!("[{address}]")
    } else {
        address.to_string()
    };
    Ok(Agent {
        node: node_name.to_string(),
        base: format!("https://{host}:{port}"),
        ca_pem: server.cluster.root_ca.clone(),
        client_pem: server.cluster.kubelet_client.clone(),
    })
}

/// The request's query, and the value of `container` in it.
fn requested_container(query: &[(String, String)]) -> Option<&str> {
    query
        .iter()
        .find(|(k, _)| k == "container")
        .map(|(_, v)| v.as_str())
}

fn with_query(path: String, query: Option<&str>) -> String {
    match query {
        Some(query) if !query.is_empty() => format!("{path}?{query}"),
        _ => path,
    }
}

/// `GET pods/{name}/log`: the container's log from its node agent, streamed.
pub async fn log(
    State(server): State<Arc<Server>>,
    Path((namespace, name)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    method: Method,
    uri: Uri,
) -> Response {
    let result = async {
        if method != Method::GET {
            return Err(ApiError::MethodNotAllowed);
        }
        let pod = object(&server, "Pod", Some(&namespace), &name).await?;
        let container = container(&pod, requested_container(&query))?;
        let agent = agent(&server, &pod).await?;
        let path = format!("/containerLogs/{namespace}/{name}/{container}");
        proxy::get(&agent, &with_query(path, uri.query())).await
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// `pods/{name}/exec` (GET or POST, upgraded): the command's streams spliced to the agent's.
pub async fn exec(
    State(server): State<Arc<Server>>,
    Path((namespace, name)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    request: Request,
) -> Response {
    to_container(&server, "exec", &namespace, &name, &query, request).await
}

/// `pods/{name}/attach` (GET or POST, upgraded): the container's own streams spliced to the
/// agent's.
pub async fn attach(
    State(server): State<Arc<Server>>,
    Path((namespace, name)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    request: Request,
) -> Response {
    to_container(&server, "attach", &namespace, &name, &query, request).await
}

/// An upgraded request about one container, handed to the agent's `/{endpoint}/…`.
async fn to_container(
    server: &Server,
    endpoint: &str,
    namespace: &str,
    name: &str,
    query: &[(String, String)],
    request: Request,
) -> Response {
    let result = async {
        let pod = object(server, "Pod", Some(namespace), name).await?;
        let container = container(&pod, requested_container(query))?;
        let agent = agent(server, &pod).await?;
        let path = format!("/{endpoint}/{namespace}/{name}/{container}");
        let path = with_query(path, request.uri().query());
        proxy::upgrade(&agent, &path, request).await
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// `pods/{name}/portforward` (GET or POST, upgraded): spliced to the agent's port-forward.
pub async fn port_forward(
    State(server): State<Arc<Server>>,
    Path((namespace, name)): Path<(String, String)>,
    request: Request,
) -> Response {
    let result = async {
        let pod = object(&server, "Pod", Some(&namespace), &name).await?;
        let agent = agent(&server, &pod).await?;
        let path = with_query(
            format!("/portForward/{namespace}/{name}"),
            request.uri().query(),
        );
        proxy::upgrade(&agent, &path, request).await
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_container_is_the_named_or_the_only_one() {
        let one = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}});
        assert_eq!(container(&one, None).expect("default"), "a");
        assert_eq!(container(&one, Some("")).expect("default"), "a");
        let two = json!({"metadata": {"name": "p"}, "spec": {
            "containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "i"}]}});
        assert_eq!(container(&two, Some("i")).expect("init"), "i");
        let ApiError::BadRequest(message) = container(&two, None).expect_err("ambiguous") else {
            panic!("not a bad request");
        };
        assert_eq!(
            message,
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"
        );
        let ApiError::BadRequest(message) = container(&two, Some("c")).expect_err("unknown") else {
            panic!("not a bad request");
        };
        assert_eq!(message, "container c is not valid for pod p");
    }
}
