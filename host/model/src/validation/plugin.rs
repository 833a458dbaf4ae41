//! The project's own kinds: Plugin and PluginModule.

use serde_json::Value;

use super::Errors;

fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

pub fn validate_plugin(obj: &Value, errs: &mut Errors) {
    let spec = &obj["spec"];
    match spec.get("kind").and_then(Value::as_str) {
        Some("Controller") => {}
        _ => errs.not_supported("spec.kind", &spec["kind"], &["Controller"]),
    }
    match spec.pointer("/module/digest").and_then(Value::as_str) {
        None => errs.required("spec.module.digest", ""),
        Some(d) if !is_digest(d) => errs.invalid(
            "spec.module.digest",
            &spec["module"]["digest"],
            "must be sha256:<64 lowercase hex digits>",
        ),
        Some(_) => {}
    }
    if spec
        .pointer("/module/chunks")
        .and_then(Value::as_i64)
        .is_none_or(|n| n < 1)
    {
        errs.invalid(
            "spec.module.chunks",
            spec.pointer("/module/chunks").unwrap_or(&Value::Null),
            "must be at least 1",
        );
    }
    errs.at_least(&spec["limits"], "memoryBytes", "spec.limits", 1 << 20);
    errs.at_least(&spec["limits"], "callTimeoutMillis", "spec.limits", 1);
    errs.at_least(spec, "workers", "spec", 1);
    for (i, grant) in spec
        .get("permissions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if grant
            .get("resources")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
        {
            errs.required(format!("spec.permissions[{i}].resources"), "");
        }
        for (j, verb) in grant
            .get("verbs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if !matches!(
                verb.as_str(),
                Some("get" | "list" | "create" | "update" | "patch" | "delete" | "*")
            ) {
                errs.not_supported(
                    format!("spec.permissions[{i}].verbs[{j}]"),
                    verb,
                    &["*", "create", "delete", "get", "list", "patch", "update"],
                );
            }
        }
    }
}

pub fn validate_module(obj: &Value, errs: &mut Errors) {
    if !obj
        .get("digest")
        .and_then(Value::as_str)
        .is_some_and(is_digest)
    {
        errs.invalid(
            "digest",
            obj.get("digest").unwrap_or(&Value::Null),
            "must be sha256:<64 lowercase hex digits>",
        );
    }
    let (index, count) = (
        obj.get("index").and_then(Value::as_i64),
        obj.get("count").and_then(Value::as_i64),
    );
    if !matches!((index, count), (Some(i), Some(n)) if 0 <= i && i < n) {
        errs.invalid(
            "index",
            obj.get("index").unwrap_or(&Value::Null),
            "must be from 0 to count-1",
        );
    }
    if obj
        .get("data")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        errs.required("data", "base64 of this chunk of the module");
    }
}
