//! The RBAC authorizer: the rules bound to each user and group, indexed in memory and rebuilt whenever a Role, ClusterRole or binding is written.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde_json::Value;

use super::attributes::Attributes;
use super::rule::Rule;
use super::user::{MASTERS, User};

/// Who a binding names. A ServiceAccount subject is the user `system:serviceaccount:NS:NAME`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Subject {
    User(String),
    Group(String),
}

/// The subjects of a binding in namespace `ns` (empty for a ClusterRoleBinding).
fn subjects(binding: &Value, ns: &str) -> Vec<Subject> {
    let text = |s: &Value, f: &str| s[f].as_str().unwrap_or_default().to_string();
    binding["subjects"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| match s["kind"].as_str()? {
            "User" => Some(Subject::User(text(s, "name"))),
            "Group" => Some(Subject::Group(text(s, "name"))),
            "ServiceAccount" => {
                let sa_ns = match text(s, "namespace") {
                    n if n.is_empty() => ns.to_string(),
                    n => n,
                };
                Some(Subject::User(format!(
                    "system:serviceaccount:{sa_ns}:{}",
                    text(s, "name")
                )))
            }
            _ => None,
        })
        .collect()
}

/// The stored RBAC objects an [`Index`] is built from.
#[derive(Default)]
pub struct Policy {
    pub roles: Vec<Value>,
    pub cluster_roles: Vec<Value>,
    pub role_bindings: Vec<Value>,
    pub cluster_role_bindings: Vec<Value>,
}

/// The rules each subject holds, cluster-wide and per namespace, the role references resolved.
#[derive(Default)]
pub struct Index {
    cluster: HashMap<Subject, Vec<Arc<[Rule]>>>,
    namespaced: HashMap<(String, Subject), Vec<Arc<[Rule]>>>,
}

/// The string at `pointer` in `object`, empty when absent.
pub(super) fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

impl Index {
    /// Resolves every binding's role; a binding to a missing role grants nothing.
    pub fn build(policy: &Policy) -> Index {
        let rules =
            |objects: &[Value], namespaced: bool| -> HashMap<(String, String), Arc<[Rule]>> {
                objects
                    .iter()
                    .map(|role| {
                        let ns = if namespaced {
                            text(role, "/metadata/namespace")
                        } else {
                            ""
                        };
                        let name = text(role, "/metadata/name");
                        (
                            (ns.to_string(), name.to_string()),
                            Arc::from(Rule::of_role(role)),
                        )
                    })
                    .collect()
            };
        let cluster_roles = rules(&policy.cluster_roles, false);
        let roles = rules(&policy.roles, true);
        let resolve = |binding: &Value, ns: &str| {
            let name = text(binding, "/roleRef/name").to_string();
            match text(binding, "/roleRef/kind") {
                "ClusterRole" => cluster_roles.get(&(String::new(), name)).cloned(),
                "Role" if !ns.is_empty() => roles.get(&(ns.to_string(), name)).cloned(),
                _ => None,
            }
        };
        let mut index = Index::default();
        for binding in &policy.cluster_role_bindings {
            if let Some(rules) = resolve(binding, "") {
                for subject in subjects(binding, "") {
                    index
                        .cluster
                        .entry(subject)
                        .or_default()
                        .push(rules.clone());
                }
            }
        }
        for binding in &policy.role_bindings {
            let ns = text(binding, "/metadata/namespace");
            if let Some(rules) = resolve(binding, ns) {
                for subject in subjects(binding, ns) {
                    let key = (ns.to_string(), subject);
                    index.namespaced.entry(key).or_default().push(rules.clone());
                }
            }
        }
        index
    }

    /// The rule sets that apply to `user` in `namespace` (cluster-wide ones for any namespace).
    fn rule_sets<'a>(
        &'a self,
        user: &'a User,
        namespace: &'a str,
    ) -> impl Iterator<Item = &'a Arc<[Rule]>> {
        let subjects = std::iter::once(Subject::User(user.name.clone()))
            .chain(user.groups.iter().cloned().map(Subject::Group));
        subjects.flat_map(move |subject| {
            let cluster = self.cluster.get(&subject).into_iter().flatten();
            let local = (!namespace.is_empty())
                .then(|| self.namespaced.get(&(namespace.to_string(), subject)))
                .flatten()
                .into_iter()
                .flatten();
            cluster.chain(local)
        })
    }

    /// Whether `user` may do `a`: members of `system:masters` always may.
    pub fn allows(&self, user: &User, a: &Attributes) -> bool {
        user.in_group(MASTERS)
            || self
                .rule_sets(user, &a.namespace)
                .any(|rules| rules.iter().any(|rule| rule.allows(a)))
    }

    /// Every rule `user` holds in `namespace`, duplicates removed (SelfSubjectRulesReview).
    pub fn rules_of(&self, user: &User, namespace: &str) -> Vec<Rule> {
        let mut all: Vec<Rule> = Vec::new();
        if user.in_group(MASTERS) {
            all.push(Rule {
                verbs: vec!["*".into()],
                api_groups: vec!["*".into()],
                resources: vec!["*".into()],
                ..Rule::default()
            });
            all.push(Rule {
                verbs: vec!["*".into()],
                non_resource_urls: vec!["*".into()],
                ..Rule::default()
            });
        }
        for rule in self
            .rule_sets(user, namespace)
            .flat_map(|rules| rules.iter())
        {
            if !all.contains(rule) {
                all.push(rule.clone());
            }
        }
        all
    }
}

/// The current index, swapped whole after each rebuild.
#[derive(Default)]
pub struct Authorizer {
    index: ArcSwap<Index>,
}

impl Authorizer {
    pub fn index(&self) -> Arc<Index> {
        self.index.load_full()
    }

    pub fn replace(&self, index: Index) {
        self.index.store(Arc::new(index));
    }

    pub fn allows(&self, user: &User, a: &Attributes) -> bool {
        self.index.load().allows(user, a)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn policy() -> Policy {
        Policy {
            roles: vec![
                json!({"metadata": {"name": "reader", "namespace": "t1"}, "rules": [
                {"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"]}]}),
            ],
            cluster_roles: vec![json!({"metadata": {"name": "view"}, "rules": [
                {"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["pods"]}]})],
            role_bindings: vec![
                json!({"metadata": {"name": "b", "namespace": "t1"}, "roleRef": {"kind": "ClusterRole", "name": "view"},
                    "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "app"}]}),
                json!({"metadata": {"name": "c", "namespace": "t1"}, "roleRef": {"kind": "Role", "name": "reader"},
                    "subjects": [{"kind": "Group", "name": "devs"}]}),
                json!({"metadata": {"name": "missing", "namespace": "t1"}, "roleRef": {"kind": "Role", "name": "nope"},
                    "subjects": [{"kind": "User", "name": "bob"}]}),
            ],
            cluster_role_bindings: vec![
                json!({"metadata": {"name": "all"}, "roleRef": {"kind": "ClusterRole", "name": "view"},
                "subjects": [{"kind": "Group", "name": "auditors"}]}),
            ],
        }
    }

    #[test]
    fn bindings_grant_their_roles_rules_where_they_are() {
        let index = Index::build(&policy());
        let alice = User::new("alice", []);
        let get = |resource: &str, ns: &str| Attributes::resource("get", "", resource, ns, "x");
        assert!(index.allows(&alice, &get("pods", "t1")));
        assert!(!index.allows(&alice, &get("secrets", "t1")));
        assert!(!index.allows(&alice, &get("pods", "t2")));
        assert!(
            !index.allows(&alice, &get("pods", "")),
            "a RoleBinding grants nothing cluster-wide"
        );
        let sa = User::new("system:serviceaccount:t1:app", []);
        assert!(index.allows(&sa, &get("pods", "t1")));
        let dev = User::new("carol", ["devs".to_string()]);
        assert!(index.allows(&dev, &get("configmaps", "t1")));
        assert!(!index.allows(&dev, &get("pods", "t1")));
        assert!(!index.allows(&User::new("bob", []), &get("configmaps", "t1")));
        let auditor = User::new("dan", ["auditors".to_string()]);
        assert!(index.allows(&auditor, &get("pods", "t2")));
        assert!(index.allows(&auditor, &get("pods", "")));
        let admin = User::new("root", [MASTERS.to_string()]);
        assert!(index.allows(&admin, &get("secrets", "kube-system")));
        assert_eq!(index.rules_of(&alice, "t1").len(), 1);
        assert!(index.rules_of(&alice, "t2").is_empty());
    }
}
