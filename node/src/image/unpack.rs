//! Unpacking an image's layers into overlayfs snapshots named by their chain IDs.

use containerd_client::services::v1::ApplyRequest;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::types;
use tonic::Code;
use tracing::{debug, warn};

use super::ImageError;
use super::content::Lease;
use super::oci::{self, Descriptor};
use crate::containerd::{Containerd, ContainerdError, SNAPSHOTTER};

/// Makes sure the snapshot of every layer exists, unpacking the missing ones in order, and
/// returns the top chain ID: the parent of the containers' root filesystems.
pub async fn unpack(
    lease: &Lease<'_>,
    manifest: &str,
    layers: &[Descriptor],
    diff_ids: &[String],
) -> Result<String, ImageError> {
    let chain = top_chain_id(manifest, layers, diff_ids)?;
    let containerd = lease.containerd();
    if exists(containerd, &chain).await? {
        return Ok(chain);
    }
    let chain_ids = oci::chain_ids(diff_ids);
    let mut parent = String::new();
    for ((layer, diff_id), chain_id) in layers.iter().zip(diff_ids).zip(&chain_ids) {
        if !exists(containerd, chain_id).await? {
            apply(lease, layer, diff_id, chain_id, &parent).await?;
        }
        parent.clone_from(chain_id);
    }
    Ok(chain)
}

/// The chain ID of the whole stack, once the manifest and its config are seen to agree.
pub fn top_chain_id(
    manifest: &str,
    layers: &[Descriptor],
    diff_ids: &[String],
) -> Result<String, ImageError> {
    if layers.len() != diff_ids.len() {
        return Err(ImageError::LayerCount {
            manifest: manifest.to_string(),
            layers: layers.len(),
            diff_ids: diff_ids.len(),
        });
    }
    oci::chain_ids(diff_ids)
        .pop()
        .ok_or_else(|| ImageError::NoLayers {
            manifest: manifest.to_string(),
        })
}

/// Whether the committed snapshot `chain_id` exists.
pub async fn exists(containerd: &Containerd, chain_id: &str) -> Result<bool, ImageError> {
    let request = StatSnapshotRequest {
        snapshotter: SNAPSHOTTER.to_string(),
        key: chain_id.to_string(),
    };
    match containerd
        .snapshots()
        .stat(containerd.request(request))
        .await
    {
        Ok(_) => Ok(true),
        Err(status) if status.code() == Code::NotFound => Ok(false),
        Err(status) => Err(ContainerdError::call("snapshots stat")(status).into()),
    }
}

/// Unpacks one layer on top of `parent` into the snapshot `chain_id`, the way containerd's own
/// unpacker does: prepare an active snapshot, apply the layer's diff into it, commit it.
async fn apply(
    lease: &Lease<'_>,
    layer: &Descriptor,
    diff_id: &str,
    chain_id: &str,
    parent: &str,
) -> Result<(), ImageError> {
    let containerd = lease.containerd();
    let key = format!(
        "wasmkube-extract-{} {chain_id}",
        uuid::Uuid::new_v4().simple()
    );
    let prepare = PrepareSnapshotRequest {
        snapshotter: SNAPSHOTTER.to_string(),
        key: key.clone(),
        parent: parent.to_string(),
        labels: Default::default(),
    };
    let mounts = match containerd.snapshots().prepare(lease.request(prepare)).await {
        Ok(reply) => reply.into_inner().mounts,
        Err(status) => return Err(ContainerdError::call("snapshots prepare")(status).into()),
    };
    debug!(layer = %layer.digest, %chain_id, "unpacking a layer");
    let result = apply_and_commit(lease, layer, diff_id, chain_id, &key, mounts).await;
    if !matches!(result, Ok(true)) {
        let remove = RemoveSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_string(),
            key: key.clone(),
        };
        if let Err(status) = containerd
            .snapshots()
            .remove(containerd.request(remove))
            .await
        {
            warn!(%key, %status, "could not remove a failed unpack's snapshot");
        }
    }
    result.map(|_| ())
}

/// Whether the snapshot was committed as `chain_id`: false when someone else unpacked the same
/// layer meanwhile, theirs being as good as ours (which the caller then removes).
async fn apply_and_commit(
    lease: &Lease<'_>,
    layer: &Descriptor,
    diff_id: &str,
    chain_id: &str,
    key: &str,
    mounts: Vec<types::Mount>,
) -> Result<bool, ImageError> {
    let containerd = lease.containerd();
    let request = ApplyRequest {
        diff: Some(types::Descriptor {
            media_type: layer.media_type.clone(),
            digest: layer.digest.clone(),
            size: layer.size as i64,
            annotations: Default::default(),
        }),
        mounts,
        payloads: Default::default(),
        sync_fs: false,
    };
    let applied = containerd
        .diff()
        .apply(lease.request(request))
        .await
        .map_err(ContainerdError::call("diff apply"))?
        .into_inner()
        .applied
        .map(|d| d.digest)
        .unwrap_or_default();
    if applied != diff_id {
        return Err(ImageError::DiffId {
            layer: layer.digest.clone(),
            expected: diff_id.to_string(),
            applied,
        });
    }
    let commit = CommitSnapshotRequest {
        snapshotter: SNAPSHOTTER.to_string(),
        name: chain_id.to_string(),
        key: key.to_string(),
        labels: Default::default(),
    };
    match containerd.snapshots().commit(lease.request(commit)).await {
        Ok(_) => Ok(true),
        Err(status) if status.code() == Code::AlreadyExists => Ok(false),
        Err(status) => Err(ContainerdError::call("snapshots commit")(status).into()),
    }
}
