//! Custom resources against their CRD's structural schema: pruning unknown fields, defaulting, validation.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use regex::{Regex, RegexBuilder};
use serde_json::{Map, Value};

use crate::validation::{ErrorType, Errors};

/// The most compiled `pattern`s kept; past it the cache starts again (CRDs are few).
const MAX_PATTERNS: usize = 4096;
/// The most memory one compiled `pattern` may take (the regex crate's matching is linear in
/// the text, so no pattern can make matching slow; this bounds its size).
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// Compiled `pattern`s by their text: each compiled once, not once per string checked.
static PATTERNS: LazyLock<Mutex<HashMap<String, Option<Regex>>>> = LazyLock::new(Mutex::default);

fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
}

/// Whether `text` matches `pattern`; a pattern that does not compile matches nothing (CRDs
/// with one are refused, see [`check_patterns`]).
fn matches(pattern: &str, text: &str) -> bool {
    let mut cache = PATTERNS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if cache.len() >= MAX_PATTERNS && !cache.contains_key(pattern) {
        cache.clear();
    }
    cache
        .entry(pattern.to_string())
        .or_insert_with(|| compile(pattern).ok())
        .as_ref()
        .is_some_and(|re| re.is_match(text))
}

/// Reports every `pattern` in a CRD's schema (at `path`) that does not compile, as
/// kube-apiserver's CRD validation does.
pub fn check_patterns(schema: &Value, path: &str, errs: &mut Errors) {
    let Value::Object(map) = schema else {
        return;
    };
    for (key, child) in map {
        let child_path = match key.as_str() {
            "properties" | "patternProperties" | "definitions" => {
                for (name, property) in child.as_object().into_iter().flatten() {
                    check_patterns(property, &format!("{path}.{key}[{name}]"), errs);
                }
                continue;
            }
            _ => format!("{path}.{key}"),
        };
        match child {
            Value::String(pattern) if key == "pattern" => {
                if let Err(e) = compile(pattern) {
                    errs.invalid(
                        child_path,
                        child,
                        format!("must be a valid regular expression, but isn't: {e}"),
                    );
                }
            }
            Value::Array(list) => {
                for (i, item) in list.iter().enumerate() {
                    check_patterns(item, &format!("{child_path}[{i}]"), errs);
                }
            }
            _ => check_patterns(child, &child_path, errs),
        }
    }
}

/// The schema of a property: `properties`, then `additionalProperties`, else none.
fn property_schema<'a>(schema: &'a Value, key: &str) -> Option<&'a Value> {
    schema
        .get("properties")
        .and_then(|p| p.get(key))
        .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))
}

fn preserves_unknown(schema: &Value) -> bool {
    schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        || schema.get("additionalProperties") == Some(&Value::Bool(true))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Removes the fields the schema does not know (returning their paths), drops nulls the schema
/// does not allow, and fills in `default`s — in that order, as Kubernetes does.
pub fn prune_and_default(schema: &Value, obj: &mut Value) -> Vec<String> {
    let mut unknown = Vec::new();
    if let Value::Object(map) = obj {
        // apiVersion, kind and metadata are the server's, not the schema's.
        let (mut kept, mut rest): (Map<String, Value>, Map<String, Value>) =
            (Map::new(), Map::new());
        for (k, v) in std::mem::take(map) {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                kept.insert(k, v);
            } else {
                rest.insert(k, v);
            }
        }
        let mut rest = Value::Object(rest);
        walk(schema, &mut rest, "", &mut unknown);
        kept.extend(rest.as_object().cloned().unwrap_or_default());
        *map = kept;
    }
    unknown
}

fn walk(schema: &Value, value: &mut Value, path: &str, unknown: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if schema.get("x-kubernetes-embedded-resource") == Some(&Value::Bool(true))
                || preserves_unknown(schema) && schema.get("properties").is_none()
            {
                return;
            }
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let child_path = join(path, &key);
                match property_schema(schema, &key) {
                    Some(child) => {
                        let drop_null = map.get(&key).is_some_and(Value::is_null)
                            && child.get("nullable") != Some(&Value::Bool(true));
                        if drop_null {
                            map.remove(&key);
                        } else if let Some(v) = map.get_mut(&key) {
                            walk(child, v, &child_path, unknown);
                        }
                    }
                    None if preserves_unknown(schema) => {}
                    None => {
                        map.remove(&key);
                        unknown.push(child_path);
                    }
                }
            }
            for (key, child) in schema
                .get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                if let Some(default) = child.get("default").filter(|_| !map.contains_key(key)) {
                    let mut default = default.clone();
                    walk(child, &mut default, &join(path, key), &mut Vec::new());
                    map.insert(key.clone(), default);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(item_schema, item, &format!("{path}[{i}]"), unknown);
                }
            }
        }
        _ => {}
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_ok(schema: &Value, v: &Value) -> bool {
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        return matches!(type_name(v), "integer" | "string");
    }
    match schema.get("type").and_then(Value::as_str) {
        None => true,
        Some("number") => matches!(type_name(v), "integer" | "number"),
        Some(t) => {
            type_name(v) == t || (v.is_null() && schema.get("nullable") == Some(&Value::Bool(true)))
        }
    }
}

/// Validates everything but apiVersion, kind and metadata against the schema, with Kubernetes'
/// wording (`spec.replicas in body should be greater than or equal to 0`).
pub fn validate(schema: &Value, obj: &Value, errs: &mut Errors) {
    let Value::Object(map) = obj else { return };
    let rest: Map<String, Value> = map
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "apiVersion" | "kind" | "metadata"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    check(schema, &Value::Object(rest), "", errs);
}

fn check(schema: &Value, v: &Value, path: &str, errs: &mut Errors) {
    let field = if path.is_empty() { "<root>" } else { path };
    if !type_ok(schema, v) {
        let want = schema
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("string");
        errs.invalid(
            field,
            v,
            format!("{field} in body must be of type {want}: {:?}", type_name(v)),
        );
        return;
    }
    if let Some(allowed) = schema
        .get("enum")
        .and_then(Value::as_array)
        .filter(|e| !e.contains(v))
    {
        let supported = allowed
            .iter()
            .map(|a| a.as_str().map_or_else(|| a.to_string(), String::from))
            .collect();
        errs.push(
            field,
            ErrorType::NotSupported {
                value: v.to_string(),
                supported,
            },
        );
    }
    let bound = |key: &str| schema.get(key).and_then(Value::as_f64);
    if let Some(n) = v.as_f64() {
        let exclusive = |key: &str| schema.get(key) == Some(&Value::Bool(true));
        if let Some(min) =
            bound("minimum").filter(|m| n < *m || (exclusive("exclusiveMinimum") && n == *m))
        {
            let op = if exclusive("exclusiveMinimum") {
                "greater than"
            } else {
                "greater than or equal to"
            };
            errs.invalid(field, v, format!("{field} in body should be {op} {min}"));
        }
        if let Some(max) =
            bound("maximum").filter(|m| n > *m || (exclusive("exclusiveMaximum") && n == *m))
        {
            let op = if exclusive("exclusiveMaximum") {
                "less than"
            } else {
                "less than or equal to"
            };
            errs.invalid(field, v, format!("{field} in body should be {op} {max}"));
        }
    }
    if let Some(s) = v.as_str() {
        let len = s.chars().count() as f64;
        if let Some(min) = bound("minLength").filter(|m| len < *m) {
            errs.invalid(
                field,
                v,
                format!("{field} in body should be at least {min} chars long"),
            );
        }
        if let Some(max) = bound("maxLength").filter(|m| len > *m) {
            errs.push(
                field,
                ErrorType::Invalid {
                    value: v.to_string(),
                    detail: format!("{field} in body may not be longer than {max}"),
                },
            );
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
            && !matches(pattern, s)
        {
            errs.invalid(
                field,
                v,
                format!("{field} in body should match '{pattern}'"),
            );
        }
    }
    match v {
        Value::Object(map) => {
            for required in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !map.contains_key(required) {
                    errs.required(join(path, required), "");
                }
            }
            for (key, child) in map {
                if let Some(child_schema) = property_schema(schema, key) {
                    check(child_schema, child, &join(path, key), errs);
                }
            }
        }
        Value::Array(items) => {
            let n = items.len() as f64;
            if let Some(min) = bound("minItems").filter(|m| n < *m) {
                errs.invalid(
                    field,
                    &Value::from(items.len()),
                    format!("{field} in body should have at least {min} items"),
                );
            }
            if let Some(max) = bound("maxItems").filter(|m| n > *m) {
                errs.invalid(
                    field,
                    &Value::from(items.len()),
                    format!("must have at most {max} items"),
                );
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item_schema, item, &format!("{path}[{i}]"), errs);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["content"], "properties": {
                "content": {"type": "string", "minLength": 1},
                "replicas": {"type": "integer", "minimum": 0, "default": 1},
                "mode": {"type": "string", "enum": ["a", "b"]},
                "ports": {"type": "array", "maxItems": 2, "items": {"type": "object", "properties": {"port": {"type": "integer"}}}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "port": {"x-kubernetes-int-or-string": true},
            }},
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        }})
    }

    #[test]
    fn prunes_unknown_fields_and_defaults() {
        let mut obj = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"},
            "spec": {"content": "c", "bogus": 1, "ports": [{"port": 1, "junk": true}], "extra": {"any": {"thing": 1}}},
            "top": 1});
        let unknown = prune_and_default(&schema(), &mut obj);
        assert_eq!(unknown, vec!["spec.bogus", "spec.ports[0].junk", "top"]);
        assert_eq!(obj["spec"]["replicas"], 1);
        assert_eq!(obj["spec"]["extra"]["any"]["thing"], 1);
        assert_eq!(obj["metadata"]["name"], "n");
    }

    #[test]
    fn reports_every_bad_field_like_kubernetes() {
        let obj = json!({"spec": {"replicas": -1, "mode": "c", "ports": [{"port": "x"}, {}, {}], "port": true}});
        let mut errs = Errors::default();
        validate(&schema(), &obj, &mut errs);
        let mut messages: Vec<String> = errs.0.iter().map(ToString::to_string).collect();
        messages.sort();
        assert_eq!(
            messages,
            vec![
                "spec.content: Required value",
                r#"spec.mode: Unsupported value: "c": supported values: "a", "b""#,
                "spec.port: Invalid value: true: spec.port in body must be of type string: \"boolean\"",
                "spec.ports: Invalid value: 3: must have at most 2 items",
                r#"spec.ports[0].port: Invalid value: "x": spec.ports[0].port in body must be of type integer: "string""#,
                "spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0",
            ]
        );
    }
}
