//! The `deployment.kubernetes.io/*` annotations: revisions and desired/max replicas.

use std::collections::BTreeMap;

use wasmkube_sdk::k8s_openapi::api::apps::v1::ReplicaSet;
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The rollout revision of a ReplicaSet, and of its Deployment.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// The revisions a reused ReplicaSet had before (after a rollback).
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's `spec.replicas` when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// `spec.replicas + maxSurge` when the ReplicaSet was last scaled.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// Deployment annotations that are not copied to its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    "deprecated.deployment.rollback.to",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
];

/// Kubernetes' limit on the revision history annotation's length.
const REVISION_HISTORY_LIMIT_CHARS: usize = 2000;

fn get<'m>(meta: &'m ObjectMeta, key: &str) -> Option<&'m str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

fn set(meta: &mut ObjectMeta, key: &str, value: String) -> bool {
    let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
    if annotations.get(key) == Some(&value) {
        return false;
    }
    annotations.insert(key.to_string(), value);
    true
}

/// The revision annotation as a number (0 when absent or malformed).
pub fn revision(meta: &ObjectMeta) -> i64 {
    get(meta, REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The highest revision among `rss` (0 when none).
pub fn max_revision(rss: &[ReplicaSet]) -> i64 {
    rss.iter()
        .map(|rs| revision(&rs.metadata))
        .max()
        .unwrap_or(0)
}

/// An integer annotation such as [`DESIRED_REPLICAS`].
pub fn int(meta: &ObjectMeta, key: &str) -> Option<i32> {
    get(meta, key).and_then(|v| v.parse().ok())
}

/// Sets the revision annotation; returns whether it changed.
pub fn set_revision(meta: &mut ObjectMeta, revision: i64) -> bool {
    set(meta, REVISION, revision.to_string())
}

/// Copies the Deployment's own annotations onto the ReplicaSet; returns whether any changed.
fn copy_deployment_annotations(deployment: &ObjectMeta, rs: &mut ObjectMeta) -> bool {
    let mut changed = false;
    for (key, value) in deployment.annotations.iter().flatten() {
        if !NOT_COPIED.contains(&key.as_str()) {
            changed |= set(rs, key, value.clone());
        }
    }
    changed
}

/// Kubernetes' `SetNewReplicaSetAnnotations`: copies the Deployment's annotations, raises the
/// revision to `new_revision` (remembering the old one in the revision history) and, for a
/// ReplicaSet about to be created, sets the replicas annotations. Returns whether anything changed.
pub fn set_new_rs_annotations(
    deployment: &ObjectMeta,
    rs: &mut ObjectMeta,
    new_revision: i64,
    created: Option<(i32, i32)>,
) -> bool {
    let mut changed = copy_deployment_annotations(deployment, rs);
    let old = get(rs, REVISION).map(str::to_string);
    let old_revision = match old.as_deref().map(str::parse::<i64>) {
        None => 0,
        Some(Ok(r)) => r,
        Some(Err(_)) => return false,
    };
    if old_revision < new_revision {
        changed |= set_revision(rs, new_revision);
        if let Some(old) = old {
            let history = get(rs, REVISION_HISTORY).unwrap_or_default();
            let mut revisions: Vec<&str> = history.split(',').filter(|r| !r.is_empty()).collect();
            revisions.push(&old);
            while revisions.join(",").len() > REVISION_HISTORY_LIMIT_CHARS && revisions.len() > 1 {
                revisions.remove(0);
            }
            let joined = revisions.join(",");
            changed |= set(rs, REVISION_HISTORY, joined);
        }
    }
    if let Some((desired, max)) = created {
        changed |= set_replicas(rs, desired, max);
    }
    changed
}

/// Whether the desired/max replicas annotations differ from `desired` and `max`.
pub fn replicas_need_update(rs: &ObjectMeta, desired: i32, max: i32) -> bool {
    int(rs, DESIRED_REPLICAS) != Some(desired) || int(rs, MAX_REPLICAS) != Some(max)
}

/// Sets the desired/max replicas annotations; returns whether they changed.
pub fn set_replicas(rs: &mut ObjectMeta, desired: i32, max: i32) -> bool {
    let a = set(rs, DESIRED_REPLICAS, desired.to_string());
    let b = set(rs, MAX_REPLICAS, max.to_string());
    a || b
}
