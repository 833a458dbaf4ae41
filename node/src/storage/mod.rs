//! PersistentVolumeClaims on the node: a pod's claims resolved to host directories, and the
//! local-path provisioner that creates, binds and reclaims the volumes of its StorageClass.

mod provision;
mod task;

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::PersistentVolume;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wasmkube_sdk::placement::NodeSelectorTerms;

use crate::api::{Api, ApiError};

pub use task::run;

/// The provisioner name of the StorageClasses whose volumes the node agents create.
pub const PROVISIONER: &str = "wasmkube.dev/local-path";

/// The node chosen for a claim that waits for its first consumer (kube-scheduler's annotation;
/// here the agent of the consuming pod's node sets it).
const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

/// Which provisioner is asked for a claim's volume.
const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";

/// Who provisioned a PersistentVolume.
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";

/// The node label local volumes are pinned with.
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("persistentvolumeclaim {0:?} not found")]
    ClaimMissing(String),
    #[error("persistentvolumeclaim {0:?} is being deleted")]
    ClaimDeleting(String),
    #[error("persistentvolumeclaim {0:?} is not bound and names no storage class")]
    NoClass(String),
    #[error("storageclass.storage.k8s.io {0:?} not found")]
    ClassMissing(String),
    #[error(
        "persistentvolumeclaim {claim:?} is not bound: waiting for a volume to be created, \
         either by external provisioner {provisioner:?} or manually created by system administrator"
    )]
    Unbound { claim: String, provisioner: String },
    #[error("persistentvolumeclaim {claim:?} is bound to non-existent persistentvolume {volume:?}")]
    VolumeMissing { claim: String, volume: String },
    #[error("persistentvolume {volume:?}: volume node affinity conflict with node {node:?}")]
    Affinity { volume: String, node: String },
    #[error("persistentvolume {0:?} is neither a local nor a hostPath volume")]
    Unsupported(String),
    #[error("persistentvolume {volume:?}: {source}")]
    Decode {
        volume: String,
        source: serde_json::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The local-path provisioner of one node: its volumes are directories `pvc-<claim uid>` under
/// `dir`, pinned to `node`.
struct LocalPath {
    api: Api,
    node: String,
    dir: PathBuf,
}

impl LocalPath {
    /// Whether this node's provisioner made the volume (and so provisions and reclaims it).
    fn owns(&self, volume: &PersistentVolume) -> bool {
        let ours = volume
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PROVISIONED_BY))
            .is_some_and(|p| p == PROVISIONER);
        let labels = BTreeMap::from([(HOSTNAME_LABEL.to_string(), self.node.clone())]);
        let pinned = volume
            .spec
            .as_ref()
            .and_then(|s| s.node_affinity.as_ref())
            .is_some_and(|a| a.required.is_some());
        ours && pinned && admits(volume, &labels, &self.node)
    }

    /// The directory of a volume this node's provisioner made.
    fn dir_of(&self, volume: &str) -> PathBuf {
        self.dir.join(volume)
    }
}

fn claim_path(namespace: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}")
}

fn volume_path(name: &str) -> String {
    format!("/api/v1/persistentvolumes/{name}")
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn decode(volume: &Value) -> Result<PersistentVolume, StorageError> {
    serde_json::from_value(volume.clone()).map_err(|source| StorageError::Decode {
        volume: text(volume, "/metadata/name").to_string(),
        source,
    })
}

/// Whether the volume's required node affinity admits a node with these labels and name (a
/// volume without one is usable anywhere).
fn admits(volume: &PersistentVolume, labels: &BTreeMap<String, String>, node: &str) -> bool {
    let required = volume
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref());
    required.is_none_or(|r| NodeSelectorTerms::new(r).matches(labels, node))
}

/// The host directory behind a volume: `spec.local.path` or `spec.hostPath.path`.
fn host_dir(volume: &PersistentVolume) -> Option<PathBuf> {
    let spec = volume.spec.as_ref()?;
    let path = match (&spec.local, &spec.host_path) {
        (Some(local), _) => &local.path,
        (None, Some(host)) => &host.path,
        (None, None) => return None,
    };
    Some(PathBuf::from(path))
}

/// The host directory of claim `name` in `namespace` for a pod on `node`, or why the pod has to
/// wait. An unbound claim of a local-path class is handed to `node`'s provisioner.
pub async fn mount_dir(
    api: &Api,
    namespace: &str,
    name: &str,
    node: &str,
) -> Result<PathBuf, StorageError> {
    let claim = api
        .get(&claim_path(namespace, name))
        .await?
        .ok_or_else(|| StorageError::ClaimMissing(name.to_string()))?;
    if claim.pointer("/metadata/deletionTimestamp").is_some() {
        return Err(StorageError::ClaimDeleting(name.to_string()));
    }
    let bound = text(&claim, "/spec/volumeName");
    if bound.is_empty() {
        let provisioner = request_volume(api, &claim, node).await?;
        return Err(StorageError::Unbound {
            claim: name.to_string(),
            provisioner,
        });
    }
    let volume =
        api.get(&volume_path(bound))
            .await?
            .ok_or_else(|| StorageError::VolumeMissing {
                claim: name.to_string(),
                volume: bound.to_string(),
            })?;
    let volume = decode(&volume)?;
    let labels = match api.get(&format!("/api/v1/nodes/{node}")).await? {
        Some(n) => serde_json::from_value(n["metadata"]["labels"].clone()).unwrap_or_default(),
        None => BTreeMap::new(),
    };
    if !admits(&volume, &labels, node) {
        return Err(StorageError::Affinity {
            volume: bound.to_string(),
            node: node.to_string(),
        });
    }
    host_dir(&volume).ok_or_else(|| StorageError::Unsupported(bound.to_string()))
}

/// Selects `node` for an unbound claim of a local-path class that no node was selected for
/// (as kube-scheduler does for a claim waiting for its first consumer), so that this node's
/// provisioner creates the volume. Returns the class's provisioner.
async fn request_volume(api: &Api, claim: &Value, node: &str) -> Result<String, StorageError> {
    let name = text(claim, "/metadata/name");
    let class = text(claim, "/spec/storageClassName");
    if class.is_empty() {
        return Err(StorageError::NoClass(name.to_string()));
    }
    let class = api
        .get(&format!("/apis/storage.k8s.io/v1/storageclasses/{class}"))
        .await?
        .ok_or_else(|| StorageError::ClassMissing(class.to_string()))?;
    let provisioner = text(&class, "/provisioner").to_string();
    let annotations = &claim["metadata"]["annotations"];
    if provisioner == PROVISIONER && annotations[SELECTED_NODE].is_null() {
        // The resourceVersion makes this a compare-and-swap: of two nodes, one selects.
        let patch = json!({"metadata": {
            "resourceVersion": claim["metadata"]["resourceVersion"],
            "annotations": {SELECTED_NODE: node, STORAGE_PROVISIONER: PROVISIONER},
        }});
        let path = claim_path(text(claim, "/metadata/namespace"), name);
        match api.merge_patch(&path, &patch).await {
            Ok(_) => {}
            Err(e) if e.status() == Some(StatusCode::CONFLICT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(provisioner)
}

#[cfg(test)]
mod tests;
