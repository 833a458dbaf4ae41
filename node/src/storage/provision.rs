//! Provisioning: a claim this node was selected for gets a directory, a PersistentVolume pinned
//! to the node and bound to the claim, and both are marked Bound.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{
    HOSTNAME_LABEL, LocalPath, PROVISIONED_BY, PROVISIONER, SELECTED_NODE, StorageError,
    claim_path, decode, text, volume_path,
};

/// The PersistentVolume `pvc-<claim uid>` for `claim` of `class` on `node`, a directory under
/// `dir`: the claim's request and access modes, the class's reclaim policy, bound to the claim
/// (`claimRef` with its uid) and pinned to the node.
pub(super) fn volume(claim: &Value, class: &Value, node: &str, dir: &Path) -> Value {
    let name = format!("pvc-{}", text(claim, "/metadata/uid"));
    let policy = match text(class, "/reclaimPolicy") {
        "" => "Delete",
        policy => policy,
    };
    let mode = match text(claim, "/spec/volumeMode") {
        "" => "Filesystem",
        mode => mode,
    };
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": name,
            "annotations": {PROVISIONED_BY: PROVISIONER},
        },
        "spec": {
            "capacity": {"storage": claim["spec"]["resources"]["requests"]["storage"]},
            "accessModes": claim["spec"]["accessModes"],
            "volumeMode": mode,
            "persistentVolumeReclaimPolicy": policy,
            "storageClassName": text(class, "/metadata/name"),
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": text(claim, "/metadata/namespace"),
                "name": text(claim, "/metadata/name"),
                "uid": text(claim, "/metadata/uid"),
                "resourceVersion": text(claim, "/metadata/resourceVersion"),
            },
            "local": {"path": dir.join(&name).display().to_string()},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": HOSTNAME_LABEL, "operator": "In", "values": [node]},
            ]}]}},
        },
        "status": {"phase": "Bound"},
    })
}

/// Whether this node's provisioner should create the claim's volume now: unbound, not being
/// deleted, and this node selected.
pub(super) fn wanted(claim: &Value, node: &str) -> bool {
    text(claim, "/spec/volumeName").is_empty()
        && claim.pointer("/metadata/deletionTimestamp").is_none()
        && claim["metadata"]["annotations"][SELECTED_NODE].as_str() == Some(node)
}

impl LocalPath {
    /// Creates and binds the volume of a claim this node was selected for, when its class is
    /// provisioned here.
    pub(super) async fn provision(&self, claim: &Value) -> Result<(), StorageError> {
        let class = text(claim, "/spec/storageClassName");
        let Some(class) = self
            .api
            .get(&format!("/apis/storage.k8s.io/v1/storageclasses/{class}"))
            .await?
        else {
            return Ok(());
        };
        if text(&class, "/provisioner") != PROVISIONER {
            return Ok(());
        }
        let volume = volume(claim, &class, &self.node, &self.dir);
        let name = text(&volume, "/metadata/name").to_string();
        let dir = self.dir_of(&name);
        let io = |source| StorageError::Io {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        // Any user of any container may write, as with k3s' local-path-provisioner.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).map_err(io)?;
        match self.api.create("/api/v1/persistentvolumes", &volume).await {
            Ok(_) => {}
            Err(e) if e.status() == Some(StatusCode::CONFLICT) => {
                // Made by an earlier attempt of ours, or by another node that won the race.
                let existing = self.api.get(&volume_path(&name)).await?;
                if !existing.is_some_and(|v| decode(&v).is_ok_and(|v| self.owns(&v))) {
                    let _ = std::fs::remove_dir(&dir);
                    return Ok(());
                }
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(volume = %name, claim = %text(claim, "/metadata/name"), "provisioned a local-path volume");
        self.bind(claim.clone(), &volume).await
    }

    /// Points the claim at `volume` (re-reading it when the write loses a race) and marks it
    /// Bound with the volume's capacity and access modes.
    async fn bind(&self, mut claim: Value, volume: &Value) -> Result<(), StorageError> {
        let name = text(volume, "/metadata/name");
        let namespace = text(&claim, "/metadata/namespace").to_string();
        let claim_name = text(&claim, "/metadata/name").to_string();
        let path = claim_path(&namespace, &claim_name);
        loop {
            match text(&claim, "/spec/volumeName") {
                "" => {}
                bound if bound == name => break,
                // Bound to another volume meanwhile: ours is not needed.
                _ => return self.reclaim(volume).await,
            }
            claim["spec"]["volumeName"] = json!(name);
            let annotations = &mut claim["metadata"]["annotations"];
            annotations["pv.kubernetes.io/bind-completed"] = json!("yes");
            annotations["pv.kubernetes.io/bound-by-controller"] = json!("yes");
            match self.api.replace(&path, &claim).await {
                Ok(_) => break,
                Err(e) if e.status() == Some(StatusCode::CONFLICT) => {
                    claim = self
                        .api
                        .get(&path)
                        .await?
                        .ok_or(StorageError::ClaimMissing(claim_name.clone()))?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let status = json!({"status": {
            "phase": "Bound",
            "capacity": volume["spec"]["capacity"],
            "accessModes": volume["spec"]["accessModes"],
        }});
        self.api
            .merge_patch(&format!("{path}/status"), &status)
            .await?;
        Ok(())
    }
}
