//! The parts of a pod spec that become host paths, URLs or resource limits on a node: volumes
//! and the names they refer to, mount subPaths, items paths, env sources and quantities.
//!
//! Each rule follows Kubernetes' `pkg/apis/core/validation` (ValidateVolumes,
//! validateLocalDescendingPath, ValidateResourceRequirements), with its wording.

use std::collections::BTreeSet;

use serde_json::Value;

use super::meta::{
    DNS1123_LABEL_MSG, DNS1123_SUBDOMAIN_MSG, is_dns1123_label, is_dns1123_subdomain,
};
use super::{Errors, items, str_field};
use crate::quantity;

/// The resources a container may ask for without a domain prefix (Kubernetes'
/// `IsStandardContainerResourceName`), besides `hugepages-<size>`.
const STANDARD_RESOURCES: &[&str] = &["cpu", "memory", "ephemeral-storage"];

/// The quantity syntax, as Kubernetes words its parse error.
const QUANTITY_MSG: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// Checks that the name at `field` of `source` (a volume source or a reference) names an
/// object: required, a DNS-1123 subdomain (it becomes a URL segment on the node).
fn object_name(source: &Value, field: &str, path: &str, errs: &mut Errors) {
    match str_field(source, field) {
        None | Some("") => errs.required(format!("{path}.{field}"), ""),
        Some(name) if !is_dns1123_subdomain(name) => errs.invalid(
            format!("{path}.{field}"),
            &source[field],
            DNS1123_SUBDOMAIN_MSG,
        ),
        Some(_) => {}
    }
}

/// `validateLocalDescendingPath`: a relative path with no `..` element.
fn descending_path(value: &Value, text: &str, path: &str, errs: &mut Errors) {
    if text.starts_with('/') {
        errs.invalid(path, value, "must be a relative path");
    }
    if text.split('/').any(|part| part == "..") {
        errs.invalid(path, value, "must not contain '..'");
    } else if text.starts_with("..") {
        // validateLocalNonReservedPath: `..data` and the like are the atomic writer's own.
        errs.invalid(path, value, "must not start with '..'");
    }
}

/// A file `mode`: 0 to 0777.
fn file_mode(obj: &Value, field: &str, path: &str, errs: &mut Errors) {
    if let Some(mode) = obj.get(field).filter(|m| !m.is_null())
        && !mode.as_i64().is_some_and(|m| (0..=0o777).contains(&m))
    {
        errs.invalid(
            format!("{path}.{field}"),
            mode,
            "must be a number between 0 and 0777 (octal), both inclusive",
        );
    }
}

/// `items` of a configMap, secret or projected source: keys and paths inside the volume.
fn key_paths(source: &Value, path: &str, errs: &mut Errors) {
    file_mode(source, "defaultMode", path, errs);
    for (i, item) in items(source, "items") {
        let ipath = format!("{path}.items[{i}]");
        if str_field(item, "key").is_none_or(str::is_empty) {
            errs.required(format!("{ipath}.key"), "");
        }
        match str_field(item, "path") {
            None | Some("") => errs.required(format!("{ipath}.path"), ""),
            Some(p) => descending_path(&item["path"], p, &format!("{ipath}.path"), errs),
        }
        file_mode(item, "mode", &ipath, errs);
    }
}

/// One volume's source.
fn volume_source(volume: &Value, path: &str, errs: &mut Errors) {
    if let Some(cm) = volume.get("configMap") {
        let cpath = format!("{path}.configMap");
        object_name(cm, "name", &cpath, errs);
        key_paths(cm, &cpath, errs);
    }
    if let Some(secret) = volume.get("secret") {
        let spath = format!("{path}.secret");
        object_name(secret, "secretName", &spath, errs);
        key_paths(secret, &spath, errs);
    }
    if let Some(claim) = volume.get("persistentVolumeClaim") {
        object_name(
            claim,
            "claimName",
            &format!("{path}.persistentVolumeClaim"),
            errs,
        );
    }
    if let Some(host) = volume.get("hostPath")
        && str_field(host, "path").is_none_or(str::is_empty)
    {
        errs.required(format!("{path}.hostPath.path"), "");
    }
    if let Some(api) = volume.get("downwardAPI") {
        let dpath = format!("{path}.downwardAPI");
        file_mode(api, "defaultMode", &dpath, errs);
        for (i, item) in items(api, "items") {
            let ipath = format!("{dpath}.items[{i}].path");
            match str_field(item, "path") {
                None | Some("") => errs.required(ipath, ""),
                Some(p) => descending_path(&item["path"], p, &ipath, errs),
            }
        }
    }
    if let Some(projected) = volume.get("projected") {
        let ppath = format!("{path}.projected");
        file_mode(projected, "defaultMode", &ppath, errs);
        for (i, source) in items(projected, "sources") {
            let spath = format!("{ppath}.sources[{i}]");
            for kind in ["configMap", "secret"] {
                if let Some(s) = source.get(kind) {
                    let kpath = format!("{spath}.{kind}");
                    object_name(s, "name", &kpath, errs);
                    key_paths(s, &kpath, errs);
                }
            }
        }
    }
}

/// Checks `spec.volumes`; the set of their names, for the mounts.
pub fn volumes<'a>(spec: &'a Value, path: &str, errs: &mut Errors) -> BTreeSet<&'a str> {
    let mut names = BTreeSet::new();
    for (i, volume) in items(spec, "volumes") {
        let vpath = format!("{path}.volumes[{i}]");
        match str_field(volume, "name") {
            None | Some("") => errs.required(format!("{vpath}.name"), ""),
            Some(name) if !is_dns1123_label(name) => {
                errs.invalid(format!("{vpath}.name"), &volume["name"], DNS1123_LABEL_MSG)
            }
            Some(name) if !names.insert(name) => errs.push(
                format!("{vpath}.name"),
                super::ErrorType::Duplicate(format!("{name:?}")),
            ),
            Some(_) => {}
        }
        volume_source(volume, &vpath, errs);
    }
    for (i, secret) in items(spec, "imagePullSecrets") {
        object_name(
            secret,
            "name",
            &format!("{path}.imagePullSecrets[{i}]"),
            errs,
        );
    }
    names
}

/// A mount's `subPath`: inside its volume.
pub fn sub_path(mount: &Value, path: &str, errs: &mut Errors) {
    for field in ["subPath", "subPathExpr"] {
        if let Some(sub) = str_field(mount, field).filter(|s| !s.is_empty()) {
            descending_path(&mount[field], sub, &format!("{path}.{field}"), errs);
        }
    }
}

/// The objects a container's environment is read from.
pub fn env_sources(container: &Value, path: &str, errs: &mut Errors) {
    for (i, env) in items(container, "env") {
        for kind in ["configMapKeyRef", "secretKeyRef"] {
            if let Some(r) = env.pointer(&format!("/valueFrom/{kind}")) {
                object_name(
                    r,
                    "name",
                    &format!("{path}.env[{i}].valueFrom.{kind}"),
                    errs,
                );
            }
        }
    }
    for (i, from) in items(container, "envFrom") {
        for kind in ["configMapRef", "secretRef"] {
            if let Some(r) = from.get(kind) {
                object_name(r, "name", &format!("{path}.envFrom[{i}].{kind}"), errs);
            }
        }
    }
}

/// The `httpGet` actions of a container's probes and hooks: the node writes their header names
/// and values, and path, into an HTTP request, so none may carry CR/LF (validateHTTPHeader).
pub fn http_actions(container: &Value, path: &str, errs: &mut Errors) {
    let actions = [
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "lifecycle.postStart",
        "lifecycle.preStop",
    ];
    for action in actions {
        let pointer = format!("/{}/httpGet", action.replace('.', "/"));
        let Some(get) = container.pointer(&pointer) else {
            continue;
        };
        let gpath = format!("{path}.{action}.httpGet");
        for field in ["path", "host"] {
            if let Some(text) = str_field(get, field)
                && text.chars().any(char::is_control)
            {
                errs.invalid(
                    format!("{gpath}.{field}"),
                    &get[field],
                    "must not contain control characters",
                );
            }
        }
        for (i, header) in items(get, "httpHeaders") {
            let hpath = format!("{gpath}.httpHeaders[{i}]");
            let name = str_field(header, "name").unwrap_or("");
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                errs.invalid(format!("{hpath}.name"), &header["name"], "a valid HTTP header must consist of alphanumeric characters or '-' (e.g. 'X-Header-Name', regex used for validation is '[-A-Za-z0-9]+')");
            }
            if str_field(header, "value").is_some_and(|v| v.chars().any(char::is_control)) {
                errs.invalid(
                    format!("{hpath}.value"),
                    &header["value"],
                    "must not contain control characters",
                );
            }
        }
    }
}

/// A quantity's text: Kubernetes takes JSON numbers as quantities too.
fn quantity_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A container's `resources`: standard names, quantities that parse and are not negative, and
/// requests no greater than limits (ValidateResourceRequirements).
pub fn resources(container: &Value, path: &str, errs: &mut Errors) {
    let rpath = format!("{path}.resources");
    let mut parsed = |field: &str| {
        let mut amounts = Vec::new();
        let Some(Value::Object(map)) = container.pointer(&format!("/resources/{field}")) else {
            return amounts;
        };
        for (name, value) in map {
            let qpath = format!("{rpath}.{field}[{name}]");
            let standard = STANDARD_RESOURCES.contains(&name.as_str())
                || name.starts_with("hugepages-")
                || name.contains('/');
            if !standard {
                errs.invalid(
                    &qpath,
                    &Value::from(name.as_str()),
                    "must be a standard resource for containers",
                );
                continue;
            }
            match quantity_text(value).and_then(|t| quantity::milli(&t).map(|m| (t, m))) {
                None => errs.invalid(&qpath, value, QUANTITY_MSG),
                Some((_, m)) if m < 0 => {
                    errs.invalid(&qpath, value, "must be greater than or equal to 0")
                }
                Some((text, m)) => amounts.push((name.as_str(), value, text, m)),
            }
        }
        amounts
    };
    let limits = parsed("limits");
    let requests = parsed("requests");
    for (name, value, _, request) in &requests {
        if let Some((_, _, text, limit)) = limits.iter().find(|(n, ..)| n == name)
            && request > limit
        {
            errs.invalid(
                format!("{rpath}.requests[{name}]"),
                value,
                format!("must be less than or equal to {name} limit of {text}"),
            );
        }
    }
}
