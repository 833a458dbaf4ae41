//! ReplicaSet helpers: counts, orderings, template comparison and the Deployment's RS template.

use std::cmp::Ordering;

use wasmkube_sdk::hash::POD_TEMPLATE_HASH_LABEL;
use wasmkube_sdk::k8s_openapi::api::apps::v1::ReplicaSet;
use wasmkube_sdk::k8s_openapi::api::core::v1::PodTemplateSpec;
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::annotations;

/// `spec.replicas` (defaulted to 1, as the apiserver does).
pub fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// `status.replicas`: the pods the ReplicaSet controller counts.
pub fn actual(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map_or(0, |s| s.replicas)
}

/// `status.readyReplicas`.
pub fn ready(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

/// `status.availableReplicas`.
pub fn available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

/// The ReplicaSet's name.
pub fn name(rs: &ReplicaSet) -> &str {
    rs.metadata.name.as_deref().unwrap_or_default()
}

/// Sums `count` over ReplicaSets.
pub fn sum<'a>(
    rss: impl IntoIterator<Item = &'a ReplicaSet>,
    count: fn(&ReplicaSet) -> i32,
) -> i32 {
    rss.into_iter().map(count).sum()
}

/// Kubernetes' `ReplicaSetsByCreationTimestamp`: oldest first, then by name.
pub fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let created = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
    created(a)
        .cmp(&created(b))
        .then_with(|| name(a).cmp(name(b)))
}

/// Kubernetes' `ReplicaSetsBySizeOlder`: largest first, then oldest first.
pub fn by_size_older(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    replicas(b)
        .cmp(&replicas(a))
        .then_with(|| by_creation(a, b))
}

/// Kubernetes' `ReplicaSetsBySizeNewer`: largest first, then newest first.
pub fn by_size_newer(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    replicas(b)
        .cmp(&replicas(a))
        .then_with(|| by_creation(b, a))
}

/// Kubernetes' `ReplicaSetsByRevision`: lowest revision first, then oldest first.
pub fn by_revision(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    annotations::revision(&a.metadata)
        .cmp(&annotations::revision(&b.metadata))
        .then_with(|| by_creation(a, b))
}

/// The template without its `pod-template-hash` label (and no empty label map).
fn without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut template = template.clone();
    if let Some(meta) = template.metadata.as_mut() {
        if let Some(labels) = meta.labels.as_mut() {
            labels.remove(POD_TEMPLATE_HASH_LABEL);
        }
        if meta.labels.as_ref().is_some_and(|l| l.is_empty()) {
            meta.labels = None;
        }
    }
    template
}

/// Kubernetes' `EqualIgnoreHash`: whether two templates differ only in `pod-template-hash`.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash(a) == without_hash(b)
}

/// The ReplicaSet's pod template.
pub fn template(rs: &ReplicaSet) -> Option<&PodTemplateSpec> {
    rs.spec.as_ref().and_then(|s| s.template.as_ref())
}

/// `template` with the `pod-template-hash` label set to `hash`.
pub fn template_with_hash(template: &PodTemplateSpec, hash: &str) -> PodTemplateSpec {
    let mut template = template.clone();
    let meta = template.metadata.get_or_insert_with(Default::default);
    meta.labels
        .get_or_insert_with(Default::default)
        .insert(POD_TEMPLATE_HASH_LABEL.to_string(), hash.to_string());
    template
}

/// `selector` with `pod-template-hash: <hash>` added to its `matchLabels`.
pub fn selector_with_hash(selector: &LabelSelector, hash: &str) -> LabelSelector {
    let mut selector = selector.clone();
    selector
        .match_labels
        .get_or_insert_with(Default::default)
        .insert(POD_TEMPLATE_HASH_LABEL.to_string(), hash.to_string());
    selector
}
