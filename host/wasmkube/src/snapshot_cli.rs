//! `wasmkube snapshot save|restore`: a backup of a running cluster's store taken through its API,
//! and that backup written into a fresh data directory.

use std::path::PathBuf;

use anyhow::{Context, bail};
use wasmkube_apiserver::tls::{create_private_dir, write_private};
use wasmkube_store::embedded::EmbeddedStore;
use wasmkube_store::snapshot::Snapshot;

use crate::client::{Api, Cluster};

#[derive(clap::Subcommand)]
pub enum SnapshotCommand {
    /// Saves every object of a running cluster to FILE: one consistent revision, taken while
    /// the cluster serves (readable by its owner only: it holds every Secret).
    Save {
        file: PathBuf,
        #[command(flatten)]
        cluster: Cluster,
    },
    /// Writes the snapshot in FILE into the store of a new data directory (offline); then start
    /// `wasmkube server` or `up` on it.
    Restore {
        file: PathBuf,
        /// The data directory to restore into; it must not hold a store yet.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

pub async fn run(command: SnapshotCommand) -> anyhow::Result<()> {
    match command {
        SnapshotCommand::Save { file, cluster } => {
            let api = Api::connect(&cluster)?;
            let response = api
                .client
                .get(format!("{}/wasmkube/snapshot", api.server))
                .send()
                .await?;
            let code = response.status();
            let bytes = response.bytes().await?;
            if !code.is_success() {
                bail!(
                    "taking the snapshot: {code} {}",
                    String::from_utf8_lossy(&bytes)
                );
            }
            let snapshot = Snapshot::decode(&bytes).context("the server's snapshot")?;
            write_private(&file, &bytes).with_context(|| format!("writing {}", file.display()))?;
            println!(
                "saved revision {} ({} keys, {} bytes) to {}",
                snapshot.revision,
                snapshot.kvs.len(),
                bytes.len(),
                file.display()
            );
        }
        SnapshotCommand::Restore { file, data_dir } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let snapshot = Snapshot::decode(&bytes).with_context(|| file.display().to_string())?;
            create_private_dir(&data_dir)
                .with_context(|| format!("creating {}", data_dir.display()))?;
            let path = data_dir.join("store.redb");
            EmbeddedStore::restore(&path, &snapshot)?;
            println!(
                "restored revision {} ({} keys) into {}",
                snapshot.revision,
                snapshot.kvs.len(),
                path.display()
            );
            if !data_dir.join("pki").exists() {
                println!(
                    "copy pki/ from the old data directory into {} before the first start: it holds the cluster's CA, token and keys, which node agents and kubeconfigs trust",
                    data_dir.display()
                );
            }
        }
    }
    Ok(())
}
