//! Pod Security admission: the `pod-security.kubernetes.io/{enforce,audit,warn}` namespace labels and the Pod Security Standards, as `k8s.io/pod-security-admission`.
//!
//! Pods in violation of a namespace's `enforce` level are refused (403); violations of its
//! `warn` level come back as `Warning` headers; violations of its `audit` level are logged (there
//! is no audit log). Workloads with a pod template (Deployments, Jobs…) are only warned about
//! and audited, as upstream: their pods meet `enforce` when the controller creates them.

mod baseline;
mod check;
mod namespace;
mod policy;
mod restricted;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::Value;
use wasmkube_model::meta::ResourceExt;
use wasmkube_model::resource::ResourceInfo;
use wasmkube_model::validation::FieldError;

pub use namespace::{admit_namespace, existing_pods, stricter_enforce};
pub use policy::Level;

use check::{PodView, Violation, describe, evaluate};
use policy::{LevelVersion, Policy};

use crate::error::ApiError;

/// The namespace whose pods are the system's: without labels it is `privileged` whatever the
/// cluster default.
const SYSTEM_NAMESPACE: &str = "kube-system";

/// Pod subresources that cannot change what the checks look at (upstream's
/// `ignoredPodSubresources`).
const IGNORED_POD_SUBRESOURCES: &[&str] = &[
    "exec",
    "attach",
    "binding",
    "eviction",
    "log",
    "portforward",
    "proxy",
    "status",
];

/// Where a kind keeps the pod it describes: `Some("")` for a Pod itself, the pointer to the pod
/// template of a workload, `None` for other kinds.
fn template_of(info: &ResourceInfo) -> Option<&'static str> {
    match (info.group.as_str(), info.kind.as_str()) {
        ("", "Pod") => Some(""),
        ("", "PodTemplate") => Some("/template"),
        ("", "ReplicationController")
        | ("apps", "ReplicaSet" | "Deployment" | "StatefulSet" | "DaemonSet")
        | ("batch", "Job") => Some("/spec/template"),
        ("batch", "CronJob") => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

/// Whether a write of this kind, or of this subresource of it, is checked against its
/// namespace's policy: pods and workloads with a pod template, and of the subresources only a
/// pod's that can change what the checks look at (so a node's status writes read no Namespace).
pub fn applies_to(info: &ResourceInfo, subresource: Option<&str>) -> bool {
    let Some(pointer) = template_of(info).filter(|_| info.schema.is_none()) else {
        return false;
    };
    subresource.is_none_or(|sub| pointer.is_empty() && !IGNORED_POD_SUBRESOURCES.contains(&sub))
}

/// The policy of `namespace` (a Namespace object) over the cluster default `default`, and the
/// errors of its labels.
fn namespace_policy(default: Level, namespace: &Value) -> (Policy, Vec<FieldError>) {
    let defaults = match namespace.name() {
        SYSTEM_NAMESPACE => Policy::uniform(Level::Privileged),
        _ => Policy::uniform(default),
    };
    Policy::from_labels(&labels(namespace), defaults)
}

fn labels(obj: &Value) -> BTreeMap<String, String> {
    obj.labels()
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

/// A write of a pod or of a workload with a pod template, checked against the policy of its
/// `namespace` (over the cluster default `default`).
pub struct Write<'a> {
    pub info: &'a ResourceInfo,
    pub namespace: &'a Value,
    pub obj: &'a Value,
    /// The object before an update.
    pub old: Option<&'a Value>,
    pub subresource: Option<&'a str>,
}

/// Upstream's `ValidatePod` and `ValidatePodController`: refuses a pod that violates the
/// namespace's `enforce` level; adds a warning for the `warn` level; logs the `audit` level.
pub fn admit(
    default: Level,
    write: &Write<'_>,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    let Some(pointer) = template_of(write.info) else {
        return Ok(());
    };
    if !applies_to(write.info, write.subresource) {
        return Ok(());
    }
    let pod = pointer.is_empty();
    let (policy, label_errors) = namespace_policy(default, write.namespace);
    let quiet = policy.warn.level == Level::Privileged && policy.audit.level == Level::Privileged;
    if label_errors.is_empty() && quiet && (!pod || policy.enforce.level == Level::Privileged) {
        return Ok(());
    }
    if pod
        && write
            .old
            .is_some_and(|old| !significant_update(write.obj, old))
    {
        return Ok(());
    }
    let Some(template) = write.obj.pointer(pointer).filter(|t| !t.is_null()) else {
        return Ok(());
    };
    let decoded = decode::<ObjectMeta>(&template["metadata"])
        .and_then(|meta| Ok((meta, decode::<PodSpec>(&template["spec"])?)));
    let (meta, spec) = match decoded {
        Ok(decoded) => decoded,
        // A workload whose template does not decode is not held up (as upstream); a pod is.
        Err(e) if pod => return Err(ApiError::BadRequest(format!("failed to decode pod: {e}"))),
        Err(_) => return Ok(()),
    };
    let view = PodView {
        meta: &meta,
        spec: &spec,
    };
    let mut results: HashMap<LevelVersion, Vec<Violation>> = HashMap::new();
    let mut violations = |lv: LevelVersion| -> String {
        describe(results.entry(lv).or_insert_with(|| evaluate(lv, &view)))
    };
    let name = write.obj.name();
    if pod {
        let refused = violations(policy.enforce);
        if !refused.is_empty() {
            audit(write, policy.audit, &mut violations);
            return Err(ApiError::Denied {
                group: write.info.group.clone(),
                resource: write.info.plural.clone(),
                name: name.to_string(),
                message: format!("violates PodSecurity \"{}\": {refused}", policy.enforce),
            });
        }
    }
    audit(write, policy.audit, &mut violations);
    let warned = violations(policy.warn);
    if !warned.is_empty() {
        warnings.push(format!(
            "would violate PodSecurity \"{}\": {warned}",
            policy.warn
        ));
    }
    Ok(())
}

/// A part of a template, empty when absent.
fn decode<T: for<'de> Deserialize<'de> + Default>(value: &Value) -> Result<T, serde_json::Error> {
    match value {
        Value::Null => Ok(T::default()),
        value => T::deserialize(value),
    }
}

/// The audit level: there is no audit log, so a violation is an info line of the server's log.
fn audit(
    write: &Write<'_>,
    level: LevelVersion,
    violations: &mut impl FnMut(LevelVersion) -> String,
) {
    let found = violations(level);
    if !found.is_empty() {
        tracing::info!(
            resource = %write.info.plural,
            namespace = write.namespace.name(),
            name = write.obj.name(),
            "audit: would violate PodSecurity \"{level}\": {}",
            bounded(&found)
        );
    }
}

/// A log line's share of a violation list: at most 4 KiB.
fn bounded(text: &str) -> &str {
    const MAX: usize = 4096;
    let mut end = text.len().min(MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Upstream's `isSignificantPodUpdate`: an update matters only when it adds or removes a
/// container, changes an image or adds an ephemeral container.
fn significant_update(new: &Value, old: &Value) -> bool {
    fn images<'a>(pod: &'a Value, list: &str) -> Vec<(Option<&'a str>, Option<&'a str>)> {
        pod["spec"][list]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| (c["name"].as_str(), c["image"].as_str()))
            .collect()
    }
    let by_index = |list| {
        let (a, b) = (images(new, list), images(old, list));
        a.len() != b.len() || a.iter().zip(&b).any(|(x, y)| x.1 != y.1)
    };
    let old_ephemeral: HashMap<_, _> = images(old, "ephemeralContainers").into_iter().collect();
    by_index("containers")
        || by_index("initContainers")
        || images(new, "ephemeralContainers")
            .iter()
            .any(|(name, image)| old_ephemeral.get(name) != Some(image))
}
