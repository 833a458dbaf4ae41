//! Loading the RBAC objects from the store, aggregating ClusterRoles as upstream's clusterrole-aggregation controller does, and rebuilding the authorizer's index.

use serde_json::{Value, json};
use wasmkube_model::resource::{RBAC_GROUP, ResourceInfo};
use wasmkube_model::selector::LabelSelector;

use super::rbac::{Index, Policy};
use super::rule::Rule;
use crate::error::ApiError;
use crate::objects::ClaimMove;
use crate::server::Server;

/// Rounds of aggregation before giving up (roles aggregating aggregated roles settle in a few).
const MAX_ROUNDS: usize = 8;

/// Whether `info` is one of the four RBAC kinds.
pub fn is_rbac(info: &ResourceInfo) -> bool {
    info.group == RBAC_GROUP
}

async fn list(server: &Server, plural: &str) -> Result<Vec<Value>, ApiError> {
    let registry = server.registry();
    let info = registry
        .get(RBAC_GROUP, "v1", plural)
        .ok_or_else(|| ApiError::Internal(format!("{plural} are not served")))?;
    Ok(server
        .objects
        .list(info, None, None, None, None, |_| true)
        .await?
        .items)
}

/// Lists the RBAC objects, writes the rules of aggregated ClusterRoles, and swaps in a new index.
/// Rebuilds run one at a time, each listing after the writes that asked for it; a write whose
/// request a rebuild already covered (it began listing after the write) waits for that rebuild
/// only, so writes that arrive together share one rebuild instead of one each.
pub async fn refresh(server: &Server) -> Result<(), ApiError> {
    use std::sync::atomic::Ordering;
    let Some(auth) = server.auth.as_ref() else {
        return Ok(());
    };
    let wanted = auth.requested.fetch_add(1, Ordering::SeqCst) + 1;
    let mut covered = auth.refreshing.lock().await;
    if *covered >= wanted {
        return Ok(());
    }
    // Every request taken so far was taken after its write: the listing below sees them all.
    let covers = auth.requested.load(Ordering::SeqCst);
    let mut cluster_roles = list(server, "clusterroles").await?;
    for _ in 0..MAX_ROUNDS {
        let changed = aggregate(&cluster_roles);
        if changed.is_empty() {
            break;
        }
        for role in changed {
            store_rules(server, role).await?;
        }
        cluster_roles = list(server, "clusterroles").await?;
    }
    let policy = Policy {
        roles: list(server, "roles").await?,
        cluster_roles,
        role_bindings: list(server, "rolebindings").await?,
        cluster_role_bindings: list(server, "clusterrolebindings").await?,
    };
    auth.authorizer.replace(Index::build(&policy));
    *covered = covers;
    Ok(())
}

/// Writes an aggregated ClusterRole's new rules, unless someone wrote it in between (the
/// next round sees their write).
async fn store_rules(server: &Server, role: Value) -> Result<(), ApiError> {
    let registry = server.registry();
    let Some(info) = registry.get(RBAC_GROUP, "v1", "clusterroles") else {
        return Ok(());
    };
    let name = role["metadata"]["name"].as_str().unwrap_or_default();
    let revision = crate::objects::parse_revision(role["metadata"]["resourceVersion"].as_str())?
        .unwrap_or_default();
    let write = server
        .objects
        .update(
            info,
            None,
            name,
            role.clone(),
            revision,
            ClaimMove::default(),
        )
        .await;
    match write {
        Ok(_) | Err(ApiError::Conflict { .. } | ApiError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The ClusterRoles with an `aggregationRule` whose rules are not the union of the rules of the
/// roles their selectors match (`syncClusterRole`), with the union as their rules.
pub fn aggregate(cluster_roles: &[Value]) -> Vec<Value> {
    let mut sorted: Vec<&Value> = cluster_roles.iter().collect();
    sorted.sort_by_key(|r| {
        r["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    });
    let mut changed = Vec::new();
    for role in cluster_roles {
        let Some(selectors) = role["aggregationRule"]["clusterRoleSelectors"].as_array() else {
            continue;
        };
        let name = &role["metadata"]["name"];
        let mut rules: Vec<Rule> = Vec::new();
        for selector in selectors {
            let Some(selector) = serde_json::from_value(selector.clone())
                .ok()
                .and_then(|s| LabelSelector::from_k8s(&s).ok())
            else {
                continue;
            };
            for other in &sorted {
                if &other["metadata"]["name"] == name
                    || !selector.matches_value(other["metadata"].get("labels"))
                {
                    continue;
                }
                for rule in Rule::of_role(other) {
                    if !rules.contains(&rule) {
                        rules.push(rule);
                    }
                }
            }
        }
        if Rule::of_role(role) != rules {
            let mut updated = role.clone();
            updated["rules"] = json!(rules.iter().map(Rule::to_json).collect::<Vec<_>>());
            changed.push(updated);
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_roles_get_the_union_of_the_matched_rules() {
        let label =
            |key: &str| json!({format!("rbac.authorization.k8s.io/aggregate-to-{key}"): "true"});
        let selector = |key: &str| json!({"clusterRoleSelectors": [{"matchLabels": label(key)}]});
        let roles = vec![
            json!({"metadata": {"name": "view"}, "aggregationRule": selector("view")}),
            json!({"metadata": {"name": "a", "labels": label("view")}, "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]}),
            json!({"metadata": {"name": "b", "labels": label("view")}, "rules": [
                {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]},
                {"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]}]}),
            json!({"metadata": {"name": "c"}, "rules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]}),
        ];
        let changed = aggregate(&roles);
        assert_eq!(changed.len(), 1);
        assert_eq!(
            changed[0]["rules"],
            json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]},
                   {"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]}])
        );
        let mut settled = roles.clone();
        settled[0] = changed[0].clone();
        assert!(
            aggregate(&settled).is_empty(),
            "nothing to write once aggregated"
        );
    }
}
