//! Roles, ClusterRoles and their bindings, as Kubernetes' `pkg/apis/rbac/validation` checks them.

use serde_json::Value;

use super::meta::{is_dns1123_subdomain, is_path_segment_name};
use super::{Errors, items, str_field};
use crate::resource::RBAC_GROUP;

/// The rules of a Role (`namespaced`) or ClusterRole (ValidatePolicyRule).
pub fn validate_role(obj: &Value, namespaced: bool, errs: &mut Errors) {
    for (i, rule) in items(obj, "rules") {
        let path = format!("rules[{i}]");
        let len = |field: &str| {
            rule.get(field)
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
        };
        if len("verbs") == 0 {
            errs.required(
                format!("{path}.verbs"),
                "verbs must contain at least one value",
            );
        }
        if len("nonResourceURLs") > 0 {
            let urls = &rule["nonResourceURLs"];
            if namespaced {
                errs.invalid(
                    format!("{path}.nonResourceURLs"),
                    urls,
                    "namespaced rules cannot apply to non-resource URLs",
                );
            }
            if len("apiGroups") > 0 || len("resources") > 0 || len("resourceNames") > 0 {
                errs.invalid(
                    format!("{path}.nonResourceURLs"),
                    urls,
                    "rules cannot apply to both regular resources and non-resource URLs",
                );
            }
            continue;
        }
        if len("apiGroups") == 0 {
            errs.required(
                format!("{path}.apiGroups"),
                "resource rules must supply at least one api group",
            );
        }
        if len("resources") == 0 {
            errs.required(
                format!("{path}.resources"),
                "resource rules must supply at least one resource",
            );
        }
    }
}

/// A RoleBinding (`namespaced`) or ClusterRoleBinding: its roleRef, which cannot change once
/// written, and its subjects (ValidateRoleBinding, ValidateRoleBindingSubject).
pub fn validate_binding(obj: &Value, old: Option<&Value>, namespaced: bool, errs: &mut Errors) {
    let role_ref = &obj["roleRef"];
    if str_field(role_ref, "apiGroup") != Some(RBAC_GROUP) {
        errs.not_supported("roleRef.apiGroup", &role_ref["apiGroup"], &[RBAC_GROUP]);
    }
    let kinds: &[&'static str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !str_field(role_ref, "kind").is_some_and(|k| kinds.contains(&k)) {
        errs.not_supported("roleRef.kind", &role_ref["kind"], kinds);
    }
    match str_field(role_ref, "name").filter(|n| !n.is_empty()) {
        None => errs.required("roleRef.name", ""),
        Some(name) => {
            if let Some(problem) = is_path_segment_name(name) {
                errs.invalid("roleRef.name", &role_ref["name"], problem);
            }
        }
    }
    for (i, subject) in items(obj, "subjects") {
        validate_subject(subject, &format!("subjects[{i}]"), namespaced, errs);
    }
    if let Some(old) = old
        && old["roleRef"] != obj["roleRef"]
    {
        errs.invalid("roleRef", role_ref, "cannot change roleRef");
    }
}

fn validate_subject(subject: &Value, path: &str, namespaced: bool, errs: &mut Errors) {
    let name = str_field(subject, "name").unwrap_or("");
    if name.is_empty() {
        errs.required(format!("{path}.name"), "");
    }
    let api_group = str_field(subject, "apiGroup").unwrap_or("");
    match str_field(subject, "kind").unwrap_or("") {
        "ServiceAccount" => {
            if !name.is_empty() && !is_dns1123_subdomain(name) {
                errs.invalid(
                    format!("{path}.name"),
                    &subject["name"],
                    "a ServiceAccount name must be a DNS-1123 subdomain",
                );
            }
            if !api_group.is_empty() {
                errs.not_supported(format!("{path}.apiGroup"), &subject["apiGroup"], &[""]);
            }
            if !namespaced && str_field(subject, "namespace").unwrap_or("").is_empty() {
                errs.required(format!("{path}.namespace"), "");
            }
        }
        "User" | "Group" => {
            if api_group != RBAC_GROUP {
                errs.not_supported(
                    format!("{path}.apiGroup"),
                    &subject["apiGroup"],
                    &[RBAC_GROUP],
                );
            }
        }
        _ => errs.not_supported(
            format!("{path}.kind"),
            &subject["kind"],
            &["ServiceAccount", "User", "Group"],
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(check: impl FnOnce(&mut Errors)) -> Vec<String> {
        let mut errs = Errors::default();
        check(&mut errs);
        errs.0
            .iter()
            .map(|e| format!("{}: {}", e.field, e.detail()))
            .collect()
    }

    #[test]
    fn rules_need_verbs_and_resources_or_urls_but_not_both() {
        let role = json!({"rules": [
            {"apiGroups": [""], "resources": ["pods"]},
            {"verbs": ["get"]},
            {"verbs": ["get"], "nonResourceURLs": ["/healthz"], "resources": ["pods"]},
            {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]},
        ]});
        let errors = fields(|e| validate_role(&role, true, e));
        assert_eq!(
            errors,
            [
                "rules[0].verbs: Required value: verbs must contain at least one value",
                "rules[1].apiGroups: Required value: resource rules must supply at least one api group",
                "rules[1].resources: Required value: resource rules must supply at least one resource",
                "rules[2].nonResourceURLs: Invalid value: [\"/healthz\"]: namespaced rules cannot apply to non-resource URLs",
                "rules[2].nonResourceURLs: Invalid value: [\"/healthz\"]: rules cannot apply to both regular resources and non-resource URLs",
            ]
        );
        let urls = json!({"rules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]});
        assert!(fields(|e| validate_role(&urls, false, e)).is_empty());
    }

    #[test]
    fn bindings_name_a_role_of_their_scope_and_known_subjects() {
        let binding = json!({
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": "../x"},
            "subjects": [
                {"kind": "ServiceAccount", "name": "bot"},
                {"kind": "User", "name": "jane"},
                {"kind": "Robot", "name": "r2"},
            ],
        });
        let errors = fields(|e| validate_binding(&binding, None, false, e));
        assert_eq!(
            errors[0],
            "roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\""
        );
        assert!(
            errors[1].starts_with("roleRef.name: Invalid value: \"../x\""),
            "{errors:?}"
        );
        assert_eq!(errors[2], "subjects[0].namespace: Required value");
        assert!(
            errors[3].starts_with("subjects[1].apiGroup: Unsupported value"),
            "{errors:?}"
        );
        assert!(
            errors[4].starts_with("subjects[2].kind: Unsupported value"),
            "{errors:?}"
        );
        assert_eq!(errors.len(), 5);
    }

    #[test]
    fn the_role_ref_cannot_change() {
        let old =
            json!({"roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "view"}});
        let new =
            json!({"roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "admin"}});
        let errors = fields(|e| validate_binding(&new, Some(&old), true, e));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].ends_with("cannot change roleRef"), "{errors:?}");
    }
}
