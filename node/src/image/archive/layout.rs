//! Planning an OCI image layout's import: from index.json down to every blob an image needs.

use std::collections::HashMap;

use tracing::debug;

use super::{Archive, ArchiveError, Blob, Plan, Source, stripped};
use crate::image::content::{index_labels, manifest_labels};
use crate::image::oci::{self, Descriptor, Index, Kind, Manifest};
use crate::image::reference::normalize;

impl Archive {
    pub(super) fn plan_layout(&self) -> Result<Plan, ArchiveError> {
        let index: Index = self.json("index.json", &self.read("index.json")?)?;
        let mut walk = Walk {
            archive: self,
            plan: Plan::default(),
            seen: HashMap::new(),
        };
        for descriptor in &index.manifests {
            let name = descriptor
                .annotations
                .get(oci::ANNOTATION_CONTAINERD_NAME)
                .or_else(|| descriptor.annotations.get(oci::ANNOTATION_REF_NAME));
            let Some(name) = name else {
                debug!(digest = %descriptor.digest, "skipping an unnamed image in the archive");
                continue;
            };
            let Some(kind) = walk.manifest(descriptor, true)? else {
                continue;
            };
            let media_type = match descriptor.media_type.as_str() {
                "" => kind.media_type().unwrap_or_default().to_string(),
                media_type => media_type.to_string(),
            };
            let target = Descriptor {
                media_type,
                digest: descriptor.digest.clone(),
                size: descriptor.size,
                annotations: Default::default(),
                platform: None,
            };
            walk.plan.images.push((normalize(name), target));
        }
        Ok(walk.plan)
    }
}

/// Walks an OCI layout from its index, collecting the blobs of every image it reaches.
struct Walk<'a> {
    archive: &'a Archive,
    plan: Plan,
    /// The blobs already planned, with their kinds.
    seen: HashMap<String, Kind>,
}

impl Walk<'_> {
    /// Plans the index or manifest `descriptor` and everything under it. A `required` one must be
    /// complete; one for another platform is taken as far as the archive has it (None if absent).
    fn manifest(
        &mut self,
        descriptor: &Descriptor,
        required: bool,
    ) -> Result<Option<Kind>, ArchiveError> {
        if let Some(kind) = self.seen.get(&descriptor.digest) {
            return Ok(Some(*kind));
        }
        let Some((offset, _)) = self.locate(descriptor, required)? else {
            return Ok(None);
        };
        let entry = self.entry(&descriptor.digest)?;
        let data = self.archive.read(&entry)?;
        let actual = oci::sha256(&data);
        if descriptor.digest.starts_with("sha256:") && actual != descriptor.digest {
            return Err(ArchiveError::Digest {
                path: self.archive.path.clone(),
                entry,
                actual,
            });
        }
        let kind = Kind::of(&descriptor.media_type, &data);
        let labels = match kind {
            Kind::Index => {
                let index: Index = self.archive.json(&entry, &data)?;
                let selected = oci::select(&index).map(|d| d.digest.clone());
                if required && selected.is_none() {
                    return Err(ArchiveError::NoPlatform {
                        path: self.archive.path.clone(),
                        digest: descriptor.digest.clone(),
                        architecture: oci::host_architecture(),
                    });
                }
                for child in &index.manifests {
                    let required = required && selected.as_ref() == Some(&child.digest);
                    self.manifest(child, required)?;
                }
                index_labels(&index)
            }
            Kind::Manifest => {
                let manifest: Manifest = self.archive.json(&entry, &data)?;
                self.blob(&manifest.config, required)?;
                for layer in &manifest.layers {
                    self.blob(layer, required)?;
                }
                manifest_labels(&manifest)
            }
            Kind::Other => {
                return Err(ArchiveError::NotAManifest {
                    path: self.archive.path.clone(),
                    digest: descriptor.digest.clone(),
                    media_type: descriptor.media_type.clone(),
                });
            }
        };
        self.seen.insert(descriptor.digest.clone(), kind);
        self.plan.blobs.push(Blob {
            descriptor: stripped(descriptor),
            labels,
            source: Source::Entry { offset },
        });
        Ok(Some(kind))
    }

    /// Plans a config or layer blob.
    fn blob(&mut self, descriptor: &Descriptor, required: bool) -> Result<(), ArchiveError> {
        if self.seen.contains_key(&descriptor.digest) {
            return Ok(());
        }
        if let Some((offset, _)) = self.locate(descriptor, required)? {
            self.seen.insert(descriptor.digest.clone(), Kind::Other);
            self.plan.blobs.push(Blob {
                descriptor: stripped(descriptor),
                labels: HashMap::new(),
                source: Source::Entry { offset },
            });
        }
        Ok(())
    }

    /// Where `descriptor`'s blob is, checked against its size; None when absent and not required.
    fn locate(
        &self,
        descriptor: &Descriptor,
        required: bool,
    ) -> Result<Option<(u64, u64)>, ArchiveError> {
        let entry = self.entry(&descriptor.digest)?;
        let found = if required {
            Some(self.archive.require(&entry)?)
        } else {
            self.archive.find(&entry)?
        };
        if let Some((_, size)) = found
            && size != descriptor.size
        {
            return Err(ArchiveError::Size {
                path: self.archive.path.clone(),
                entry,
                size,
                expected: descriptor.size,
            });
        }
        Ok(found)
    }

    fn entry(&self, digest: &str) -> Result<String, ArchiveError> {
        oci::blob_path(digest).ok_or_else(|| ArchiveError::BadDigest {
            path: self.archive.path.clone(),
            digest: digest.to_string(),
        })
    }
}
