//! Namespace writes: their Pod Security labels validated, and a stricter `enforce` level tried on the pods already there (upstream's `ValidateNamespace`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use wasmkube_model::meta::ResourceExt;
use wasmkube_model::resource::ResourceInfo;

use super::check::{PodView, evaluate};
use super::policy::{Level, LevelVersion, Policy};
use super::{labels, namespace_policy};
use crate::error::ApiError;

/// At most this many existing pods are tried against a new `enforce` level, for at most
/// [`POD_CHECK_TIME`] (upstream's `defaultNamespaceMaxPodsToCheck` and `…PodCheckTimeout`).
pub const MAX_PODS_TO_CHECK: usize = 3000;
const POD_CHECK_TIME: Duration = Duration::from_secs(1);

/// The labels of a new namespace must be valid, and so must those of an updated one unless they
/// were already invalid in the same way (422 naming `metadata.labels[KEY]`).
pub fn admit_namespace(
    info: &ResourceInfo,
    new: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let errors =
        |ns: &Value| Policy::from_labels(&labels(ns), Policy::uniform(Level::Privileged)).1;
    let new_errors = errors(new);
    if new_errors.is_empty() || old.is_some_and(|old| errors(old) == new_errors) {
        return Ok(());
    }
    Err(ApiError::invalid(info, new.name(), new_errors))
}

/// The `enforce` level the pods already in an updated namespace must be tried against: `None`
/// unless it became stricter (a stricter level, or another version of a non-privileged one).
pub fn stricter_enforce(default: Level, new: &Value, old: &Value) -> Option<LevelVersion> {
    let (new, _) = namespace_policy(default, new);
    let (old, _) = namespace_policy(default, old);
    let (new, old) = (new.enforce, old.enforce);
    let relaxed = new.version == old.version && new.level <= old.level;
    (new != old && new.level != Level::Privileged && !relaxed).then_some(new)
}

/// Upstream's `EvaluatePodsInNamespace`: warnings naming the pods of `namespace` that violate
/// `enforce`, one line per distinct set of reasons. One pod per controller is tried before the
/// others.
pub fn existing_pods(namespace: &str, enforce: LevelVersion, pods: &[Value]) -> Vec<String> {
    let deadline = Instant::now() + POD_CHECK_TIME;
    let mut seen = BTreeSet::new();
    let (first, rest): (Vec<&Value>, Vec<&Value>) = pods
        .iter()
        .partition(|pod| controller_uid(pod).is_none_or(|uid| seen.insert(uid)));
    let total = pods.len();
    let mut checked = 0;
    // Reasons → (the first pod name, how many pods).
    let mut by_reasons: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for pod in first.into_iter().chain(rest).take(MAX_PODS_TO_CHECK) {
        checked += 1;
        let decoded = k8s_openapi::api::core::v1::Pod::deserialize(pod);
        let Ok(k8s_openapi::api::core::v1::Pod {
            metadata,
            spec: Some(spec),
            ..
        }) = decoded
        else {
            continue;
        };
        let view = PodView {
            meta: &metadata,
            spec: &spec,
        };
        let violations = evaluate(enforce, &view);
        if !violations.is_empty() {
            let reasons: Vec<&str> = violations.iter().map(|v| v.reason).collect();
            let name = pod.name().to_string();
            let entry = by_reasons
                .entry(reasons.join(", "))
                .or_insert_with(|| (name.clone(), 0));
            if name < entry.0 {
                entry.0 = name;
            }
            entry.1 += 1;
        }
        if Instant::now() > deadline {
            break;
        }
    }
    let mut warnings = Vec::new();
    if checked < total {
        warnings.push(format!(
            "new PodSecurity enforce level only checked against the first {checked} of {total} existing pods"
        ));
    }
    if !by_reasons.is_empty() {
        warnings.push(format!(
            "existing pods in namespace {namespace:?} violate the new PodSecurity enforce level \"{enforce}\""
        ));
    }
    let mut pods: Vec<String> = by_reasons
        .into_iter()
        .map(|(reasons, (name, count))| match count {
            1 => format!("{name}: {reasons}"),
            2 => format!("{name} (and 1 other pod): {reasons}"),
            n => format!("{name} (and {} other pods): {reasons}", n - 1),
        })
        .collect();
    pods.sort();
    warnings.append(&mut pods);
    warnings
}

/// The uid of the pod's controller, if it has one.
fn controller_uid(pod: &Value) -> Option<&str> {
    pod.owner_references()
        .iter()
        .find(|r| r["controller"] == Value::Bool(true))
        .and_then(|r| r["uid"].as_str())
}
