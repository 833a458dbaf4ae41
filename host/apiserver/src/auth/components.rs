//! The default roles of the control plane's components (upstream's `bootstrappolicy`): the scheduler, the controller manager, the service proxy, cluster DNS, monitoring, and the node agents' local-path provisioner.
//!
//! wasmkube's own scheduler and controllers run inside the server and act as the host, not as
//! these users; the roles are there for the same components run out of process (a second
//! scheduler, a kube-proxy) with credentials for these users, as on any Kubernetes cluster. The
//! node agent's provisioner acts as its node (`system:nodes`), whose role says what it may do
//! beyond the node authorizer.

use serde_json::{Value, json};
use wasmkube_model::resource::RBAC_GROUP;

use super::bootstrap::{READ, cluster_role, rule, subject_binding, urls};
use crate::certificates::signer::NODES_GROUP;

/// The scheduler's user (kubeadm's `scheduler.conf`).
pub const SCHEDULER: &str = "system:kube-scheduler";
/// The controller manager's user (kubeadm's `controller-manager.conf`).
pub const CONTROLLER_MANAGER: &str = "system:kube-controller-manager";
/// kube-proxy's user.
pub const PROXY: &str = "system:kube-proxy";
/// The role of every node agent's local-path provisioner, bound to `system:nodes`.
pub const LOCAL_PATH_PROVISIONER: &str = "wasmkube:local-path-provisioner";

/// Upstream's `eventsRule()`: recording Events in either group.
fn events() -> [Value; 2] {
    let verbs = ["create", "update", "patch"];
    [
        rule(&verbs, "", &["events"]),
        rule(&verbs, "events.k8s.io", &["events"]),
    ]
}

/// What the scheduler and the controller manager share (upstream lists it in each): Events,
/// their leader-election Lease `lease`, and the non-mutating TokenReviews and
/// SubjectAccessReviews that check API access.
fn elected(lease: &str) -> Vec<Value> {
    let mut rules = events().to_vec();
    rules.extend([
        rule(&["create"], "coordination.k8s.io", &["leases"]),
        named(
            &["get", "update"],
            "coordination.k8s.io",
            &["leases"],
            &[lease],
        ),
        rule(&["create"], "authentication.k8s.io", &["tokenreviews"]),
        rule(
            &["create"],
            "authorization.k8s.io",
            &["subjectaccessreviews"],
        ),
    ]);
    rules
}

/// A rule on the objects of `resources` named `names` only.
fn named(verbs: &[&str], group: &str, resources: &[&str], names: &[&str]) -> Value {
    let mut rule = rule(verbs, group, resources);
    rule["resourceNames"] = json!(names);
    rule
}

/// A rule on `resources` in several groups.
fn groups(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

/// The components' ClusterRoles, with upstream's rules.
pub fn cluster_roles() -> Vec<Value> {
    let role = |name: &str, rules: Vec<Value>| cluster_role(name, &[], None, rules);
    vec![
        role(
            SCHEDULER,
            [
                elected("kube-scheduler"),
                vec![
                    rule(READ, "", &["nodes"]),
                    rule(&["get", "list", "watch", "delete"], "", &["pods"]),
                    rule(&["create"], "", &["pods/binding", "bindings"]),
                    rule(&["patch", "update"], "", &["pods/status"]),
                    rule(READ, "", &["services", "replicationcontrollers"]),
                    groups(READ, &["apps", "extensions"], &["replicasets"]),
                    rule(READ, "apps", &["statefulsets"]),
                    rule(READ, "policy", &["poddisruptionbudgets"]),
                    rule(READ, "", &["persistentvolumeclaims", "persistentvolumes"]),
                    rule(READ, "storage.k8s.io", &["csinodes"]),
                    rule(READ, "", &["namespaces"]),
                    rule(
                        READ,
                        "storage.k8s.io",
                        &["csidrivers", "csistoragecapacities"],
                    ),
                ],
            ]
            .concat(),
        ),
        role(
            CONTROLLER_MANAGER,
            [
                elected("kube-controller-manager"),
                vec![
                    rule(&["create"], "", &["endpoints"]),
                    named(
                        &["get", "update"],
                        "",
                        &["endpoints"],
                        &["kube-controller-manager"],
                    ),
                    rule(&["create"], "", &["secrets", "serviceaccounts"]),
                    rule(&["delete"], "", &["secrets"]),
                    rule(
                        &["get"],
                        "",
                        &["configmaps", "namespaces", "secrets", "serviceaccounts"],
                    ),
                    rule(&["update"], "", &["secrets", "serviceaccounts"]),
                    rule(&["list", "watch"], "*", &["*"]),
                    rule(&["create"], "", &["serviceaccounts/token"]),
                ],
            ]
            .concat(),
        ),
        role(
            "system:node-proxier",
            [
                vec![
                    rule(&["list", "watch"], "", &["services", "endpoints"]),
                    rule(READ, "", &["nodes"]),
                    rule(&["list", "watch"], "discovery.k8s.io", &["endpointslices"]),
                ],
                events().to_vec(),
            ]
            .concat(),
        ),
        // k3s' local-path-provisioner's rules, plus what upstream's PV controller and scheduler
        // do for it here: binding a claim to its volume and selecting a node for it.
        role(
            LOCAL_PATH_PROVISIONER,
            vec![
                rule(
                    &["get", "list", "watch", "update", "patch"],
                    "",
                    &["persistentvolumeclaims"],
                ),
                rule(
                    &[
                        "get", "list", "watch", "create", "update", "patch", "delete",
                    ],
                    "",
                    &["persistentvolumes"],
                ),
                rule(
                    &["update", "patch"],
                    "",
                    &["persistentvolumeclaims/status", "persistentvolumes/status"],
                ),
                rule(READ, "storage.k8s.io", &["storageclasses"]),
            ],
        ),
        role(
            "system:kube-dns",
            vec![rule(&["list", "watch"], "", &["endpoints", "services"])],
        ),
        role(
            "system:monitoring",
            vec![urls(
                &["get"],
                &[
                    "/metrics",
                    "/metrics/slis",
                    "/livez",
                    "/readyz",
                    "/healthz",
                    "/livez/*",
                    "/readyz/*",
                    "/healthz/*",
                ],
            )],
        ),
    ]
}

/// Their bindings, as upstream's `ClusterRoleBindings()`.
pub fn cluster_role_bindings() -> Vec<Value> {
    let user = |name: &str| json!({"apiGroup": RBAC_GROUP, "kind": "User", "name": name});
    vec![
        subject_binding(SCHEDULER, SCHEDULER, vec![user(SCHEDULER)]),
        subject_binding(
            CONTROLLER_MANAGER,
            CONTROLLER_MANAGER,
            vec![user(CONTROLLER_MANAGER)],
        ),
        subject_binding(
            "system:node-proxier",
            "system:node-proxier",
            vec![user(PROXY)],
        ),
        subject_binding(
            LOCAL_PATH_PROVISIONER,
            LOCAL_PATH_PROVISIONER,
            vec![json!({"apiGroup": RBAC_GROUP, "kind": "Group", "name": NODES_GROUP})],
        ),
        subject_binding(
            "system:kube-dns",
            "system:kube-dns",
            vec![json!({"kind": "ServiceAccount", "name": "kube-dns", "namespace": "kube-system"})],
        ),
        subject_binding(
            "system:monitoring",
            "system:monitoring",
            vec![json!({"apiGroup": RBAC_GROUP, "kind": "Group", "name": "system:monitoring"})],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::attributes::Attributes;
    use super::super::rbac::{Index, Policy};
    use super::super::user::User;
    use super::*;

    fn index() -> Index {
        Index::build(&Policy {
            cluster_roles: cluster_roles(),
            cluster_role_bindings: cluster_role_bindings(),
            ..Policy::default()
        })
    }

    #[test]
    fn each_component_holds_what_upstream_grants_it_and_no_more() {
        let index = index();
        let ask = |verb: &str, group: &str, resource: &str, ns: &str, name: &str| {
            Attributes::resource(verb, group, resource, ns, name)
        };
        let scheduler = User::new(SCHEDULER, []);
        let mut bind = ask("create", "", "pods", "t1", "web");
        bind.subresource = "binding".into();
        assert!(index.allows(&scheduler, &bind));
        assert!(index.allows(&scheduler, &ask("list", "", "nodes", "", "")));
        let lease = |name: &str| {
            ask(
                "update",
                "coordination.k8s.io",
                "leases",
                "kube-system",
                name,
            )
        };
        assert!(index.allows(&scheduler, &lease("kube-scheduler")));
        assert!(!index.allows(&scheduler, &lease("kube-controller-manager")));
        assert!(!index.allows(&scheduler, &ask("create", "", "pods", "t1", "")));
        assert!(!index.allows(&scheduler, &ask("get", "", "secrets", "t1", "s")));

        let manager = User::new(CONTROLLER_MANAGER, []);
        assert!(index.allows(&manager, &ask("watch", "apps", "deployments", "", "")));
        assert!(index.allows(&manager, &ask("get", "", "secrets", "t1", "s")));
        assert!(!index.allows(&manager, &ask("delete", "apps", "deployments", "t1", "d")));

        let proxy = User::new(PROXY, []);
        assert!(index.allows(
            &proxy,
            &ask("watch", "discovery.k8s.io", "endpointslices", "", "")
        ));
        assert!(!index.allows(&proxy, &ask("get", "", "secrets", "t1", "s")));

        let dns = User::new("system:serviceaccount:kube-system:kube-dns", []);
        assert!(index.allows(&dns, &ask("list", "", "services", "", "")));

        let node = User::new("system:node:n1", [NODES_GROUP.to_string()]);
        assert!(index.allows(&node, &ask("create", "", "persistentvolumes", "", "")));
        assert!(index.allows(
            &node,
            &ask("update", "", "persistentvolumeclaims", "t1", "c")
        ));
        assert!(!index.allows(
            &node,
            &ask("delete", "", "persistentvolumeclaims", "t1", "c")
        ));
        assert!(!index.allows(&node, &ask("get", "", "secrets", "t1", "s")));

        let monitor = User::new("prometheus", ["system:monitoring".to_string()]);
        let metrics = Attributes::of_request(&http::Method::GET, "/metrics", None);
        assert!(index.allows(&monitor, &metrics));
        assert!(!index.allows(&User::new("someone", []), &metrics));
    }
}
