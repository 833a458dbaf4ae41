//! VolumeBinding, the basics: the pod's claims must exist, immediate claims must be bound, and
//! bound volumes' node affinity must match the node. Claims waiting for their first consumer
//! pass (binding them is out of scope). Nothing is cached across cycles.

use wasmkube_sdk::k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, Pod, PodSpec,
};
use wasmkube_sdk::k8s_openapi::api::storage::v1::StorageClass;
use wasmkube_sdk::placement::NodeSelectorTerms;
use wasmkube_sdk::{Context, Error};

use crate::Prepared;
use crate::view::NodeInfo;

pub const UNBOUND_IMMEDIATE_REASON: &str = "pod has unbound immediate PersistentVolumeClaims";
pub const CONFLICT_REASON: &str = "node(s) had volume node affinity conflict";
pub const MISSING_VOLUME_REASON: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";

/// The annotation that predates `storageClassName`.
const BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

/// A bound claim's volume: missing, or its required node affinity (`None`: any node).
enum Bound {
    Missing,
    Affinity(Option<NodeSelectorTerms>),
}

/// The VolumeBinding filter for one pod.
pub struct VolumeFilter(Vec<Bound>);

impl VolumeFilter {
    pub fn new(ctx: &Context<'_>, pod: &Pod, spec: &PodSpec) -> Result<Prepared<Self>, Error> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
        let mut claims = Vec::new();
        for volume in spec.volumes.iter().flatten() {
            let (name, ephemeral) = match (&volume.persistent_volume_claim, &volume.ephemeral) {
                (Some(claim), _) => (claim.claim_name.clone(), false),
                (None, Some(_)) => (format!("{pod_name}-{}", volume.name), true),
                (None, None) => continue,
            };
            let Some(claim) = ctx.get::<PersistentVolumeClaim>(namespace, &name)? else {
                let reason = if ephemeral {
                    format!(
                        "waiting for ephemeral volume controller to create the \
                         persistentvolumeclaim \"{name}\""
                    )
                } else {
                    format!("persistentvolumeclaim \"{name}\" not found")
                };
                return Ok(Prepared::Reject(reason));
            };
            if let Some(reason) = unusable(&claim, &name, ephemeral, pod) {
                return Ok(Prepared::Reject(reason));
            }
            claims.push(claim);
        }
        if claims.is_empty() {
            return Ok(Prepared::Skip);
        }
        let mut bound = Vec::new();
        for claim in &claims {
            let volume = volume_name(claim);
            if !volume.is_empty() {
                bound.push(volume);
            } else if !waits_for_consumer(ctx, claim)? {
                return Ok(Prepared::Reject(UNBOUND_IMMEDIATE_REASON.to_string()));
            }
        }
        let mut volumes = Vec::new();
        for name in bound {
            let Some(pv) = ctx.get::<PersistentVolume>("", name)? else {
                volumes.push(Bound::Missing);
                break;
            };
            let required = pv
                .spec
                .and_then(|s| s.node_affinity)
                .and_then(|a| a.required);
            volumes.push(Bound::Affinity(
                required.as_ref().map(NodeSelectorTerms::new),
            ));
        }
        Ok(Prepared::Run(VolumeFilter(volumes)))
    }

    /// The reason the node fails, if it does (the first bound claim that rules it out).
    pub fn check(&self, node: &NodeInfo) -> Option<&'static str> {
        self.0.iter().find_map(|bound| match bound {
            Bound::Missing => Some(MISSING_VOLUME_REASON),
            Bound::Affinity(Some(required)) if !required.matches(&node.labels, "") => {
                Some(CONFLICT_REASON)
            }
            Bound::Affinity(_) => None,
        })
    }
}

fn volume_name(claim: &PersistentVolumeClaim) -> &str {
    let spec = claim.spec.as_ref();
    spec.and_then(|s| s.volume_name.as_deref())
        .unwrap_or_default()
}

/// Why a claim cannot be used at all (Kubernetes' `podHasPVCs`), if it cannot.
fn unusable(
    claim: &PersistentVolumeClaim,
    name: &str,
    ephemeral: bool,
    pod: &Pod,
) -> Option<String> {
    let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
    if phase == Some("Lost") {
        let volume = volume_name(claim);
        return Some(format!(
            "persistentvolumeclaim \"{name}\" bound to non-existent persistentvolume \"{volume}\""
        ));
    }
    if claim.metadata.deletion_timestamp.is_some() {
        return Some(format!("persistentvolumeclaim \"{name}\" is being deleted"));
    }
    let owned_by_pod = claim
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == pod.metadata.uid.as_ref());
    if ephemeral && !owned_by_pod {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
        return Some(format!(
            "PVC {namespace}/{name} was not created for pod {namespace}/{pod_name} \
             (pod is not owner)"
        ));
    }
    None
}

/// Whether an unbound claim's StorageClass binds on the first consumer (Kubernetes'
/// `IsDelayBindingMode`); no class, or a class that does not exist, binds immediately.
fn waits_for_consumer(ctx: &Context<'_>, claim: &PersistentVolumeClaim) -> Result<bool, Error> {
    let annotated = claim
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(BETA_STORAGE_CLASS));
    let class = annotated
        .or_else(|| claim.spec.as_ref()?.storage_class_name.as_ref())
        .map(String::as_str)
        .unwrap_or_default();
    if class.is_empty() {
        return Ok(false);
    }
    let Some(class) = ctx.get::<StorageClass>("", class)? else {
        return Ok(false);
    };
    Ok(class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"))
}
