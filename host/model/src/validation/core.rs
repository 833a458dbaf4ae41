//! Core kinds with rules of their own: Services, ConfigMaps and Secrets, CustomResourceDefinitions.

use std::collections::BTreeSet;

use serde_json::Value;

use super::meta::{DNS1123_LABEL_MSG, is_dns1123_label, is_dns1123_subdomain};
use super::{ErrorType, Errors};
use crate::meta::ResourceExt;

/// ConfigMaps and Secrets hold at most this many bytes of data.
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

pub fn validate_service(obj: &Value, old: Option<&Value>, errs: &mut Errors) {
    let spec = &obj["spec"];
    let kind = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    if !SERVICE_TYPES.contains(&kind) {
        errs.not_supported("spec.type", &spec["type"], SERVICE_TYPES);
    }
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    let ports = spec
        .get("ports")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if ports.is_empty() && kind != "ExternalName" && !headless {
        errs.required("spec.ports", "");
    }
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        let name = port.get("name").and_then(Value::as_str).unwrap_or("");
        if ports.len() > 1 && name.is_empty() {
            errs.required(format!("{path}.name"), "");
        } else if !name.is_empty() && !is_dns1123_label(name) {
            errs.invalid(format!("{path}.name"), &port["name"], "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character");
        }
        if !name.is_empty() && !names.insert(name) {
            errs.push(
                format!("{path}.name"),
                ErrorType::Duplicate(format!("{name:?}")),
            );
        }
        match port.get("port").and_then(Value::as_i64) {
            None => errs.required(format!("{path}.port"), ""),
            Some(p) if !(1..=65535).contains(&p) => errs.invalid(
                format!("{path}.port"),
                &Value::from(p),
                "must be between 1 and 65535, inclusive",
            ),
            Some(_) => {}
        }
        if let Some(target) = port
            .get("targetPort")
            .and_then(Value::as_i64)
            .filter(|p| !(1..=65535).contains(p))
        {
            errs.invalid(
                format!("{path}.targetPort"),
                &Value::from(target),
                "must be between 1 and 65535, inclusive",
            );
        }
        if let Some(node_port) = port
            .get("nodePort")
            .and_then(Value::as_i64)
            .filter(|p| *p != 0)
        {
            if kind != "NodePort" && kind != "LoadBalancer" {
                errs.push(
                    format!("{path}.nodePort"),
                    ErrorType::Forbidden("may not be used when `type` is 'ClusterIP'".into()),
                );
            } else if !(30000..=32767).contains(&node_port) {
                errs.invalid(format!("{path}.nodePort"), &Value::from(node_port), "provided port is not in the valid range. The range of valid ports is 30000-32767");
            }
        }
        if let Some(proto) = port
            .get("protocol")
            .filter(|p| !p.as_str().is_some_and(|p| PROTOCOLS.contains(&p)))
        {
            errs.not_supported(format!("{path}.protocol"), proto, PROTOCOLS);
        }
    }
    if let Some(old_ip) = old
        .and_then(|o| o.pointer("/spec/clusterIP"))
        .filter(|ip| ip.as_str().is_some_and(|s| !s.is_empty()))
        && spec.get("clusterIP").is_some_and(|ip| ip != old_ip)
    {
        errs.invalid("spec.clusterIP", &spec["clusterIP"], "field is immutable");
    }
}

fn is_config_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

/// Keys and total size of a ConfigMap's `data`/`binaryData` or a Secret's `data`.
pub fn validate_data(kind: &str, obj: &Value, errs: &mut Errors) {
    let mut total = 0;
    for field in ["data", "binaryData", "stringData"] {
        let Some(Value::Object(data)) = obj.get(field) else {
            continue;
        };
        for (key, value) in data {
            if !is_config_key(key) {
                errs.invalid(field, &Value::from(key.as_str()), "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')");
            }
            let len = value.as_str().map_or(0, str::len);
            // Secret data and ConfigMap binaryData are base64: count the decoded bytes.
            total += if field == "binaryData" || (kind == "Secret" && field == "data") {
                len / 4 * 3
            } else {
                len
            };
        }
    }
    if total > MAX_DATA_BYTES {
        errs.push(
            if kind == "Secret" { "data" } else { "[]" },
            ErrorType::TooLong(MAX_DATA_BYTES),
        );
    }
}

pub fn validate_crd(obj: &Value, errs: &mut Errors) {
    let spec = &obj["spec"];
    let group = spec.get("group").and_then(Value::as_str).unwrap_or("");
    if group.is_empty() {
        errs.required("spec.group", "");
    } else if !is_dns1123_subdomain(group) || !group.contains('.') {
        errs.invalid(
            "spec.group",
            &spec["group"],
            "should be a domain with at least one dot",
        );
    }
    let plural = spec
        .pointer("/names/plural")
        .and_then(Value::as_str)
        .unwrap_or("");
    // A CRD may not take over a resource the apiserver serves itself (say
    // leases.coordination.k8s.io or plugins.wasmkube.dev).
    if crate::resource::builtins()
        .iter()
        .any(|b| b.group == group && b.plural == plural)
    {
        errs.push(
            "spec.group",
            ErrorType::Forbidden(format!(
                "\"{plural}.{group}\" is served by the apiserver itself"
            )),
        );
    }
    if plural.is_empty() {
        errs.required("spec.names.plural", "");
    }
    validate_crd_names(spec, errs);
    let name = obj.name();
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        errs.invalid(
            "metadata.name",
            &obj["metadata"]["name"],
            "must be spec.names.plural+\".\"+spec.group",
        );
    }
    match spec.get("scope").and_then(Value::as_str) {
        Some("Namespaced" | "Cluster") => {}
        _ => errs.not_supported("spec.scope", &spec["scope"], &["Cluster", "Namespaced"]),
    }
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if versions.is_empty() {
        errs.required(
            "spec.versions",
            "must have exactly one version marked as storage version",
        );
    } else if versions
        .iter()
        .filter(|v| v["storage"] == Value::Bool(true))
        .count()
        != 1
    {
        errs.invalid(
            "spec.versions",
            &Value::from(versions.len()),
            "must have exactly one version marked as storage version",
        );
    }
    for (i, version) in versions.iter().enumerate() {
        if let Some(schema) = version.pointer("/schema/openAPIV3Schema") {
            let path = format!("spec.versions[{i}].schema.openAPIV3Schema");
            crate::schema::check_patterns(schema, &path, errs);
        }
    }
}

/// `[a-z]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

/// The names a CRD serves its resource under: they become URL segments and kinds
/// (ValidateCustomResourceDefinitionNames).
fn validate_crd_names(spec: &Value, errs: &mut Errors) {
    let names = &spec["names"];
    for field in ["plural", "singular"] {
        if let Some(name) = names[field].as_str().filter(|n| !n.is_empty())
            && !is_dns1123_label(name)
        {
            errs.invalid(
                format!("spec.names.{field}"),
                &names[field],
                DNS1123_LABEL_MSG,
            );
        }
    }
    for field in ["kind", "listKind"] {
        match names[field].as_str() {
            None | Some("") if field == "kind" => errs.required("spec.names.kind", ""),
            Some(kind) if !kind.is_empty() && !is_dns1035_label(&kind.to_lowercase()) => errs
                .invalid(
                    format!("spec.names.{field}"),
                    &names[field],
                    DNS1035_LABEL_MSG,
                ),
            _ => {}
        }
    }
    for (i, short) in names["shortNames"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        if !short.as_str().is_some_and(is_dns1123_label) {
            errs.invalid(
                format!("spec.names.shortNames[{i}]"),
                short,
                DNS1123_LABEL_MSG,
            );
        }
    }
}
