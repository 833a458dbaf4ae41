//! Server-side printing: the columns and cells of `kubectl get` for every kind (`meta.k8s.io/v1` Table).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::resource::{PrinterColumn, ResourceInfo};

/// A column: name, type, priority (0 = always shown, 1 = `-o wide`).
type Column = (&'static str, &'static str, u8);

const NAME: Column = ("Name", "string", 0);
const AGE: Column = ("Age", "string", 0);
const CONTAINERS: Column = ("Containers", "string", 1);
const IMAGES: Column = ("Images", "string", 1);
const SELECTOR: Column = ("Selector", "string", 1);

fn columns_of(info: &ResourceInfo) -> Vec<Column> {
    // Events list their name last, and only with `-o wide`, as kubectl users know them.
    let mut cols = if is_event(info) {
        Vec::new()
    } else {
        vec![NAME]
    };
    cols.extend_from_slice(match (info.group.as_str(), info.kind.as_str()) {
        ("", "Pod") => &[
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            AGE,
            ("IP", "string", 1),
            ("Node", "string", 1),
            ("Nominated Node", "string", 1),
            ("Readiness Gates", "string", 1),
        ],
        ("apps", "Deployment") => &[
            ("Ready", "string", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("apps", "ReplicaSet") => &[
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("apps", "StatefulSet") => &[("Ready", "string", 0), AGE, CONTAINERS, IMAGES],
        ("apps", "DaemonSet") => &[
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Node Selector", "string", 0),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("apps", "ControllerRevision") => {
            &[("Controller", "string", 0), ("Revision", "integer", 0), AGE]
        }
        ("batch", "Job") => &[
            ("Status", "string", 0),
            ("Completions", "string", 0),
            ("Duration", "string", 0),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("batch", "CronJob") => &[
            ("Schedule", "string", 0),
            ("Timezone", "string", 0),
            ("Suspend", "boolean", 0),
            ("Active", "integer", 0),
            ("Last Schedule", "string", 0),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("", "Service") => &[
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            AGE,
            SELECTOR,
        ],
        ("", "Endpoints") => &[("Endpoints", "string", 0), AGE],
        ("", "ConfigMap") => &[("Data", "integer", 0), AGE],
        ("", "Secret") => &[("Type", "string", 0), ("Data", "integer", 0), AGE],
        ("", "ServiceAccount") => &[("Secrets", "integer", 0), AGE],
        ("", "Namespace") => &[("Status", "string", 0), AGE],
        ("", "Node") => &[
            ("Status", "string", 0),
            ("Roles", "string", 0),
            AGE,
            ("Version", "string", 0),
            ("Internal-IP", "string", 1),
            ("External-IP", "string", 1),
            ("OS-Image", "string", 1),
            ("Kernel-Version", "string", 1),
            ("Container-Runtime", "string", 1),
        ],
        ("", "Event") | ("events.k8s.io", "Event") => &[
            ("Last Seen", "string", 0),
            ("Type", "string", 0),
            ("Reason", "string", 0),
            ("Object", "string", 0),
            ("Message", "string", 0),
            ("Name", "string", 1),
        ],
        ("", "PersistentVolume") => &[
            ("Capacity", "string", 0),
            ("Access Modes", "string", 0),
            ("Reclaim Policy", "string", 0),
            ("Status", "string", 0),
            ("Claim", "string", 0),
            ("StorageClass", "string", 0),
            AGE,
        ],
        ("", "PersistentVolumeClaim") => &[
            ("Status", "string", 0),
            ("Volume", "string", 0),
            ("Capacity", "string", 0),
            ("Access Modes", "string", 0),
            ("StorageClass", "string", 0),
            AGE,
        ],
        ("storage.k8s.io", "StorageClass") => &[
            ("Provisioner", "string", 0),
            ("ReclaimPolicy", "string", 0),
            ("VolumeBindingMode", "string", 0),
            ("AllowVolumeExpansion", "string", 0),
            AGE,
        ],
        ("coordination.k8s.io", "Lease") => &[("Holder", "string", 0), AGE],
        ("certificates.k8s.io", "CertificateSigningRequest") => &[
            AGE,
            ("SignerName", "string", 0),
            ("Requestor", "string", 0),
            ("RequestedDuration", "string", 0),
            ("Condition", "string", 0),
        ],
        ("discovery.k8s.io", "EndpointSlice") => &[
            ("AddressType", "string", 0),
            ("Ports", "string", 0),
            ("Endpoints", "string", 0),
            AGE,
        ],
        ("apiextensions.k8s.io", "CustomResourceDefinition")
        | ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => &[("Created At", "date", 0)],
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => &[
            ("Role", "string", 0),
            AGE,
            ("Users", "string", 1),
            ("Groups", "string", 1),
            ("ServiceAccounts", "string", 1),
        ],
        ("wasmkube.dev", "Plugin") => &[
            ("Kind", "string", 0),
            ("Digest", "string", 0),
            ("Phase", "string", 0),
            ("Traps", "integer", 0),
            ("Shadow", "string", 0),
            ("Divergences", "string", 0),
            AGE,
            ("Message", "string", 1),
        ],
        ("wasmkube.dev", "PluginModule") => &[("Digest", "string", 0), ("Chunk", "string", 0), AGE],
        _ => &[AGE],
    });
    cols
}

/// The `columnDefinitions` of a Table for this resource.
pub fn column_definitions(info: &ResourceInfo) -> Value {
    if !info.printer_columns.is_empty() {
        let mut cols = vec![
            json!({"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0}),
        ];
        cols.extend(info.printer_columns.iter().map(|c| {
            json!({"name": c.name, "type": c.kind, "format": "", "description": c.description, "priority": c.priority})
        }));
        return Value::Array(cols);
    }
    columns_of(info)
        .into_iter()
        .map(|(name, kind, priority)| {
            json!({"name": name, "type": kind, "format": if name == "Name" { "name" } else { "" }, "description": "", "priority": priority})
        })
        .collect()
}

/// Kubernetes' `HumanDuration`: `45s`, `3m20s`, `45m`, `3h20m`, `23h`, `2d5h`, `120d`, `2y30d`.
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    match s {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 => match s % 60 {
            0 => format!("{m}m"),
            r => format!("{m}m{r}s"),
        },
        _ if h < 3 => format!("{m}m"),
        _ if h < 8 => match m % 60 {
            0 => format!("{h}h"),
            r => format!("{h}h{r}m"),
        },
        _ if h < 48 => format!("{h}h"),
        _ if h < 24 * 8 => match h % 24 {
            0 => format!("{d}d"),
            r => format!("{d}d{r}h"),
        },
        _ if d < 365 * 2 => format!("{d}d"),
        _ => match d % 365 {
            0 => format!("{}y", d / 365),
            r => format!("{}y{r}d", d / 365),
        },
    }
}

fn since(obj: &Value, pointer: &str, now: DateTime<Utc>) -> String {
    obj.pointer(pointer)
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| human_duration((now - t.with_timezone(&Utc)).num_seconds()))
        .unwrap_or_else(|| "<unknown>".into())
}

fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn int_at(obj: &Value, pointer: &str) -> i64 {
    obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn or_none(s: String) -> String {
    if s.is_empty() { "<none>".into() } else { s }
}

fn len_at(obj: &Value, pointer: &str) -> usize {
    match obj.pointer(pointer) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

/// `CONTAINERS`, `IMAGES` of a pod template at `pointer`.
fn template_cells(obj: &Value, pointer: &str) -> [Value; 2] {
    let containers = obj
        .pointer(pointer)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let join = |field: &str| {
        containers
            .iter()
            .map(|c| c[field].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    [json!(join("name")), json!(join("image"))]
}

/// `matchLabels` and `matchExpressions` as `a=b,c in (d)`.
fn selector_string(selector: Option<&Value>) -> String {
    let Some(selector) = selector else {
        return "<none>".into();
    };
    let mut parts: Vec<String> = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    for expr in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = expr["key"].as_str().unwrap_or("");
        let values: Vec<&str> = expr["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match expr["operator"].as_str().unwrap_or("") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            _ => format!("!{key}"),
        });
    }
    or_none(parts.join(","))
}

fn map_string(map: Option<&Value>) -> String {
    or_none(
        map.and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect::<Vec<_>>()
            .join(","),
    )
}

mod cells;

/// The cells of one row, in the order of [`column_definitions`].
fn is_event(info: &ResourceInfo) -> bool {
    info.kind == "Event" && matches!(info.group.as_str(), "" | "events.k8s.io")
}

pub fn row_cells(info: &ResourceInfo, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let name = str_at(obj, "/metadata/name");
    // kube-apiserver marks the default StorageClass in its name cell.
    let name = if info.group == "storage.k8s.io"
        && info.kind == "StorageClass"
        && crate::defaults::is_default_storage_class(obj)
    {
        json!(format!("{name} (default)"))
    } else {
        json!(name)
    };
    if is_event(info) {
        let mut row = cells::cells(info, obj, now, Value::Null);
        row.push(name);
        return row;
    }
    let mut row = vec![name];
    if !info.printer_columns.is_empty() {
        row.extend(
            info.printer_columns
                .iter()
                .map(|c| custom_cell(obj, c, now)),
        );
        return row;
    }
    let age = json!(since(obj, "/metadata/creationTimestamp", now));
    row.extend(cells::cells(info, obj, now, age));
    row
}

/// Follows a simple JSONPath (`.a.b[0].c`) through `obj`.
fn json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = obj;
    for part in path
        .trim_start_matches('.')
        .split('.')
        .filter(|p| !p.is_empty())
    {
        let (field, indexes) = part
            .split_once('[')
            .map_or((part, ""), |(f, rest)| (f, rest));
        if !field.is_empty() {
            current = current.get(field)?;
        }
        for index in indexes.split('[').filter(|i| !i.is_empty()) {
            current = current.get(index.trim_end_matches(']').parse::<usize>().ok()?)?;
        }
    }
    Some(current)
}

/// A CRD column's cell: the value at its path, dates shown as an age.
fn custom_cell(obj: &Value, column: &PrinterColumn, now: DateTime<Utc>) -> Value {
    match json_path(obj, &column.json_path) {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(t)) if column.kind == "date" => match DateTime::parse_from_rfc3339(t) {
            Ok(t) => json!(human_duration((now - t.with_timezone(&Utc)).num_seconds())),
            Err(_) => json!(t),
        },
        Some(v) if v.is_object() || v.is_array() => json!(v.to_string()),
        Some(v) => v.clone(),
    }
}

#[cfg(test)]
mod tests;
