//! The kind-specific cells of each Table row (everything after NAME).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{int_at, len_at, map_string, or_none, selector_string, since, str_at, template_cells};
use crate::meta::ResourceExt;
use crate::resource::ResourceInfo;

/// Pod STATUS as kubectl shows it: the waiting/terminated reason of a container wins over the phase.
fn pod_status(pod: &Value) -> String {
    if pod.is_deleting() {
        return "Terminating".into();
    }
    let mut reason = match str_at(pod, "/status/reason") {
        "" => match str_at(pod, "/status/phase") {
            "" => "Pending",
            p => p,
        },
        r => r,
    }
    .to_string();
    for status in pod
        .pointer("/status/initContainerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if status
            .pointer("/state/terminated/exitCode")
            .and_then(Value::as_i64)
            == Some(0)
        {
            continue;
        }
        if let Some(r) = status
            .pointer("/state/waiting/reason")
            .and_then(Value::as_str)
            .filter(|r| *r != "PodInitializing")
        {
            return format!("Init:{r}");
        }
        return "Init:0".into();
    }
    for status in pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(r) = status
            .pointer("/state/waiting/reason")
            .and_then(Value::as_str)
        {
            reason = r.to_string();
        } else if let Some(t) = status.pointer("/state/terminated") {
            reason = match (
                t["reason"].as_str(),
                t["signal"].as_i64(),
                t["exitCode"].as_i64(),
            ) {
                (Some(r), _, _) => r.to_string(),
                (None, Some(s), _) if s != 0 => format!("Signal:{s}"),
                (None, _, code) => format!("ExitCode:{}", code.unwrap_or(0)),
            };
        }
    }
    reason
}

fn pod_cells(pod: &Value, age: Value) -> Vec<Value> {
    let statuses = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ready = statuses.iter().filter(|s| s["ready"] == true).count();
    let restarts: i64 = statuses
        .iter()
        .filter_map(|s| s["restartCount"].as_i64())
        .sum();
    vec![
        json!(format!("{ready}/{}", len_at(pod, "/spec/containers"))),
        json!(pod_status(pod)),
        json!(restarts),
        age,
        json!(or_none(str_at(pod, "/status/podIP").into())),
        json!(or_none(str_at(pod, "/spec/nodeName").into())),
        json!(or_none(str_at(pod, "/status/nominatedNodeName").into())),
        json!("<none>"),
    ]
}

fn service_ports(svc: &Value) -> String {
    let ports: Vec<String> = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64() {
                Some(node) => format!("{}:{node}/{proto}", p["port"]),
                None => format!("{}/{proto}", p["port"]),
            }
        })
        .collect();
    or_none(ports.join(","))
}

fn node_status(node: &Value) -> String {
    let ready = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .map(|c| c["status"] == "True");
    let mut status = match ready {
        Some(true) => "Ready",
        Some(false) => "NotReady",
        None => "Unknown",
    }
    .to_string();
    if node.pointer("/spec/unschedulable") == Some(&Value::Bool(true)) {
        status.push_str(",SchedulingDisabled");
    }
    status
}

fn node_address(node: &Value, kind: &str) -> String {
    or_none(
        node.pointer("/status/addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|a| a["type"] == kind)
            .and_then(|a| a["address"].as_str())
            .unwrap_or("")
            .into(),
    )
}

fn job_status(job: &Value) -> &'static str {
    let conditions = job
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let has = |t: &str| {
        conditions
            .iter()
            .any(|c| c["type"] == t && c["status"] == "True")
    };
    if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if job.pointer("/spec/suspend") == Some(&Value::Bool(true)) {
        "Suspended"
    } else {
        "Running"
    }
}

fn endpoints_string(ep: &Value) -> String {
    let mut out = Vec::new();
    for subset in ep
        .get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for addr in subset["addresses"].as_array().into_iter().flatten() {
            for port in subset["ports"].as_array().into_iter().flatten() {
                out.push(format!(
                    "{}:{}",
                    addr["ip"].as_str().unwrap_or(""),
                    port["port"]
                ));
            }
        }
    }
    let more = out.len().saturating_sub(3);
    out.truncate(3);
    let s = out.join(",");
    match more {
        0 => or_none(s),
        n => format!("{s} + {n} more..."),
    }
}

/// `Denied`, `Approved` or `Pending`, then `,Failed` and `,Issued`, as kubectl prints a
/// CertificateSigningRequest (upstream's `extractCSRStatus`).
fn csr_condition(csr: &Value) -> String {
    let has = |kind: &str| {
        csr.pointer("/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|c| c["type"] == kind)
    };
    let mut condition = if has("Denied") {
        "Denied"
    } else if has("Approved") {
        "Approved"
    } else {
        "Pending"
    }
    .to_string();
    if has("Failed") {
        condition.push_str(",Failed");
    }
    if !str_at(csr, "/status/certificate").is_empty() {
        condition.push_str(",Issued");
    }
    condition
}

fn event_object(ev: &Value) -> String {
    let obj = ev
        .get("involvedObject")
        .or_else(|| ev.get("regarding"))
        .cloned()
        .unwrap_or(Value::Null);
    format!(
        "{}/{}",
        obj["kind"].as_str().unwrap_or("").to_lowercase(),
        obj["name"].as_str().unwrap_or("")
    )
}

/// Cells after NAME; `age` is the AGE cell, placed where the kind shows it.
pub fn cells(info: &ResourceInfo, obj: &Value, now: DateTime<Utc>, age: Value) -> Vec<Value> {
    let o = obj;
    match (info.group.as_str(), info.kind.as_str()) {
        ("", "Pod") => pod_cells(o, age),
        ("apps", "Deployment") => {
            let [c, i] = template_cells(o, "/spec/template/spec/containers");
            vec![
                json!(format!(
                    "{}/{}",
                    int_at(o, "/status/readyReplicas"),
                    int_at(o, "/spec/replicas")
                )),
                json!(int_at(o, "/status/updatedReplicas")),
                json!(int_at(o, "/status/availableReplicas")),
                age,
                c,
                i,
                json!(selector_string(o.pointer("/spec/selector"))),
            ]
        }
        ("apps", "ReplicaSet") => {
            let [c, i] = template_cells(o, "/spec/template/spec/containers");
            vec![
                json!(int_at(o, "/spec/replicas")),
                json!(int_at(o, "/status/replicas")),
                json!(int_at(o, "/status/readyReplicas")),
                age,
                c,
                i,
                json!(selector_string(o.pointer("/spec/selector"))),
            ]
        }
        ("apps", "StatefulSet") => {
            let [c, i] = template_cells(o, "/spec/template/spec/containers");
            vec![
                json!(format!(
                    "{}/{}",
                    int_at(o, "/status/readyReplicas"),
                    int_at(o, "/spec/replicas")
                )),
                age,
                c,
                i,
            ]
        }
        ("apps", "DaemonSet") => {
            let [c, i] = template_cells(o, "/spec/template/spec/containers");
            let n = |f: &str| json!(int_at(o, &format!("/status/{f}")));
            vec![
                n("desiredNumberScheduled"),
                n("currentNumberScheduled"),
                n("numberReady"),
                n("updatedNumberScheduled"),
                n("numberAvailable"),
                json!(map_string(o.pointer("/spec/template/spec/nodeSelector"))),
                age,
                c,
                i,
                json!(selector_string(o.pointer("/spec/selector"))),
            ]
        }
        ("apps", "ControllerRevision") => {
            let owner = o
                .pointer("/metadata/ownerReferences/0")
                .map(|r| {
                    format!(
                        "{}.{}/{}",
                        r["kind"].as_str().unwrap_or("").to_lowercase(),
                        r["apiVersion"]
                            .as_str()
                            .unwrap_or("")
                            .split('/')
                            .next()
                            .unwrap_or(""),
                        r["name"].as_str().unwrap_or("")
                    )
                })
                .unwrap_or_else(|| "<none>".into());
            vec![json!(owner), json!(int_at(o, "/revision")), age]
        }
        ("batch", "Job") => {
            let [c, i] = template_cells(o, "/spec/template/spec/containers");
            let completions = match o.pointer("/spec/completions").and_then(Value::as_i64) {
                Some(n) => format!("{}/{n}", int_at(o, "/status/succeeded")),
                None => format!(
                    "{}/1 of {}",
                    int_at(o, "/status/succeeded"),
                    int_at(o, "/spec/parallelism")
                ),
            };
            let duration = match o.pointer("/status/startTime").and_then(Value::as_str) {
                Some(_) => {
                    let end = o
                        .pointer("/status/completionTime")
                        .and_then(Value::as_str)
                        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                        .map(|t| t.with_timezone(&Utc))
                        .unwrap_or(now);
                    since(o, "/status/startTime", end)
                }
                None => String::new(),
            };
            vec![
                json!(job_status(o)),
                json!(completions),
                json!(duration),
                age,
                c,
                i,
                json!(selector_string(o.pointer("/spec/selector"))),
            ]
        }
        ("batch", "CronJob") => {
            let [c, i] = template_cells(o, "/spec/jobTemplate/spec/template/spec/containers");
            let last = if o.pointer("/status/lastScheduleTime").is_some() {
                since(o, "/status/lastScheduleTime", now)
            } else {
                "<none>".into()
            };
            vec![
                json!(str_at(o, "/spec/schedule")),
                json!(or_none(str_at(o, "/spec/timeZone").into())),
                json!(
                    o.pointer("/spec/suspend")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                ),
                json!(len_at(o, "/status/active")),
                json!(last),
                age,
                c,
                i,
                json!("<none>"),
            ]
        }
        ("", "Service") => {
            let external: Vec<&str> = o
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|i| i["ip"].as_str())
                .collect();
            let external = if !external.is_empty() {
                external.join(",")
            } else if str_at(o, "/spec/type") == "LoadBalancer" {
                "<pending>".into()
            } else {
                "<none>".into()
            };
            vec![
                json!(str_at(o, "/spec/type")),
                json!(or_none(str_at(o, "/spec/clusterIP").into())),
                json!(external),
                json!(service_ports(o)),
                age,
                json!(map_string(o.pointer("/spec/selector"))),
            ]
        }
        ("", "Endpoints") => vec![json!(endpoints_string(o)), age],
        ("", "ConfigMap") => vec![json!(len_at(o, "/data") + len_at(o, "/binaryData")), age],
        ("", "Secret") => vec![json!(str_at(o, "/type")), json!(len_at(o, "/data")), age],
        ("", "ServiceAccount") => vec![json!(len_at(o, "/secrets")), age],
        ("", "Namespace") => vec![json!(str_at(o, "/status/phase")), age],
        ("", "Node") => {
            let roles: Vec<&str> = o
                .labels()
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
                .collect();
            vec![
                json!(node_status(o)),
                json!(or_none(roles.join(","))),
                age,
                json!(str_at(o, "/status/nodeInfo/kubeletVersion")),
                json!(node_address(o, "InternalIP")),
                json!(node_address(o, "ExternalIP")),
                json!(str_at(o, "/status/nodeInfo/osImage")),
                json!(str_at(o, "/status/nodeInfo/kernelVersion")),
                json!(str_at(o, "/status/nodeInfo/containerRuntimeVersion")),
            ]
        }
        ("", "Event") | ("events.k8s.io", "Event") => {
            let last = [
                "/lastTimestamp",
                "/eventTime",
                "/deprecatedLastTimestamp",
                "/metadata/creationTimestamp",
            ]
            .iter()
            .find(|p| o.pointer(p).is_some_and(|v| v.is_string()))
            .map(|p| since(o, p, now))
            .unwrap_or_else(|| "<unknown>".into());
            let message = o
                .get("message")
                .or_else(|| o.get("note"))
                .and_then(Value::as_str)
                .unwrap_or("");
            vec![
                json!(last),
                json!(str_at(o, "/type")),
                json!(str_at(o, "/reason")),
                json!(event_object(o)),
                json!(message),
            ]
        }
        ("", "PersistentVolume") => {
            let claim = o
                .pointer("/spec/claimRef")
                .map(|c| {
                    format!(
                        "{}/{}",
                        c["namespace"].as_str().unwrap_or(""),
                        c["name"].as_str().unwrap_or("")
                    )
                })
                .unwrap_or_default();
            vec![
                json!(str_at(o, "/spec/capacity/storage")),
                json!(access_modes(o)),
                json!(str_at(o, "/spec/persistentVolumeReclaimPolicy")),
                json!(str_at(o, "/status/phase")),
                json!(claim),
                json!(str_at(o, "/spec/storageClassName")),
                age,
            ]
        }
        ("", "PersistentVolumeClaim") => vec![
            json!(str_at(o, "/status/phase")),
            json!(str_at(o, "/spec/volumeName")),
            json!(str_at(o, "/status/capacity/storage")),
            json!(access_modes(o)),
            json!(or_none(str_at(o, "/spec/storageClassName").into())),
            age,
        ],
        ("storage.k8s.io", "StorageClass") => vec![
            json!(str_at(o, "/provisioner")),
            json!(match str_at(o, "/reclaimPolicy") {
                "" => "Delete",
                p => p,
            }),
            json!(match str_at(o, "/volumeBindingMode") {
                "" => "Immediate",
                m => m,
            }),
            json!(
                o.get("allowVolumeExpansion")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    .to_string()
            ),
            age,
        ],
        ("coordination.k8s.io", "Lease") => vec![json!(str_at(o, "/spec/holderIdentity")), age],
        ("certificates.k8s.io", "CertificateSigningRequest") => vec![
            age,
            json!(str_at(o, "/spec/signerName")),
            json!(str_at(o, "/spec/username")),
            json!(
                o.pointer("/spec/expirationSeconds")
                    .and_then(Value::as_i64)
                    .map_or_else(|| "<none>".to_string(), super::human_duration)
            ),
            json!(csr_condition(o)),
        ],
        ("discovery.k8s.io", "EndpointSlice") => {
            let ports: Vec<String> = o
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| p["port"].to_string())
                .collect();
            let addrs: Vec<String> = o
                .get("endpoints")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
                .filter_map(|a| a.as_str().map(String::from))
                .collect();
            vec![
                json!(str_at(o, "/addressType")),
                json!(or_none(ports.join(","))),
                json!(or_none(addrs.join(","))),
                age,
            ]
        }
        ("wasmkube.dev", "Plugin") => {
            let digest = str_at(o, "/status/activeDigest");
            let digest = if digest.is_empty() {
                str_at(o, "/spec/module/digest")
            } else {
                digest
            };
            fn short(d: &str) -> &str {
                d.strip_prefix("sha256:")
                    .map_or(d, |d| &d[..d.len().min(12)])
            }
            let shadow = str_at(o, "/status/shadow/digest");
            // A shadow that failed to load has no count.
            let divergences = match o.pointer("/status/shadow/divergences") {
                Some(n) => n.to_string(),
                None => "<none>".to_string(),
            };
            vec![
                json!(str_at(o, "/spec/kind")),
                json!(short(digest)),
                json!(or_none(str_at(o, "/status/phase").into())),
                json!(int_at(o, "/status/traps")),
                json!(or_none(short(shadow).into())),
                json!(divergences),
                age,
                json!(str_at(o, "/status/message")),
            ]
        }
        ("wasmkube.dev", "PluginModule") => vec![
            json!(str_at(o, "/digest")),
            json!(format!(
                "{}/{}",
                int_at(o, "/index") + 1,
                int_at(o, "/count")
            )),
            age,
        ],
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            // As kubectl's printer: `ClusterRole/view`, then the subjects of each kind.
            let subjects: Vec<&Value> = o
                .get("subjects")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .collect();
            let of_kind = |kind: &str| -> String {
                subjects
                    .iter()
                    .filter(|s| s["kind"] == kind)
                    .map(|s| match (kind, s["namespace"].as_str()) {
                        ("ServiceAccount", Some(ns)) => format!("{ns}/{}", str_at(s, "/name")),
                        _ => str_at(s, "/name").to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            vec![
                json!(format!(
                    "{}/{}",
                    str_at(o, "/roleRef/kind"),
                    str_at(o, "/roleRef/name")
                )),
                age,
                json!(of_kind("User")),
                json!(of_kind("Group")),
                json!(of_kind("ServiceAccount")),
            ]
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition")
        | ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => vec![
            o.pointer("/metadata/creationTimestamp")
                .cloned()
                .unwrap_or(Value::Null),
        ],
        _ => vec![age],
    }
}

fn access_modes(o: &Value) -> String {
    o.pointer("/spec/accessModes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|m| match m {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(",")
}
