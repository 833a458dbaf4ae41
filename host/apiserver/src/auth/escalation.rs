//! Escalation prevention, as upstream's RBAC registry: a Role or ClusterRole written needs its rules held (or `escalate`), a binding needs its role's rules held (or `bind`), and a Plugin, which gets a ClusterRole and its binding, needs its permissions held (or both).

use serde_json::Value;
use wasmkube_model::resource::{PLUGIN_GROUP, RBAC_GROUP, ResourceInfo};

use super::attributes::Attributes;
use super::rbac::{Index, text};
use super::rule::Rule;
use super::user::{MASTERS, User};
use crate::error::ApiError;
use crate::server::Server;

/// The most single rules (verb × group × resource × name) one write is broken down into.
const MAX_SINGLE_RULES: usize = 100_000;

/// Refuses the write of `object` (of `info`, one of the RBAC kinds or a Plugin) by `user` if it
/// grants what `user` does not hold.
pub async fn check(
    server: &Server,
    info: &ResourceInfo,
    object: &Value,
    user: &User,
) -> Result<(), ApiError> {
    let Some(auth) = server.auth.as_ref() else {
        return Ok(());
    };
    let is_plugin = info.group == PLUGIN_GROUP && info.kind == "Plugin";
    if user.in_group(MASTERS) || (info.group != RBAC_GROUP && !is_plugin) {
        return Ok(());
    }
    let index = auth.authorizer.index();
    let ns = text(object, "/metadata/namespace");
    let name = text(object, "/metadata/name");
    let denied = |message: String| ApiError::Denied {
        group: info.group.clone(),
        resource: info.plural.clone(),
        name: name.to_string(),
        message,
    };
    match info.kind.as_str() {
        "Plugin" => {
            // Its ClusterRole is written and bound for it: `escalate` and `bind` on that role
            // together stand for holding the rules, as for a role and binding written by hand.
            let role = super::plugin::role(name);
            let may = |verb: &str| {
                let a = Attributes::resource(verb, RBAC_GROUP, "clusterroles", "", &role);
                index.allows(user, &a)
            };
            if may("escalate") && may("bind") {
                return Ok(());
            }
            let Some(permissions) = object.pointer("/spec/permissions").filter(|p| p.is_array())
            else {
                // Without permissions it holds what its module names, known once it runs.
                let all = [Rule::all_resources()];
                if missing(&index, user, "", &all)?.is_empty() {
                    return Ok(());
                }
                return Err(denied(
                    "must have cluster-admin privileges to write a Plugin without spec.permissions"
                        .into(),
                ));
            };
            let missing = missing(&index, user, "", &super::plugin::rules(permissions))?;
            if missing.is_empty() {
                return Ok(());
            }
            Err(denied(not_held(user, &missing)))
        }
        "Role" | "ClusterRole" => {
            let escalate = Attributes::resource("escalate", RBAC_GROUP, &info.plural, ns, name);
            if index.allows(user, &escalate) {
                return Ok(());
            }
            if object.get("aggregationRule").is_some_and(|r| !r.is_null()) {
                let all = [Rule::all_resources(), Rule::all_urls()];
                if !missing(&index, user, "", &all)?.is_empty() {
                    return Err(denied(
                        "must have cluster-admin privileges to use the aggregationRule".into(),
                    ));
                }
            }
            let missing = missing(&index, user, ns, &Rule::of_role(object))?;
            if missing.is_empty() {
                return Ok(());
            }
            Err(denied(not_held(user, &missing)))
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            let (kind, role) = (text(object, "/roleRef/kind"), text(object, "/roleRef/name"));
            let (plural, role_ns) = match kind {
                "ClusterRole" => ("clusterroles", ""),
                _ => ("roles", ns),
            };
            let bind = Attributes::resource("bind", RBAC_GROUP, plural, role_ns, role);
            if index.allows(user, &bind) {
                return Ok(());
            }
            let registry = server.registry();
            let role_info = registry
                .get(RBAC_GROUP, "v1", plural)
                .ok_or_else(|| ApiError::Internal(format!("{plural} are not served")))?;
            let rules = match server
                .objects
                .get(role_info, Some(role_ns).filter(|n| !n.is_empty()), role)
                .await?
            {
                Some(stored) => Rule::of_role(&stored.object),
                None => return Err(denied(format!("{kind} {role:?} not found"))),
            };
            let missing = missing(&index, user, ns, &rules)?;
            if missing.is_empty() {
                return Ok(());
            }
            Err(denied(not_held(user, &missing)))
        }
        _ => Ok(()),
    }
}

/// The single rules of `wanted` that the rules `user` holds in `ns` do not cover.
fn missing(index: &Index, user: &User, ns: &str, wanted: &[Rule]) -> Result<Vec<Rule>, ApiError> {
    let held = index.rules_of(user, ns);
    let count = wanted
        .iter()
        .try_fold(0usize, |sum, rule| sum.checked_add(rule.breakdown_len()?));
    if count.is_none_or(|count| count > MAX_SINGLE_RULES) {
        return Err(ApiError::BadRequest(format!(
            "the rules break down into more than {MAX_SINGLE_RULES} verb, group, resource and name combinations"
        )));
    }
    let missing = wanted
        .iter()
        .flat_map(Rule::breakdown)
        .filter(|single| !held.iter().any(|owner| owner.covers(single)))
        .collect();
    Ok(compact(missing))
}

/// Merges rules that differ in their verbs only (upstream's `CompactRules`).
fn compact(rules: Vec<Rule>) -> Vec<Rule> {
    let mut merged: Vec<Rule> = Vec::new();
    for rule in rules {
        let same = |r: &Rule| {
            r.api_groups == rule.api_groups
                && r.resources == rule.resources
                && r.resource_names == rule.resource_names
                && r.non_resource_urls == rule.non_resource_urls
        };
        match merged.iter_mut().find(|r| same(r)) {
            Some(existing) => existing.verbs.extend(rule.verbs),
            None => merged.push(rule),
        }
    }
    merged
}

/// Upstream's message: `user "x" (groups=[...]) is attempting to grant RBAC permissions not currently held:` and the rules.
fn not_held(user: &User, missing: &[Rule]) -> String {
    let groups: Vec<String> = user.groups.iter().map(|g| format!("{g:?}")).collect();
    let rules: Vec<String> = missing.iter().map(Rule::compact_string).collect();
    format!(
        "user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        groups.join(" "),
        rules.join("\n")
    )
}
