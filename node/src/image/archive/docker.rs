//! Planning a `docker save` archive's import: its images become OCI manifests.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;
use tracing::debug;

use super::{Archive, ArchiveError, Blob, Plan, Source};
use crate::image::content::manifest_labels;
use crate::image::oci::{self, Descriptor, Manifest};
use crate::image::reference::normalize;

impl Archive {
    pub(super) fn plan_docker(&self) -> Result<Plan, ArchiveError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            config: String,
            #[serde(default)]
            repo_tags: Option<Vec<String>>,
            #[serde(default)]
            layers: Vec<String>,
        }

        let entries: Vec<Entry> = self.json("manifest.json", &self.read("manifest.json")?)?;
        let mut plan = Plan::default();
        let mut seen = HashSet::new();
        let mut push = |plan: &mut Plan, blob: Blob| {
            if seen.insert(blob.descriptor.digest.clone()) {
                plan.blobs.push(blob);
            }
        };
        for entry in entries {
            let tags = entry.repo_tags.unwrap_or_default();
            if tags.is_empty() {
                debug!(config = %entry.config, "skipping an untagged image in the archive");
                continue;
            }
            let mut layers = Vec::with_capacity(entry.layers.len());
            for layer in &entry.layers {
                let (offset, size) = self.require(layer)?;
                let (digest, head) = self.hash(offset, size)?;
                let media_type = match head.as_slice() {
                    [0x1f, 0x8b, ..] => oci::LAYER_GZIP,
                    [0x28, 0xb5, 0x2f, 0xfd, ..] => oci::LAYER_ZSTD,
                    _ => oci::LAYER,
                };
                let descriptor = Descriptor::new(media_type, digest, size);
                layers.push(descriptor.clone());
                push(
                    &mut plan,
                    Blob {
                        descriptor,
                        labels: HashMap::new(),
                        source: Source::Entry { offset },
                    },
                );
            }
            let (offset, size) = self.require(&entry.config)?;
            let (digest, _) = self.hash(offset, size)?;
            let config = Descriptor::new(oci::CONFIG, digest, size);
            push(
                &mut plan,
                Blob {
                    descriptor: config.clone(),
                    labels: HashMap::new(),
                    source: Source::Entry { offset },
                },
            );
            let manifest = Manifest {
                schema_version: 2,
                media_type: oci::MANIFEST.to_string(),
                config,
                layers,
            };
            let labels = manifest_labels(&manifest);
            let bytes = serde_json::to_vec(&manifest).map_err(|source| ArchiveError::Json {
                path: self.path.clone(),
                entry: "manifest.json".to_string(),
                source,
            })?;
            let manifest = Descriptor::new(oci::MANIFEST, oci::sha256(&bytes), bytes.len() as u64);
            for tag in &tags {
                plan.images.push((normalize(tag), manifest.clone()));
            }
            push(
                &mut plan,
                Blob {
                    descriptor: manifest,
                    labels,
                    source: Source::Bytes(bytes),
                },
            );
        }
        Ok(plan)
    }
}
