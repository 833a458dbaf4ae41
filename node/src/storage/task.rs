//! The provisioner's loop: PersistentVolumeClaims watched (and everything listed again every
//! minute), volumes provisioned for claims this node was selected for, and the volumes of
//! deleted claims released, then deleted with their directory under the Delete policy.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use super::{LocalPath, StorageError, decode, provision, text, volume_path};
use crate::api::Api;

/// How often claims and volumes are listed again, to catch what a watch missed.
const RESYNC: Duration = Duration::from_secs(60);

const CLAIMS: &str = "/api/v1/persistentvolumeclaims";

/// Runs the local-path provisioner of `node`, with its volumes under `dir`, until the process
/// ends.
pub async fn run(api: Api, node: String, dir: PathBuf) {
    let local = LocalPath { api, node, dir };
    loop {
        if let Err(e) = local.sync().await {
            tracing::warn!(error = %e, "watching persistentvolumeclaims");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

impl LocalPath {
    /// Lists claims and volumes and brings them in line, then follows claim events for a
    /// while.
    async fn sync(&self) -> Result<(), StorageError> {
        let (claims, version) = self.api.list(CLAIMS).await?;
        for claim in &claims {
            self.claim_changed(claim).await;
        }
        self.release_orphans(&claims).await?;
        let mut watch = self.api.watch(CLAIMS, &version).await?;
        let resync = tokio::time::sleep(RESYNC);
        tokio::pin!(resync);
        loop {
            let event = tokio::select! {
                event = watch.next() => event,
                _ = &mut resync => return Ok(()),
            };
            let Some(event) = event else { return Ok(()) };
            let event = event?;
            match event.kind.as_str() {
                "ADDED" | "MODIFIED" => self.claim_changed(&event.object).await,
                "DELETED" => self.claim_deleted(&event.object).await,
                "ERROR" => return Ok(()),
                _ => {}
            }
        }
    }

    async fn claim_changed(&self, claim: &Value) {
        if provision::wanted(claim, &self.node)
            && let Err(e) = self.provision(claim).await
        {
            tracing::warn!(claim = %text(claim, "/metadata/name"), error = %e, "provisioning a volume");
        }
    }

    /// Releases the volume of a deleted claim: the one it was bound to, or the one being made
    /// for it.
    async fn claim_deleted(&self, claim: &Value) {
        let uid = text(claim, "/metadata/uid");
        let name = match text(claim, "/spec/volumeName") {
            "" => format!("pvc-{uid}"),
            bound => bound.to_string(),
        };
        let released = async {
            match self.api.get(&volume_path(&name)).await? {
                Some(volume) if text(&volume, "/spec/claimRef/uid") == uid => {
                    self.reclaim(&volume).await
                }
                _ => Ok(()),
            }
        };
        if let Err(e) = released.await {
            tracing::warn!(volume = %name, error = %e, "releasing a volume");
        }
    }

    /// Releases this node's volumes whose claim is gone (no claim with the uid of their
    /// `claimRef`) or bound to another volume.
    async fn release_orphans(&self, claims: &[Value]) -> Result<(), StorageError> {
        let bound: HashMap<&str, &str> = claims
            .iter()
            .map(|c| (text(c, "/metadata/uid"), text(c, "/spec/volumeName")))
            .collect();
        let (volumes, _) = self.api.list("/api/v1/persistentvolumes").await?;
        for volume in &volumes {
            let name = text(volume, "/metadata/name");
            let orphan = match bound.get(text(volume, "/spec/claimRef/uid")) {
                None => true,
                Some(bound) => !bound.is_empty() && *bound != name,
            };
            let retained = text(volume, "/status/phase") == "Released";
            if orphan
                && !retained
                && let Err(e) = self.reclaim(volume).await
            {
                tracing::warn!(volume = %name, error = %e, "releasing a volume");
            }
        }
        Ok(())
    }

    /// Marks one of this node's volumes Released and, under the Delete policy, removes its
    /// directory and deletes it; volumes of other nodes or provisioners are left alone.
    pub(super) async fn reclaim(&self, volume: &Value) -> Result<(), StorageError> {
        if !self.owns(&decode(volume)?) {
            return Ok(());
        }
        let name = text(volume, "/metadata/name");
        let path = volume_path(name);
        if text(volume, "/status/phase") != "Released" {
            let status = json!({"status": {"phase": "Released"}});
            self.api
                .merge_patch(&format!("{path}/status"), &status)
                .await?;
        }
        if text(volume, "/spec/persistentVolumeReclaimPolicy") != "Delete" {
            tracing::info!(volume = %name, "released a volume; its reclaim policy keeps it");
            return Ok(());
        }
        let dir = self.dir_of(name);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(StorageError::Io { path: dir, source }),
        }
        self.api.delete(&path, 0).await?;
        tracing::info!(volume = %name, "deleted a released local-path volume and its directory");
        Ok(())
    }
}
