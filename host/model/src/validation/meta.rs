//! Object metadata checks: names, namespaces, labels and annotations.

use serde_json::Value;

use super::Errors;
use crate::resource::ResourceInfo;

pub(super) const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
pub(super) const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Dot-separated DNS-1123 labels, at most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// Kinds whose names must be DNS-1123 labels rather than subdomains.
fn needs_label_name(info: &ResourceInfo) -> bool {
    info.group.is_empty() && matches!(info.kind.as_str(), "Namespace" | "Service")
}

/// Checks a name of this kind; `Err` holds the message Kubernetes gives.
pub fn check_name(info: &ResourceInfo, name: &str) -> Result<(), &'static str> {
    if needs_label_name(info) {
        return if is_dns1123_label(name) {
            Ok(())
        } else {
            Err(DNS1123_LABEL_MSG)
        };
    }
    if let Some(problem) = is_path_segment_name(name) {
        return Err(problem);
    }
    // RBAC names (`system:node`) are path segments only, as Kubernetes' ValidateRBACName.
    if info.custom
        || matches!(info.kind.as_str(), "Event" | "Lease" | "Node")
        || info.group == crate::resource::RBAC_GROUP
    {
        return Ok(());
    }
    if is_dns1123_subdomain(name) {
        Ok(())
    } else {
        Err(DNS1123_SUBDOMAIN_MSG)
    }
}

/// What is wrong with `name` as one segment of a URL path (`IsValidPathSegmentName`), if
/// anything.
pub fn is_path_segment_name(name: &str) -> Option<&'static str> {
    (name.contains('/') || name.contains('%') || name == "." || name == "..")
        .then_some("may not contain '/' or '%' and may not be '.' or '..'")
}

/// A qualified name: `[prefix/]name`, name ≤ 63 alphanumerics with `-_.` inside.
fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    prefix.is_none_or(is_dns1123_subdomain) && is_label_value(name) && !name.is_empty()
}

/// Empty, or ≤ 63 alphanumerics with `-_.` inside.
pub fn is_label_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && v.as_bytes()[0].is_ascii_alphanumeric()
            && v.as_bytes()[v.len() - 1].is_ascii_alphanumeric())
}

/// Checks a `labels` map at `path`.
pub fn validate_labels(labels: Option<&Value>, path: &str, errs: &mut Errors) {
    let Some(Value::Object(labels)) = labels else {
        return;
    };
    for (key, value) in labels {
        if !is_qualified_name(key) {
            errs.invalid(path, &Value::from(key.as_str()), "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character");
        }
        match value.as_str() {
            Some(v) if is_label_value(v) => {}
            _ => errs.invalid(path, value, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"),
        }
    }
}

pub fn validate_object_meta(info: &ResourceInfo, obj: &Value, errs: &mut Errors) {
    let meta = obj.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if name.is_empty() {
        errs.required("metadata.name", "name or generateName is required");
    } else if let Err(msg) = check_name(info, name) {
        errs.invalid("metadata.name", &Value::from(name), msg);
    }
    validate_labels(meta.and_then(|m| m.get("labels")), "metadata.labels", errs);
    if let Some(Value::Object(annotations)) = meta.and_then(|m| m.get("annotations")) {
        let total: usize = annotations
            .iter()
            .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
            .sum();
        if total > 256 * 1024 {
            errs.push(
                "metadata.annotations",
                super::ErrorType::TooLong(256 * 1024),
            );
        }
        for key in annotations.keys() {
            if !is_qualified_name(key) {
                errs.invalid("metadata.annotations", &Value::from(key.as_str()), "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character");
            }
        }
    }
}
