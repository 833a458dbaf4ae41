//! The create-only reviews, answered in `status` and never stored: SelfSubjectAccessReview, SubjectAccessReview, LocalSubjectAccessReview, SelfSubjectRulesReview (`kubectl auth can-i`) and SelfSubjectReview (`kubectl auth whoami`).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use wasmkube_model::resource::ResourceInfo;
use wasmkube_model::validation::Errors;

use super::attributes::Attributes;
use super::rbac::Index;
use super::user::User;
use crate::error::ApiError;

/// The review `body` of `kind` answered for `user` (the requester) with `index`.
pub fn answer(kind: &str, mut body: Value, user: &User, index: &Index) -> Result<Value, ApiError> {
    let spec = &body["spec"];
    let status = match kind {
        "SelfSubjectAccessReview" => access(spec, user, index)?,
        "SubjectAccessReview" | "LocalSubjectAccessReview" => access(spec, &subject(spec)?, index)?,
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

/// The namespace rules of a LocalSubjectAccessReview sent to `namespace` (upstream's
/// `ValidateLocalSubjectAccessReview`): `metadata.namespace` is the request's (filled in when
/// empty), and the review asks about resources in that namespace only.
pub fn check_local(info: &ResourceInfo, namespace: &str, body: &mut Value) -> Result<(), ApiError> {
    if !body["metadata"].is_object() {
        body["metadata"] = json!({});
    }
    match body["metadata"]["namespace"].as_str() {
        Some(given) if !given.is_empty() && given != namespace => {
            return Err(ApiError::BadRequest("the namespace of the provided object does not match the namespace sent on the request".into()));
        }
        _ => body["metadata"]["namespace"] = json!(namespace),
    }
    let spec = &body["spec"];
    let mut errors = Errors::default();
    if let Some(r) = spec.get("resourceAttributes").filter(|r| r.is_object())
        && text(r, "namespace") != namespace
    {
        let given = json!(text(r, "namespace"));
        let field = "spec.resourceAttributes.namespace";
        errors.invalid(field, &given, "must match metadata.namespace");
    }
    if let Some(n) = spec.get("nonResourceAttributes").filter(|n| n.is_object()) {
        errors.invalid(
            "spec.nonResourceAttributes",
            n,
            "disallowed on this kind of request",
        );
    }
    match errors.0.is_empty() {
        true => Ok(()),
        false => Err(ApiError::invalid(info, "", errors.0)),
    }
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

    #[test]
    fn a_local_review_asks_about_its_own_namespace_only() {
        let registry =
            wasmkube_model::resource::Registry::new(wasmkube_model::resource::builtins());
        let info = registry
            .by_kind("authorization.k8s.io/v1", "LocalSubjectAccessReview")
            .expect("served");
        let review = |ns: &str| json!({"spec": {"user": "alice", "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": ns}}});
        let mut body = review("t1");
        check_local(info, "t1", &mut body).expect("same namespace");
        assert_eq!(body["metadata"]["namespace"], json!("t1"));
        let Err(ApiError::Invalid { errors, .. }) = check_local(info, "t2", &mut review("t1"))
        else {
            panic!("another namespace is refused");
        };
        assert_eq!(errors[0].field, "spec.resourceAttributes.namespace");
        let mut moved = review("t1");
        moved["metadata"] = json!({"namespace": "t1"});
        assert!(matches!(
            check_local(info, "t2", &mut moved),
            Err(ApiError::BadRequest(_))
        ));
        let mut paths = json!({"spec": {"user": "alice", "nonResourceAttributes": {"verb": "get", "path": "/api"}}});
        let Err(ApiError::Invalid { errors, .. }) = check_local(info, "t1", &mut paths) else {
            panic!("non-resource attributes are refused");
        };
        assert_eq!(errors[0].field, "spec.nonResourceAttributes");
    }
}
