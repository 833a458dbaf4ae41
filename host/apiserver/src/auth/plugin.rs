//! Plugin identities: each Plugin runs as the ServiceAccount `kube-system/plugin-NAME`, bound by the ClusterRoleBinding `wasmkube:plugin:NAME` to the ClusterRole of that name, whose rules are its permissions; the Plugin owns all three.

use serde_json::{Value, json};
use wasmkube_model::resource::{PLUGIN_GROUP, RBAC_GROUP};

use super::rule::Rule;
use super::user::User;
use crate::error::ApiError;
use crate::registry::{Update, WriteOptions, create_object, update_with};
use crate::server::Server;

/// Where plugins' ServiceAccounts live.
pub const NAMESPACE: &str = "kube-system";

/// The ServiceAccount (in [`NAMESPACE`]) the Plugin `plugin` runs as.
pub fn service_account(plugin: &str) -> String {
    format!("plugin-{plugin}")
}

/// The ClusterRole, and its ClusterRoleBinding, holding what the Plugin `plugin` may do.
pub fn role(plugin: &str) -> String {
    format!("wasmkube:plugin:{plugin}")
}

/// The user the Plugin `plugin`'s host calls are authorized as.
pub fn user(plugin: &str) -> User {
    User::service_account(NAMESPACE, &service_account(plugin))
}

/// The RBAC rules of a Plugin's `spec.permissions` (`[{group, resources, verbs}]`, every verb
/// when `verbs` is absent): one rule per entry, on its group and resources.
pub fn rules(permissions: &Value) -> Vec<Rule> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(String::from))
            .collect()
    };
    permissions
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| Rule {
            verbs: match p.get("verbs") {
                Some(verbs) => strings(verbs),
                None => vec!["*".to_string()],
            },
            api_groups: vec![p["group"].as_str().unwrap_or_default().to_string()],
            resources: strings(&p["resources"]),
            ..Rule::default()
        })
        .filter(|r| !r.resources.is_empty() && !r.verbs.is_empty())
        .collect()
}

/// The objects making up the identity of `plugin` (a stored Plugin) holding `rules`, each with
/// its resource's plural and namespace.
fn objects(
    plugin: &Value,
    rules: &[Rule],
) -> [(&'static str, &'static str, Option<&'static str>, Value); 3] {
    let name = plugin["metadata"]["name"].as_str().unwrap_or_default();
    let owner = json!([{
        "apiVersion": format!("{PLUGIN_GROUP}/v1alpha1"),
        "kind": "Plugin",
        "name": name,
        "uid": plugin["metadata"]["uid"],
        "controller": true,
    }]);
    let metadata = |object_name: String, ns: Option<&str>| {
        let mut m = json!({"name": object_name, "ownerReferences": owner});
        if let Some(ns) = ns {
            m["namespace"] = json!(ns);
        }
        m
    };
    let rbac = format!("{RBAC_GROUP}/v1");
    [
        (
            "",
            "serviceaccounts",
            Some(NAMESPACE),
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": metadata(service_account(name), Some(NAMESPACE))}),
        ),
        (
            RBAC_GROUP,
            "clusterroles",
            None,
            json!({"apiVersion": rbac, "kind": "ClusterRole", "metadata": metadata(role(name), None),
                "rules": rules.iter().map(Rule::to_json).collect::<Vec<_>>()}),
        ),
        (
            RBAC_GROUP,
            "clusterrolebindings",
            None,
            json!({"apiVersion": rbac, "kind": "ClusterRoleBinding", "metadata": metadata(role(name), None),
                "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role(name)},
                "subjects": [{"kind": "ServiceAccount", "name": service_account(name), "namespace": NAMESPACE}]}),
        ),
    ]
}

/// Creates or updates the ServiceAccount, ClusterRole and ClusterRoleBinding of `plugin` (a
/// stored Plugin) so that it holds exactly `rules`, as the server itself (the Plugin's writer
/// passed the escalation check). The index is rebuilt before this returns. Without RBAC (no
/// [`super::Auth`]) there is nothing to write.
pub async fn ensure(server: &Server, plugin: &Value, rules: &[Rule]) -> Result<(), ApiError> {
    if server.auth.is_none() {
        return Ok(());
    }
    let registry = server.registry();
    for (group, plural, ns, wanted) in objects(plugin, rules) {
        let info = registry
            .get(group, "v1", plural)
            .ok_or_else(|| ApiError::Internal(format!("{plural} are not served")))?;
        let name = wanted["metadata"]["name"].as_str().unwrap_or_default();
        let created = create_object(
            server,
            info,
            ns,
            wanted.clone(),
            WriteOptions::INTERNAL,
            &mut Vec::new(),
        )
        .await;
        match created {
            Ok(_) => continue,
            Err(ApiError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
        let update = Update::internal(info, ns, name);
        let managed = |cur: &Value| {
            let mut new = cur.clone();
            new["metadata"]["ownerReferences"] = wanted["metadata"]["ownerReferences"].clone();
            for field in ["rules", "roleRef", "subjects"] {
                if let Some(value) = wanted.get(field) {
                    new[field] = value.clone();
                }
            }
            Ok(new)
        };
        update_with(server, &update, managed, &mut Vec::new()).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_become_one_rule_each_every_verb_by_default() {
        let permissions = json!([
            {"group": "", "resources": ["configmaps", "configmaps/status"], "verbs": ["get", "list"]},
            {"group": "apps", "resources": ["deployments"]},
            {"group": "", "resources": []},
        ]);
        let rules: Vec<Value> = rules(&permissions).iter().map(Rule::to_json).collect();
        assert_eq!(
            rules,
            vec![
                json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["configmaps", "configmaps/status"]}),
                json!({"verbs": ["*"], "apiGroups": ["apps"], "resources": ["deployments"]}),
            ]
        );
        let u = user("echo");
        assert_eq!(u.name, "system:serviceaccount:kube-system:plugin-echo");
        assert!(u.in_group("system:serviceaccounts:kube-system"));
    }
}
