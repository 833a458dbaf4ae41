//! Daemon pods: building one for a node, and finding the node a pod is on.

use std::collections::BTreeMap;

use wasmkube_sdk::Error;
use wasmkube_sdk::k8s_openapi::api::apps::v1::DaemonSet;
use wasmkube_sdk::k8s_openapi::api::core::v1::{
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
};
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use wasmkube_sdk::owner::controller_ref;
use wasmkube_sdk::revision::REVISION_HASH_LABEL;

use crate::nodes::daemon_tolerations;

/// The node a daemon pod is bound to (empty when none).
pub fn node_of(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default()
}

/// The hash of the template a daemon pod was made from.
pub fn revision_hash(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(REVISION_HASH_LABEL)
        .map(String::as_str)
}

/// Whether the pod was made from the template whose hash is `hash`.
pub fn is_updated(pod: &Pod, hash: &str) -> bool {
    revision_hash(pod) == Some(hash)
}

/// A pod for `node` from the DaemonSet's template: `generateName: <ds>-`, a controller
/// reference, the `controller-revision-hash` label and the daemon tolerations.
///
/// Like Kubernetes since 1.12, the required node affinity is replaced by one term selecting
/// `metadata.name In [node]`, which is what a scheduler would bind by. wasmkube has no scheduler
/// yet, so `spec.nodeName` is set as well: the pod is bound at creation, as before 1.12.
pub fn pod_for_node(ds: &DaemonSet, node: &str, hash: &str) -> Result<Pod, Error> {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut labels: BTreeMap<String, String> = meta.labels.unwrap_or_default();
    labels.insert(REVISION_HASH_LABEL.to_string(), hash.to_string());
    let mut spec = template.spec.unwrap_or_default();
    spec.tolerations = Some(daemon_tolerations(&spec));
    let term = NodeSelectorTerm {
        match_expressions: None,
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".to_string(),
            operator: "In".to_string(),
            values: Some(vec![node.to_string()]),
        }]),
    };
    let mut affinity = spec.affinity.take().unwrap_or_default();
    let mut node_affinity = affinity.node_affinity.take().unwrap_or_default();
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![term],
    });
    affinity.node_affinity = Some(node_affinity);
    spec.affinity = Some(affinity);
    spec.node_name = Some(node.to_string());
    let name = ds.metadata.name.as_deref().unwrap_or_default();
    Ok(Pod {
        metadata: ObjectMeta {
            namespace: ds.metadata.namespace.clone(),
            generate_name: Some(format!("{name}-")),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref(ds)?]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    })
}
