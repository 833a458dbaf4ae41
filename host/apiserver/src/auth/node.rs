//! What a node may do, for users `system:node:NAME` in `system:nodes`: upstream's node authorizer (Secrets, ConfigMaps, claims, volumes and ServiceAccount tokens only of pods bound to the node; its own Lease; otherwise the `system:node` rules) and NodeRestriction (its own Node, the pods bound to it, no pod creation).

use serde_json::Value;
use wasmkube_model::meta::ResourceExt;
use wasmkube_model::resource::ResourceInfo;

use super::attributes::Attributes;
use super::rule::Rule;
use super::user::User;
use crate::certificates::signer::{NODE_PREFIX, NODES_GROUP};
use crate::error::ApiError;
use crate::server::Server;

/// The namespace of node Leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Where each node agent publishes its cluster DNS server: the EndpointSlice
/// `kube-system/kube-dns-NODE` of the `kube-dns` Service (`node/src/dns`).
const DNS_NAMESPACE: &str = "kube-system";
const DNS_SLICE_PREFIX: &str = "kube-dns-";

/// The name of `node`'s own EndpointSlice of `kube-dns`.
fn dns_slice(node: &str) -> String {
    format!("{DNS_SLICE_PREFIX}{node}")
}

/// The `system:node` rules, read once.
static NODE_RULES: std::sync::LazyLock<Vec<Rule>> = std::sync::LazyLock::new(|| {
    super::bootstrap::node_rules()
        .iter()
        .map(Rule::from_json)
        .collect()
});

/// What the node authorizer and NodeRestriction say about a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Refused whatever RBAC says (NodeRestriction), for this reason.
    Deny(String),
    /// RBAC decides; refused for this reason unless it allows.
    NoOpinion(String),
}

/// The node a user is, if it is one: `system:node:NAME` in `system:nodes`.
pub fn node_of(user: &User) -> Option<&str> {
    let name = user.name.strip_prefix(NODE_PREFIX)?;
    (!name.is_empty() && user.in_group(NODES_GROUP)).then_some(name)
}

/// The objects of `resource` (secrets, configmaps, persistentvolumeclaims, serviceaccounts) a
/// pod refers to, as upstream's `VisitPodSecretNames` and friends walk it.
fn references(pod: &Value, resource: &str) -> Vec<String> {
    let spec = &pod["spec"];
    let mut names: Vec<&Value> = Vec::new();
    let containers = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|f| spec[f].as_array().into_iter().flatten());
    let volumes = spec["volumes"].as_array().into_iter().flatten();
    let projected = volumes
        .clone()
        .flat_map(|v| v["projected"]["sources"].as_array().into_iter().flatten());
    match resource {
        "secrets" => {
            names.extend(
                spec["imagePullSecrets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| &s["name"]),
            );
            for c in containers {
                names.extend(env_refs(c, "secretKeyRef", "secretRef"));
            }
            names.extend(volumes.map(|v| &v["secret"]["secretName"]));
            names.extend(projected.map(|s| &s["secret"]["name"]));
        }
        "configmaps" => {
            for c in containers {
                names.extend(env_refs(c, "configMapKeyRef", "configMapRef"));
            }
            names.extend(volumes.map(|v| &v["configMap"]["name"]));
            names.extend(projected.map(|s| &s["configMap"]["name"]));
        }
        "persistentvolumeclaims" => {
            names.extend(volumes.map(|v| &v["persistentVolumeClaim"]["claimName"]));
        }
        "serviceaccounts" => names.push(&spec["serviceAccountName"]),
        _ => {}
    }
    names
        .into_iter()
        .filter_map(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(String::from)
        .collect()
}

/// The names a container's `env[].valueFrom.KEY_REF` and `envFrom[].FROM_REF` give.
fn env_refs<'a>(container: &'a Value, key_ref: &str, from_ref: &str) -> Vec<&'a Value> {
    let env = container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["valueFrom"][key_ref]["name"]);
    let from = container["envFrom"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e[from_ref]["name"]);
    env.chain(from).collect()
}

fn served(
    server: &Server,
    api_version: &str,
    kind: &str,
) -> Result<std::sync::Arc<ResourceInfo>, ApiError> {
    server
        .registry()
        .by_kind(api_version, kind)
        .cloned()
        .ok_or_else(|| ApiError::Internal(format!("{kind} is not served")))
}

/// The pods bound to `node`, in `ns` or everywhere.
async fn bound_pods(server: &Server, node: &str, ns: Option<&str>) -> Result<Vec<Value>, ApiError> {
    let pods = served(server, "v1", "Pod")?;
    Ok(server
        .objects
        .list(&pods, ns, None, None, None, |p| {
            p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node)
        })
        .await?
        .items)
}

/// Whether a pod bound to `node` refers to the object `ns/name` of `resource` (a volume: through
/// a claim bound to it), upstream's graph path from the object to the node.
async fn related(
    server: &Server,
    node: &str,
    resource: &str,
    ns: &str,
    name: &str,
) -> Result<bool, ApiError> {
    if resource == "persistentvolumes" {
        let claims = served(server, "v1", "PersistentVolumeClaim")?;
        for pod in bound_pods(server, node, None).await? {
            let pod_ns = pod.namespace().unwrap_or_default().to_string();
            for claim in references(&pod, "persistentvolumeclaims") {
                let stored = server.objects.get(&claims, Some(&pod_ns), &claim).await?;
                if stored.is_some_and(|c| {
                    c.object.pointer("/spec/volumeName").and_then(Value::as_str) == Some(name)
                }) {
                    return Ok(true);
                }
            }
        }
        return Ok(false);
    }
    Ok(bound_pods(server, node, Some(ns))
        .await?
        .iter()
        .any(|pod| references(pod, resource).iter().any(|r| r == name)))
}

/// The node of the pod `ns/name`, if it exists and is bound.
async fn pod_node(server: &Server, ns: &str, name: &str) -> Result<Option<String>, ApiError> {
    let pods = served(server, "v1", "Pod")?;
    Ok(server
        .objects
        .get(&pods, Some(ns), name)
        .await?
        .and_then(|p| {
            p.object
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .map(String::from)
        }))
}

const NO_RELATIONSHIP: &str = "no relationship found between node and this object";

/// The node authorizer's graph check: `verbs` on one named object that a pod bound to the node
/// refers to.
async fn through_pods(
    server: &Server,
    node: &str,
    a: &Attributes,
    verbs: &[&str],
) -> Result<Decision, ApiError> {
    if !verbs.contains(&a.verb.as_str()) {
        return Ok(Decision::NoOpinion(format!(
            "can only {} this type",
            verbs.join(", ")
        )));
    }
    if a.name.is_empty() {
        return Ok(Decision::NoOpinion("No Object name found".into()));
    }
    Ok(
        if related(server, node, &a.resource, &a.namespace, &a.name).await? {
            Decision::Allow
        } else {
            Decision::NoOpinion(NO_RELATIONSHIP.into())
        },
    )
}

/// NodeRestriction on pods: no creation (wasmkube has no static pods, so no mirror pods), and
/// deletion, status and eviction only of pods bound to the node.
async fn restrict_pods(
    server: &Server,
    node: &str,
    a: &Attributes,
) -> Result<Option<Decision>, ApiError> {
    let what = match (a.verb.as_str(), a.subresource.as_str()) {
        ("create", "") => {
            return Ok(Some(Decision::Deny(format!(
                "node {node:?} can not create pods"
            ))));
        }
        ("delete", "") => "delete pods",
        ("update" | "patch", "status") => "update pod status for pods",
        ("create", "eviction") => "evict pods",
        _ => return Ok(None),
    };
    if pod_node(server, &a.namespace, &a.name).await?.as_deref() == Some(node) {
        return Ok(None);
    }
    Ok(Some(Decision::Deny(format!(
        "node {node:?} can only {what} with spec.nodeName set to itself"
    ))))
}

/// What the node authorizer and NodeRestriction say about `a` by `node`.
pub async fn authorize(server: &Server, node: &str, a: &Attributes) -> Result<Decision, ApiError> {
    if a.resource_request {
        match (
            a.api_group.as_str(),
            a.resource.as_str(),
            a.subresource.as_str(),
        ) {
            ("", "secrets" | "configmaps", _) => {
                return through_pods(server, node, a, &["get", "list", "watch"]).await;
            }
            ("", "persistentvolumeclaims", "status") => {
                return through_pods(server, node, a, &["get", "update", "patch"]).await;
            }
            ("", "persistentvolumeclaims" | "persistentvolumes", _) => {
                return through_pods(server, node, a, &["get"]).await;
            }
            ("", "serviceaccounts", "token") => {
                return through_pods(server, node, a, &["create"]).await;
            }
            ("coordination.k8s.io", "leases", _) => {
                if a.namespace != LEASE_NAMESPACE {
                    return Ok(Decision::NoOpinion(format!(
                        "can only access leases in the {LEASE_NAMESPACE} namespace"
                    )));
                }
                if a.verb != "create" && a.name != node {
                    return Ok(Decision::NoOpinion(
                        "can only access node lease with the same name as the requesting node"
                            .into(),
                    ));
                }
            }
            ("discovery.k8s.io", "endpointslices", _)
                if !matches!(a.verb.as_str(), "get" | "list" | "watch") =>
            {
                // Created with the name in the body: admit_create checks it.
                let own = a.namespace == DNS_NAMESPACE
                    && (a.name == dns_slice(node) || (a.verb == "create" && a.name.is_empty()));
                return Ok(if own {
                    Decision::Allow
                } else {
                    Decision::NoOpinion(format!(
                        "can only write its own EndpointSlice {DNS_NAMESPACE}/{}",
                        dns_slice(node)
                    ))
                });
            }
            ("", "pods", _) => {
                if let Some(decision) = restrict_pods(server, node, a).await? {
                    return Ok(decision);
                }
            }
            ("", "nodes", "" | "status")
                if matches!(a.verb.as_str(), "update" | "patch" | "delete") && a.name != node =>
            {
                return Ok(Decision::Deny(format!(
                    "node {node:?} is not allowed to modify node {:?}",
                    a.name
                )));
            }
            _ => {}
        }
    }
    Ok(if NODE_RULES.iter().any(|r| r.allows(a)) {
        Decision::Allow
    } else {
        Decision::NoOpinion(String::new())
    })
}

/// NodeRestriction on create: a node registers only its own Node, a lease only of its name and
/// an EndpointSlice only its own of `kube-dns`.
pub fn admit_create(info: &ResourceInfo, obj: &Value, user: &User) -> Result<(), ApiError> {
    let Some(node) = node_of(user) else {
        return Ok(());
    };
    let own = |what: &str, name: &str| {
        if obj.name() == name {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "node {node:?} is not allowed to create {what} {:?}",
                obj.name()
            )))
        }
    };
    match (info.group.as_str(), info.kind.as_str()) {
        ("", "Node") => own("node", node),
        ("coordination.k8s.io", "Lease") => own("lease", node),
        ("discovery.k8s.io", "EndpointSlice") => own("endpointslice", &dns_slice(node)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_node_is_its_name_in_system_nodes() {
        let node = User::new("system:node:n1", [NODES_GROUP.to_string()]);
        assert_eq!(node_of(&node), Some("n1"));
        assert_eq!(node_of(&User::new("system:node:n1", [])), None);
        assert_eq!(
            node_of(&User::new("system:node:", [NODES_GROUP.to_string()])),
            None
        );
        assert_eq!(
            node_of(&User::new("alice", [NODES_GROUP.to_string()])),
            None
        );
    }

    #[test]
    fn the_references_of_a_pod() {
        let pod = json!({"spec": {
            "serviceAccountName": "sa",
            "imagePullSecrets": [{"name": "pull"}],
            "containers": [{"env": [{"valueFrom": {"secretKeyRef": {"name": "env-s"}}},
                                    {"valueFrom": {"configMapKeyRef": {"name": "env-c"}}}],
                            "envFrom": [{"secretRef": {"name": "from-s"}}, {"configMapRef": {"name": "from-c"}}]}],
            "volumes": [{"secret": {"secretName": "vol-s"}}, {"configMap": {"name": "vol-c"}},
                        {"persistentVolumeClaim": {"claimName": "claim"}},
                        {"projected": {"sources": [{"secret": {"name": "p-s"}}, {"configMap": {"name": "p-c"}}]}}],
        }});
        assert_eq!(
            references(&pod, "secrets"),
            vec!["pull", "env-s", "from-s", "vol-s", "p-s"]
        );
        assert_eq!(
            references(&pod, "configmaps"),
            vec!["env-c", "from-c", "vol-c", "p-c"]
        );
        assert_eq!(references(&pod, "persistentvolumeclaims"), vec!["claim"]);
        assert_eq!(references(&pod, "serviceaccounts"), vec!["sa"]);
    }
}
