//! The kernel side of the proxy: nft batches applied in one transaction (`nft -f -`) and the
//! table read back (`nft -j list table`), behind a trait so the proxy is tested without root.

use std::process::Stdio;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("running nft: {0}")]
    Spawn(std::io::Error),
    #[error("nft refused the batch: {0}")]
    Refused(String),
    #[error("nft listed the table as something else than JSON: {0}")]
    Listing(serde_json::Error),
}

/// Where nftables batches go.
#[async_trait::async_trait]
pub trait Nft: Send + Sync {
    /// Applies `batch` (nft commands, one a line) as one transaction: all of it or nothing.
    async fn apply(&self, batch: &str) -> Result<(), NftError>;
    /// The `nft -j list table ip NAME` answer, or `None` when there is no such table.
    async fn list(&self, table: &str) -> Result<Option<Value>, NftError>;
}

/// The `nft` program of the nftables package.
pub struct NftCommand;

#[async_trait::async_trait]
impl Nft for NftCommand {
    async fn apply(&self, batch: &str) -> Result<(), NftError> {
        let mut child = Command::new("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(NftError::Spawn)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(batch.as_bytes())
                .await
                .map_err(NftError::Spawn)?;
        }
        let output = child.wait_with_output().await.map_err(NftError::Spawn)?;
        if !output.status.success() {
            return Err(NftError::Refused(
                String::from_utf8_lossy(&output.stderr).trim().to_string(),
            ));
        }
        Ok(())
    }

    async fn list(&self, table: &str) -> Result<Option<Value>, NftError> {
        let output = Command::new("nft")
            .args(["-j", "list", "table", "ip", table])
            .output()
            .await
            .map_err(NftError::Spawn)?;
        if !output.status.success() {
            let message = String::from_utf8_lossy(&output.stderr);
            if message.contains("No such file or directory") {
                return Ok(None);
            }
            return Err(NftError::Refused(message.trim().to_string()));
        }
        serde_json::from_slice(&output.stdout)
            .map(Some)
            .map_err(NftError::Listing)
    }
}

/// A fake kernel that records every batch it takes, lists a fixed table and refuses batches
/// with a given text in them.
#[cfg(test)]
#[derive(Default)]
pub struct FakeNft {
    pub batches: std::sync::Mutex<Vec<String>>,
    pub listing: std::sync::Mutex<Option<Value>>,
    pub refuse: std::sync::Mutex<Option<String>>,
}

#[cfg(test)]
#[async_trait::async_trait]
impl Nft for FakeNft {
    async fn apply(&self, batch: &str) -> Result<(), NftError> {
        let refuse = self.refuse.lock().expect("not poisoned").clone();
        if refuse.is_some_and(|text| batch.contains(&text)) {
            return Err(NftError::Refused("refused by the fake".into()));
        }
        self.batches
            .lock()
            .expect("not poisoned")
            .push(batch.to_string());
        Ok(())
    }

    async fn list(&self, _table: &str) -> Result<Option<Value>, NftError> {
        Ok(self.listing.lock().expect("not poisoned").clone())
    }
}
