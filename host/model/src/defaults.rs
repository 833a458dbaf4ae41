//! Defaulting: the fields Kubernetes fills in when a client leaves them out.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::names::{BETA_DEFAULT_STORAGE_CLASS, DEFAULT_STORAGE_CLASS};

/// Sets `obj[key]` to `value` when it is absent or null; creates `obj` as a map if needed.
fn default(obj: &mut Value, key: &str, value: Value) {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    if let Some(map) = obj.as_object_mut() {
        let slot = map.entry(key).or_insert(Value::Null);
        if slot.is_null() {
            *slot = value;
        }
    }
}

fn each_in(obj: &mut Value, field: &str, f: impl Fn(&mut Value)) {
    if let Some(items) = obj.get_mut(field).and_then(Value::as_array_mut) {
        items.iter_mut().for_each(f);
    }
}

/// Whether a StorageClass is marked default (by the annotation or its beta predecessor), as
/// Kubernetes' `IsDefaultAnnotation` decides.
pub fn is_default_storage_class(class: &Value) -> bool {
    let annotations = &class["metadata"]["annotations"];
    [DEFAULT_STORAGE_CLASS, BETA_DEFAULT_STORAGE_CLASS]
        .iter()
        .any(|a| annotations[a].as_str() == Some("true"))
}

/// `Always` for `:latest` or untagged images, `IfNotPresent` otherwise (digests included).
pub fn image_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn default_container(c: &mut Value) {
    let image = c
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    default(c, "imagePullPolicy", json!(image_pull_policy(&image)));
    default(c, "terminationMessagePath", json!("/dev/termination-log"));
    default(c, "terminationMessagePolicy", json!("File"));
    default(c, "resources", json!({}));
    each_in(c, "ports", |p| default(p, "protocol", json!("TCP")));
}

/// Defaults a `PodSpec`. `restart_policy` is `None` for Job templates, which must say it.
pub fn default_pod_spec(spec: &mut Value, restart_policy: Option<&str>) {
    if let Some(policy) = restart_policy {
        default(spec, "restartPolicy", json!(policy));
    }
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "securityContext", json!({}));
    default(spec, "enableServiceLinks", json!(true));
    default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    default(spec, "priority", json!(0));
    each_in(spec, "containers", default_container);
    each_in(spec, "initContainers", default_container);
}

fn default_template(obj: &mut Value, pointer: &str, restart_policy: Option<&str>) {
    if let Some(spec) = obj.pointer_mut(pointer) {
        default_pod_spec(spec, restart_policy);
    }
}

/// Fills in the defaults of a built-in kind, identified by its group and kind.
pub fn apply_defaults(group: &str, kind: &str, obj: &mut Value) {
    match (group, kind) {
        ("", "Pod") => {
            if let Some(spec) = obj.get_mut("spec") {
                default_pod_spec(spec, Some("Always"));
                // The deprecated `serviceAccount` names it when the new field does not.
                let deprecated = spec["serviceAccount"].as_str().filter(|s| !s.is_empty());
                let name = json!(deprecated.unwrap_or("default"));
                default(spec, "serviceAccountName", name);
            }
        }
        ("apps", "Deployment") => {
            let spec = &mut obj["spec"];
            default(spec, "replicas", json!(1));
            default(spec, "revisionHistoryLimit", json!(10));
            default(spec, "progressDeadlineSeconds", json!(600));
            default(spec, "strategy", json!({}));
            default(&mut spec["strategy"], "type", json!("RollingUpdate"));
            if spec["strategy"]["type"] == "RollingUpdate" {
                default(&mut spec["strategy"], "rollingUpdate", json!({}));
                let rolling = &mut spec["strategy"]["rollingUpdate"];
                default(rolling, "maxSurge", json!("25%"));
                default(rolling, "maxUnavailable", json!("25%"));
            }
            default_template(obj, "/spec/template/spec", Some("Always"));
        }
        ("apps", "ReplicaSet") => {
            default(&mut obj["spec"], "replicas", json!(1));
            default_template(obj, "/spec/template/spec", Some("Always"));
        }
        ("apps", "StatefulSet") => {
            let spec = &mut obj["spec"];
            default(spec, "replicas", json!(1));
            default(spec, "podManagementPolicy", json!("OrderedReady"));
            default(spec, "revisionHistoryLimit", json!(10));
            default(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            );
            default(
                spec,
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
            default_template(obj, "/spec/template/spec", Some("Always"));
        }
        ("apps", "DaemonSet") => {
            let spec = &mut obj["spec"];
            default(spec, "revisionHistoryLimit", json!(10));
            default(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
            );
            default_template(obj, "/spec/template/spec", Some("Always"));
        }
        ("batch", "Job") => {
            let spec = &mut obj["spec"];
            default(spec, "parallelism", json!(1));
            if spec.get("completions").is_none_or(Value::is_null)
                && spec.get("parallelism") == Some(&json!(1))
            {
                default(spec, "completions", json!(1));
            }
            default(spec, "backoffLimit", json!(6));
            default(spec, "completionMode", json!("NonIndexed"));
            default(spec, "suspend", json!(false));
            default_template(obj, "/spec/template/spec", None);
        }
        ("batch", "CronJob") => {
            let spec = &mut obj["spec"];
            default(spec, "concurrencyPolicy", json!("Allow"));
            default(spec, "suspend", json!(false));
            default(spec, "successfulJobsHistoryLimit", json!(3));
            default(spec, "failedJobsHistoryLimit", json!(1));
            default_template(obj, "/spec/jobTemplate/spec/template/spec", None);
        }
        ("", "Service") => {
            let spec = &mut obj["spec"];
            default(spec, "type", json!("ClusterIP"));
            default(spec, "sessionAffinity", json!("None"));
            default(spec, "internalTrafficPolicy", json!("Cluster"));
            each_in(spec, "ports", |p| {
                default(p, "protocol", json!("TCP"));
                let port = p.get("port").cloned().unwrap_or(Value::Null);
                default(p, "targetPort", port);
            });
        }
        ("", "Secret") => {
            default(obj, "type", json!("Opaque"));
            fold_string_data(obj);
        }
        ("", "Namespace") => {
            default(&mut obj["spec"], "finalizers", json!(["kubernetes"]));
            default(&mut obj["status"], "phase", json!("Active"));
        }
        ("", "PersistentVolumeClaim") => {
            default(&mut obj["spec"], "volumeMode", json!("Filesystem"))
        }
        // rbac/v1's SetDefaults_Subject: users and groups are RBAC's (a ServiceAccount's group,
        // core's, is the empty string, left out).
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            each_in(obj, "subjects", |subject| {
                if matches!(subject["kind"].as_str(), Some("User" | "Group")) {
                    default(subject, "apiGroup", json!("rbac.authorization.k8s.io"));
                }
            });
        }
        _ => {}
    }
}

/// Moves a Secret's `stringData` into `data` as base64, `stringData` winning on equal keys.
fn fold_string_data(obj: &mut Value) {
    let Some(Value::Object(strings)) = obj.as_object_mut().and_then(|o| o.remove("stringData"))
    else {
        return;
    };
    default(obj, "data", json!({}));
    if let Some(data) = obj["data"].as_object_mut() {
        for (key, value) in strings {
            let text = value.as_str().unwrap_or_default();
            data.insert(
                key,
                json!(base64::engine::general_purpose::STANDARD.encode(text)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_defaults() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}]}]}}}});
        apply_defaults("apps", "Deployment", &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], "Always");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
    }

    #[test]
    fn binding_subjects_get_rbacs_group_unless_service_accounts() {
        let mut b = json!({"subjects": [{"kind": "User", "name": "u"}, {"kind": "Group", "name": "g"},
            {"kind": "ServiceAccount", "name": "s", "namespace": "n"}, "not a subject"]});
        apply_defaults("rbac.authorization.k8s.io", "RoleBinding", &mut b);
        assert_eq!(b["subjects"][0]["apiGroup"], "rbac.authorization.k8s.io");
        assert_eq!(b["subjects"][1]["apiGroup"], "rbac.authorization.k8s.io");
        assert!(b["subjects"][2].get("apiGroup").is_none());
        assert_eq!(b["subjects"][3], "not a subject");
    }

    #[test]
    fn explicit_values_stay() {
        let mut d = json!({"spec": {"replicas": 0, "strategy": {"type": "Recreate"}}});
        apply_defaults("apps", "Deployment", &mut d);
        assert_eq!(d["spec"]["replicas"], 0);
        assert!(d["spec"]["strategy"].get("rollingUpdate").is_none());
    }

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(image_pull_policy("busybox"), "Always");
        assert_eq!(image_pull_policy("busybox:latest"), "Always");
        assert_eq!(image_pull_policy("localhost:5000/busybox"), "Always");
        assert_eq!(
            image_pull_policy("localhost:5000/busybox:1.36"),
            "IfNotPresent"
        );
        assert_eq!(image_pull_policy("busybox@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn secret_string_data_folds_into_data() {
        let mut s = json!({"data": {"a": "eA==", "b": "eQ=="}, "stringData": {"b": "z"}});
        apply_defaults("", "Secret", &mut s);
        assert_eq!(
            s,
            json!({"data": {"a": "eA==", "b": "eg=="}, "type": "Opaque"})
        );
    }

    #[test]
    fn service_target_port_defaults_to_port() {
        let mut s =
            json!({"spec": {"ports": [{"port": 80}, {"port": 443, "targetPort": "https"}]}});
        apply_defaults("", "Service", &mut s);
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(s["spec"]["ports"][1]["targetPort"], "https");
        assert_eq!(s["spec"]["type"], "ClusterIP");
    }
}
