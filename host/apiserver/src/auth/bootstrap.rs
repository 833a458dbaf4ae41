//! The default ClusterRoles and ClusterRoleBindings Kubernetes bootstraps (upstream's `bootstrappolicy/policy.go`), created at server start when missing.

use serde_json::{Value, json};
use wasmkube_model::resource::RBAC_GROUP;

use super::components;
use crate::error::ApiError;
use crate::registry::{WriteOptions, create_object};
use crate::server::Server;

pub(super) const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];
const AUTOUPDATE: &str = "rbac.authorization.k8s.io/autoupdate";

/// A rule on `resources` of `group`.
pub(super) fn rule(verbs: &[&str], group: &str, resources: &[&str]) -> Value {
    json!({"apiGroups": [group], "resources": resources, "verbs": verbs})
}

/// A rule on non-resource paths.
pub(super) fn urls(verbs: &[&str], paths: &[&str]) -> Value {
    json!({"nonResourceURLs": paths, "verbs": verbs})
}

fn read_write() -> Vec<&'static str> {
    READ.iter().chain(WRITE).copied().collect()
}

fn aggregate_label(to: &str) -> String {
    format!("rbac.authorization.k8s.io/aggregate-to-{to}")
}

pub(super) fn cluster_role(
    name: &str,
    labels: &[&str],
    aggregate_to: Option<&str>,
    rules: Vec<Value>,
) -> Value {
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|to| (aggregate_label(to), json!("true")))
        .chain([(
            "kubernetes.io/bootstrapping".to_string(),
            json!("rbac-defaults"),
        )])
        .collect();
    let mut role = json!({
        "apiVersion": format!("{RBAC_GROUP}/v1"),
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": labels, "annotations": {AUTOUPDATE: "true"}},
        "rules": rules,
    });
    if let Some(to) = aggregate_to {
        role["aggregationRule"] =
            json!({"clusterRoleSelectors": [{"matchLabels": {aggregate_label(to): "true"}}]});
    }
    role
}

fn binding(role: &str, groups: &[&str]) -> Value {
    named_binding(role, role, groups)
}

fn named_binding(name: &str, role: &str, groups: &[&str]) -> Value {
    let groups = groups
        .iter()
        .map(|g| json!({"apiGroup": RBAC_GROUP, "kind": "Group", "name": g}))
        .collect();
    subject_binding(name, role, groups)
}

/// The ClusterRoleBinding `name` of the ClusterRole `role` to `subjects`.
pub(super) fn subject_binding(name: &str, role: &str, subjects: Vec<Value>) -> Value {
    json!({
        "apiVersion": format!("{RBAC_GROUP}/v1"),
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                     "annotations": {AUTOUPDATE: "true"}},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    })
}

/// The group of CertificateSigningRequests.
const CERTIFICATES: &str = crate::certificates::GROUP;
/// The group kubeadm's bootstrap tokens add (their `auth-extra-groups`), bound below as kubeadm
/// binds it.
pub const DEFAULT_NODE_TOKEN_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

/// What a node may do, as upstream's `NodeRules()` (the `system:node` ClusterRole, which the
/// node authorizer applies): the Node authorizer further limits Secrets, ConfigMaps, claims and
/// volumes to those of pods bound to the node, and NodeRestriction limits writes to its own
/// Node, Lease and pods. The agent is also the node's service proxy and DNS, so it reads
/// Services, Endpoints and EndpointSlices (upstream's `system:node-proxier`).
pub fn node_rules() -> Vec<Value> {
    vec![
        rule(&["create"], "authentication.k8s.io", &["tokenreviews"]),
        rule(
            &["create"],
            "authorization.k8s.io",
            &["subjectaccessreviews", "localsubjectaccessreviews"],
        ),
        rule(READ, "", &["services", "endpoints"]),
        rule(READ, "discovery.k8s.io", &["endpointslices"]),
        rule(&["create", "get", "list", "watch"], "", &["nodes"]),
        rule(&["update", "patch"], "", &["nodes/status"]),
        rule(&["update", "patch"], "", &["nodes"]),
        rule(&["create", "update", "patch"], "", &["events"]),
        rule(&["create", "update", "patch"], "events.k8s.io", &["events"]),
        rule(READ, "", &["pods"]),
        rule(&["create", "delete"], "", &["pods"]),
        rule(&["update", "patch"], "", &["pods/status"]),
        rule(&["create"], "", &["pods/eviction"]),
        rule(READ, "", &["secrets", "configmaps"]),
        rule(
            &["get"],
            "",
            &["persistentvolumeclaims", "persistentvolumes"],
        ),
        rule(
            &["get", "update", "patch"],
            "",
            &["persistentvolumeclaims/status"],
        ),
        rule(&["get"], "", &["endpoints"]),
        rule(
            &["create", "get", "list", "watch"],
            CERTIFICATES,
            &["certificatesigningrequests"],
        ),
        rule(
            &["get", "create", "update", "patch", "delete"],
            "coordination.k8s.io",
            &["leases"],
        ),
        rule(&["create"], "", &["serviceaccounts/token"]),
    ]
}

/// The default ClusterRoles (`ClusterRoles()` upstream, the user-facing and discovery ones).
pub fn cluster_roles() -> Vec<Value> {
    let rw = read_write();
    vec![
        cluster_role(
            "cluster-admin",
            &[],
            None,
            vec![rule(&["*"], "*", &["*"]), urls(&["*"], &["*"])],
        ),
        cluster_role("admin", &[], Some("admin"), vec![]),
        cluster_role("edit", &["admin"], Some("edit"), vec![]),
        cluster_role("view", &["edit"], Some("view"), vec![]),
        cluster_role(
            "system:aggregate-to-admin",
            &["admin"],
            None,
            vec![
                rule(
                    &["create"],
                    "authorization.k8s.io",
                    &["localsubjectaccessreviews"],
                ),
                rule(&rw, RBAC_GROUP, &["rolebindings", "roles"]),
            ],
        ),
        cluster_role(
            "system:aggregate-to-edit",
            &["edit"],
            None,
            vec![
                rule(
                    READ,
                    "",
                    &[
                        "pods/attach",
                        "pods/exec",
                        "pods/portforward",
                        "pods/proxy",
                        "secrets",
                        "services/proxy",
                    ],
                ),
                rule(&["impersonate"], "", &["serviceaccounts"]),
                rule(
                    WRITE,
                    "",
                    &[
                        "pods",
                        "pods/attach",
                        "pods/exec",
                        "pods/portforward",
                        "pods/proxy",
                    ],
                ),
                rule(&["create"], "", &["pods/eviction"]),
                rule(
                    WRITE,
                    "",
                    &[
                        "configmaps",
                        "events",
                        "persistentvolumeclaims",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "secrets",
                        "serviceaccounts",
                        "services",
                        "services/proxy",
                    ],
                ),
                rule(&["create"], "", &["serviceaccounts/token"]),
                rule(
                    WRITE,
                    "apps",
                    &[
                        "daemonsets",
                        "deployments",
                        "deployments/rollback",
                        "deployments/scale",
                        "replicasets",
                        "replicasets/scale",
                        "statefulsets",
                        "statefulsets/scale",
                    ],
                ),
                rule(WRITE, "autoscaling", &["horizontalpodautoscalers"]),
                rule(WRITE, "batch", &["cronjobs", "jobs"]),
                rule(
                    WRITE,
                    "extensions",
                    &[
                        "daemonsets",
                        "deployments",
                        "deployments/rollback",
                        "deployments/scale",
                        "ingresses",
                        "networkpolicies",
                        "replicasets",
                        "replicasets/scale",
                        "replicationcontrollers/scale",
                    ],
                ),
                rule(WRITE, "policy", &["poddisruptionbudgets"]),
                rule(
                    WRITE,
                    "networking.k8s.io",
                    &["ingresses", "networkpolicies"],
                ),
                rule(&rw, "coordination.k8s.io", &["leases"]),
            ],
        ),
        cluster_role(
            "system:aggregate-to-view",
            &["view"],
            None,
            vec![
                rule(
                    READ,
                    "",
                    &[
                        "configmaps",
                        "endpoints",
                        "persistentvolumeclaims",
                        "persistentvolumeclaims/status",
                        "pods",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "serviceaccounts",
                        "services",
                        "services/status",
                    ],
                ),
                rule(
                    READ,
                    "",
                    &[
                        "bindings",
                        "events",
                        "limitranges",
                        "namespaces/status",
                        "pods/log",
                        "pods/status",
                        "replicationcontrollers/status",
                        "resourcequotas",
                        "resourcequotas/status",
                    ],
                ),
                rule(READ, "", &["namespaces"]),
                rule(READ, "discovery.k8s.io", &["endpointslices"]),
                rule(
                    READ,
                    "apps",
                    &[
                        "controllerrevisions",
                        "daemonsets",
                        "daemonsets/status",
                        "deployments",
                        "deployments/scale",
                        "deployments/status",
                        "replicasets",
                        "replicasets/scale",
                        "replicasets/status",
                        "statefulsets",
                        "statefulsets/scale",
                        "statefulsets/status",
                    ],
                ),
                rule(
                    READ,
                    "autoscaling",
                    &[
                        "horizontalpodautoscalers",
                        "horizontalpodautoscalers/status",
                    ],
                ),
                rule(
                    READ,
                    "batch",
                    &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
                ),
                rule(
                    READ,
                    "extensions",
                    &[
                        "daemonsets",
                        "daemonsets/status",
                        "deployments",
                        "deployments/scale",
                        "deployments/status",
                        "ingresses",
                        "ingresses/status",
                        "networkpolicies",
                        "replicasets",
                        "replicasets/scale",
                        "replicasets/status",
                        "replicationcontrollers/scale",
                    ],
                ),
                rule(
                    READ,
                    "policy",
                    &["poddisruptionbudgets", "poddisruptionbudgets/status"],
                ),
                rule(
                    READ,
                    "networking.k8s.io",
                    &["ingresses", "ingresses/status", "networkpolicies"],
                ),
            ],
        ),
        cluster_role(
            "system:discovery",
            &[],
            None,
            vec![urls(
                &["get"],
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
            )],
        ),
        cluster_role(
            "system:basic-user",
            &[],
            None,
            vec![
                rule(
                    &["create"],
                    "authorization.k8s.io",
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                rule(
                    &["create"],
                    "authentication.k8s.io",
                    &["selfsubjectreviews"],
                ),
            ],
        ),
        cluster_role("system:node", &[], None, node_rules()),
        cluster_role(
            "system:node-bootstrapper",
            &[],
            None,
            vec![rule(
                &["create", "get", "list", "watch"],
                CERTIFICATES,
                &["certificatesigningrequests"],
            )],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            &[],
            None,
            vec![rule(
                &["create"],
                CERTIFICATES,
                &["certificatesigningrequests/nodeclient"],
            )],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            &[],
            None,
            vec![rule(
                &["create"],
                CERTIFICATES,
                &["certificatesigningrequests/selfnodeclient"],
            )],
        ),
        cluster_role(
            "kubeadm:get-nodes",
            &[],
            None,
            vec![rule(&["get"], "", &["nodes"])],
        ),
        cluster_role(
            "system:public-info-viewer",
            &[],
            None,
            vec![urls(
                &["get"],
                &["/healthz", "/livez", "/readyz", "/version", "/version/"],
            )],
        ),
    ]
}

/// The default ClusterRoleBindings.
pub fn cluster_role_bindings() -> Vec<Value> {
    vec![
        binding("cluster-admin", &[super::user::MASTERS]),
        binding("system:discovery", &[super::user::AUTHENTICATED]),
        binding("system:basic-user", &[super::user::AUTHENTICATED]),
        binding(
            "system:public-info-viewer",
            &[super::user::AUTHENTICATED, "system:unauthenticated"],
        ),
        // Upstream keeps `system:node` bound to no one: the node authorizer applies its rules.
        binding("system:node", &[]),
        // kubeadm's bindings for bootstrap tokens and certificate rotation.
        named_binding(
            "kubeadm:kubelet-bootstrap",
            "system:node-bootstrapper",
            &[DEFAULT_NODE_TOKEN_GROUP],
        ),
        named_binding(
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            &[DEFAULT_NODE_TOKEN_GROUP],
        ),
        named_binding(
            "kubeadm:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            &[crate::certificates::signer::NODES_GROUP],
        ),
        binding("kubeadm:get-nodes", &[DEFAULT_NODE_TOKEN_GROUP]),
    ]
}

/// Creates each default role and binding that is missing (one an operator changed is left as
/// it is), then rebuilds the index, which aggregates `admin`, `edit` and `view`.
pub async fn reconcile(server: &Server) -> Result<(), ApiError> {
    let registry = server.registry();
    for (plural, objects) in [
        (
            "clusterroles",
            [cluster_roles(), components::cluster_roles()].concat(),
        ),
        (
            "clusterrolebindings",
            [cluster_role_bindings(), components::cluster_role_bindings()].concat(),
        ),
    ] {
        let info = registry
            .get(RBAC_GROUP, "v1", plural)
            .ok_or_else(|| ApiError::Internal(format!("{plural} are not served")))?;
        for object in objects {
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            if server.objects.get(info, None, name).await?.is_some() {
                continue;
            }
            match create_object(
                server,
                info,
                None,
                object,
                WriteOptions::INTERNAL,
                &mut Vec::new(),
            )
            .await
            {
                Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    super::policy::refresh(server).await
}
