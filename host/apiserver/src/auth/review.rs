//! The create-only reviews, answered in `status` and never stored: SelfSubjectAccessReview, SubjectAccessReview, SelfSubjectRulesReview (`kubectl auth can-i`) and SelfSubjectReview (`kubectl auth whoami`).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::attributes::Attributes;
use super::rbac::Index;
use super::user::User;
use crate::error::ApiError;

/// The review `body` of `kind` answered for `user` (the requester) with `index`.
pub fn answer(kind: &str, mut body: Value, user: &User, index: &Index) -> Result<Value, ApiError> {
    let spec = &body["spec"];
    let status = match kind {
        "SelfSubjectAccessReview" => access(spec, user, index)?,
        "SubjectAccessReview" => access(spec, &subject(spec)?, index)?,
        "SelfSubjectRulesReview" => rules(spec, user, index),
        "SelfSubjectReview" => json!({"userInfo": user.to_json()}),
        other => return Err(ApiError::Internal(format!("{other} is not a review"))),
    };
    body["status"] = status;
    if !body["metadata"].is_object() {
        body["metadata"] = json!({});
    }
    body["metadata"]["creationTimestamp"] = Value::Null;
    Ok(body)
}

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field].as_str().unwrap_or_default()
}

/// The user a SubjectAccessReview asks about (its groups as given, as upstream).
fn subject(spec: &Value) -> Result<User, ApiError> {
    let name = text(spec, "user");
    let groups: Vec<String> = spec["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g.as_str().map(String::from))
        .collect();
    if name.is_empty() && groups.is_empty() {
        return Err(ApiError::BadRequest(
            "spec.user or spec.groups: at least one of user or group must be specified".into(),
        ));
    }
    let extra: BTreeMap<String, Vec<String>> =
        serde_json::from_value(spec["extra"].clone()).unwrap_or_default();
    Ok(User {
        name: name.to_string(),
        uid: text(spec, "uid").to_string(),
        groups,
        extra,
    })
}

/// `status` of an access review: whether `user` may do what the spec's attributes describe.
fn access(spec: &Value, user: &User, index: &Index) -> Result<Value, ApiError> {
    let attributes = if let Some(r) = spec.get("resourceAttributes").filter(|r| r.is_object()) {
        let mut a = Attributes::resource(
            text(r, "verb"),
            text(r, "group"),
            text(r, "resource"),
            text(r, "namespace"),
            text(r, "name"),
        );
        a.subresource = text(r, "subresource").to_string();
        a.api_version = text(r, "version").to_string();
        a
    } else if let Some(n) = spec.get("nonResourceAttributes").filter(|n| n.is_object()) {
        Attributes {
            verb: text(n, "verb").to_string(),
            path: text(n, "path").to_string(),
            ..Attributes::default()
        }
    } else {
        return Err(ApiError::BadRequest(
            "spec.resourceAttributes: exactly one of nonResourceAttributes or resourceAttributes must be specified".into(),
        ));
    };
    Ok(json!({"allowed": index.allows(user, &attributes)}))
}

/// `status` of a SelfSubjectRulesReview: every rule the user holds in `spec.namespace`.
fn rules(spec: &Value, user: &User, index: &Index) -> Value {
    let (mut resource_rules, mut non_resource_rules) = (Vec::new(), Vec::new());
    for rule in index.rules_of(user, text(spec, "namespace")) {
        if rule.non_resource_urls.is_empty() {
            resource_rules.push(rule.to_json());
        } else {
            non_resource_rules
                .push(json!({"verbs": rule.verbs, "nonResourceURLs": rule.non_resource_urls}));
        }
    }
    json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": false})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::rbac::Policy;

    #[test]
    fn reviews_answer_from_the_index() {
        let index = Index::build(&Policy {
            cluster_roles: vec![json!({"metadata": {"name": "view"}, "rules": [
                {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]})],
            role_bindings: vec![json!({"metadata": {"name": "b", "namespace": "t1"},
                "roleRef": {"kind": "ClusterRole", "name": "view"}, "subjects": [{"kind": "User", "name": "alice"}]})],
            ..Policy::default()
        });
        let alice = User::new("alice", []);
        let review = |resource: &str, ns: &str| json!({"spec": {"resourceAttributes": {"verb": "get", "resource": resource, "namespace": ns}}});
        let allowed = |body: Value| {
            answer("SelfSubjectAccessReview", body, &alice, &index).expect("answered")["status"]["allowed"].clone()
        };
        assert_eq!(allowed(review("pods", "t1")), json!(true));
        assert_eq!(allowed(review("secrets", "t1")), json!(false));
        assert_eq!(allowed(review("pods", "t2")), json!(false));
        let mut sar = review("pods", "t1");
        sar["spec"]["user"] = json!("alice");
        let admin = User::token_admin();
        assert_eq!(
            answer("SubjectAccessReview", sar, &admin, &index).expect("answered")["status"]["allowed"],
            json!(true)
        );
        let rules = answer(
            "SelfSubjectRulesReview",
            json!({"spec": {"namespace": "t1"}}),
            &alice,
            &index,
        )
        .expect("answered");
        assert_eq!(
            rules["status"]["resourceRules"],
            json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}])
        );
        let me = answer("SelfSubjectReview", json!({}), &alice, &index).expect("answered");
        assert_eq!(me["status"]["userInfo"]["username"], json!("alice"));
    }
}
