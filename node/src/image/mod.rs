//! Images in containerd: importing OCI and docker archives, pulling from registries, resolving
//! references, listing.
//!
//! Everything goes through containerd's gRPC API in the `wasmkube` namespace: blobs into the
//! content store (with the GC labels containerd's own importer sets), image records, and layers
//! unpacked into overlayfs snapshots named by chain ID. A container's root filesystem is then a
//! snapshot prepared with [`Image::chain_id`] as its parent.

mod archive;
mod content;
mod files;
mod oci;
mod pull;
mod reference;
pub mod registry;
mod unpack;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use containerd_client::services::v1::snapshots::{RemoveSnapshotRequest, ViewSnapshotRequest};
use containerd_client::services::v1::{
    CreateImageRequest, GetImageRequest, Image as ImageRecord, ListImagesRequest,
    UpdateImageRequest,
};
use containerd_client::types;
use tonic::Code;
use tracing::{info, warn};

use self::archive::{Archive, Source};
use self::content::{Data, Lease};
use self::oci::{ConfigFile, Descriptor, Index, Kind, Manifest};
use self::registry::{Keychain, Reference, RegistryError};
use crate::accounts::Accounts;
use crate::containerd::{Containerd, ContainerdError, SNAPSHOTTER};

pub use self::archive::ArchiveError;
pub use self::files::FilesError;
pub use self::reference::normalize;

/// How deep indexes may nest before a manifest is reached.
const MAX_DEPTH: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Containerd(#[from] ContainerdError),
    #[error("image archive {0}")]
    Archive(#[from] ArchiveError),
    #[error("reading the image's users: {0}")]
    Files(#[from] FilesError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("reading an image archive: {0}")]
    Blocking(#[from] tokio::task::JoinError),
    #[error("lease id {0:?} is not a valid gRPC metadata value")]
    LeaseId(String),
    #[error("blob {digest}: containerd ended the write without an answer")]
    WriteEnded { digest: String },
    #[error("blob {digest}: containerd is at offset {got}, expected {expected}")]
    WriteOffset {
        digest: String,
        expected: u64,
        got: i64,
    },
    #[error("blob {digest}: containerd committed {got} instead")]
    Committed { digest: String, got: String },
    #[error("blob {digest}: {size} bytes, expected {expected}")]
    Size {
        digest: String,
        expected: u64,
        size: u64,
    },
    #[error("blob {digest} in containerd hashes to {actual}")]
    Digest { digest: String, actual: String },
    #[error("blob {digest} is not in containerd's content store")]
    Missing { digest: String },
    #[error("blob {digest}: {source}")]
    Json {
        digest: String,
        source: serde_json::Error,
    },
    #[error("{digest} is neither an image index nor a manifest (media type {media_type:?})")]
    NotAManifest { digest: String, media_type: String },
    #[error("index {digest} has no manifest for linux/{architecture}")]
    NoPlatform {
        digest: String,
        architecture: &'static str,
    },
    #[error("image {digest}: indexes nest deeper than {MAX_DEPTH} levels")]
    TooDeep { digest: String },
    #[error("image {name} has no target")]
    NoTarget { name: String },
    #[error("manifest {manifest}: {layers} layers but {diff_ids} diff IDs in its config")]
    LayerCount {
        manifest: String,
        layers: usize,
        diff_ids: usize,
    },
    #[error("manifest {manifest} has no layers")]
    NoLayers { manifest: String },
    #[error("layer {layer} unpacked to {applied:?}; its config says {expected}")]
    DiffId {
        layer: String,
        expected: String,
        applied: String,
    },
}

/// What an image says to run, from its config.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
}

/// An image present in containerd and unpacked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The normalized name (`docker.io/library/busybox:latest`).
    pub name: String,
    /// The digest the name points at (a manifest or an index), as in `name@digest`.
    pub digest: String,
    /// The top snapshot of the unpacked layers: the parent of containers' root filesystems.
    pub chain_id: String,
    pub config: ImageConfig,
}

/// Imports an OCI image layout or `docker save` archive (plain or gzipped tar) into containerd:
/// its blobs, an image record per name, the layers unpacked. Returns the normalized names.
/// Importing the same archive again changes nothing.
pub async fn import(containerd: &Containerd, archive: &Path) -> Result<Vec<String>, ImageError> {
    let path = archive.to_path_buf();
    let (archive, plan) = tokio::task::spawn_blocking(move || {
        let archive = Archive::open(&path)?;
        let plan = archive.plan()?;
        Ok::<_, ArchiveError>((Arc::new(archive), plan))
    })
    .await??;

    let lease = Lease::create(containerd).await?;
    let result = import_plan(&lease, &archive, &plan).await;
    lease.delete().await;
    result
}

async fn import_plan(
    lease: &Lease<'_>,
    archive: &Arc<Archive>,
    plan: &archive::Plan,
) -> Result<Vec<String>, ImageError> {
    for blob in &plan.blobs {
        let data = match &blob.source {
            Source::Entry { offset } => Data::Archive {
                archive,
                offset: *offset,
            },
            Source::Bytes(bytes) => Data::Bytes(bytes),
        };
        content::write(lease, &blob.descriptor, &blob.labels, data).await?;
    }
    publish(lease, &plan.images).await?;
    let mut names = Vec::with_capacity(plan.images.len());
    for (name, target) in &plan.images {
        info!(image = %name, digest = %target.digest, "imported");
        names.push(name.clone());
    }
    Ok(names)
}

/// Pulls the image `reference` names from its registry, with the credential `keychain` has for
/// it: resolves the reference, downloads what containerd lacks of the manifest for this platform
/// (nothing when it has that digest already), unpacks it and points the name at it.
pub async fn pull(
    containerd: &Containerd,
    client: &registry::Client,
    reference: &str,
    keychain: &Keychain,
) -> Result<Image, ImageError> {
    let name = normalize(reference);
    let parsed = Reference::parse(&name)?;
    let credential = keychain.find(&parsed.registry, &parsed.repository).cloned();
    let mut session = client.session(&parsed, credential);
    let (target, data) = session.resolve(&parsed.object).await?;
    let lease = Lease::create(containerd).await?;
    let result = async {
        let target = pull::fetch(&lease, &mut session, target, data).await?;
        publish(&lease, &[(name.clone(), target.clone())]).await?;
        Ok::<_, ImageError>(target)
    }
    .await;
    lease.delete().await;
    let target = result?;
    info!(image = %name, digest = %target.digest, "pulled");
    ready(containerd, name, target).await
}

/// Names images whose blobs are all in the content store: unpacks each target once, then
/// creates or updates each name's record. Unpacked before it is named, so a named image is
/// always ready to run.
async fn publish(lease: &Lease<'_>, images: &[(String, Descriptor)]) -> Result<(), ImageError> {
    let mut unpacked = HashSet::new();
    for (_, target) in images {
        if unpacked.insert(target.digest.as_str()) {
            let resolved = load(lease.containerd(), target).await?;
            unpack(lease, &resolved).await?;
        }
    }
    for (name, target) in images {
        record(lease, name, target).await?;
    }
    Ok(())
}

/// The users and groups of `image` (its `/etc/passwd` and `/etc/group`), read from a view of
/// its top snapshot without mounting it; empty when it has neither file. The view lives under
/// a lease, so containerd's garbage collector leaves it alone until it is removed.
pub async fn accounts(containerd: &Containerd, image: &Image) -> Result<Accounts, ImageError> {
    let lease = Lease::create(containerd).await?;
    let key = format!("wasmkube-accounts-{}", uuid::Uuid::new_v4().simple());
    let result = async {
        let view = ViewSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_string(),
            key: key.clone(),
            parent: image.chain_id.clone(),
            labels: HashMap::new(),
        };
        let mounts = containerd
            .snapshots()
            .view(lease.request(view))
            .await
            .map_err(ContainerdError::call("snapshots view"))?
            .into_inner()
            .mounts;
        let layers = files::layers(&mounts)?;
        let read = tokio::task::spawn_blocking(move || {
            let text = |path| {
                files::read(&layers, path)
                    .map(|bytes| String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned())
            };
            Ok::<_, FilesError>(Accounts::parse(&text("/etc/passwd")?, &text("/etc/group")?))
        });
        Ok::<_, ImageError>(read.await??)
    }
    .await;
    let remove = RemoveSnapshotRequest {
        snapshotter: SNAPSHOTTER.to_string(),
        key,
    };
    if let Err(status) = containerd.snapshots().remove(lease.request(remove)).await {
        warn!(%status, "removing the view of an image; its lease lets it be collected");
    }
    lease.delete().await;
    result
}

/// Creates the image record `name` → `target`, or points an existing one at `target`.
async fn record(lease: &Lease<'_>, name: &str, target: &Descriptor) -> Result<(), ImageError> {
    let containerd = lease.containerd();
    let image = ImageRecord {
        name: name.to_string(),
        labels: HashMap::new(),
        target: Some(types::Descriptor {
            media_type: target.media_type.clone(),
            digest: target.digest.clone(),
            size: target.size as i64,
            annotations: HashMap::new(),
        }),
        created_at: None,
        updated_at: None,
    };
    let create = CreateImageRequest {
        image: Some(image.clone()),
        source_date_epoch: None,
    };
    match containerd.images().create(lease.request(create)).await {
        Ok(_) => return Ok(()),
        Err(status) if status.code() == Code::AlreadyExists => {}
        Err(status) => return Err(ContainerdError::call("images create")(status).into()),
    }
    let update = UpdateImageRequest {
        image: Some(image),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["target".to_string()],
        }),
        source_date_epoch: None,
    };
    containerd
        .images()
        .update(lease.request(update))
        .await
        .map_err(ContainerdError::call("images update"))?;
    Ok(())
}

/// The image `reference` names, unpacked (now, if its snapshots went missing); None when
/// containerd has no such image.
pub async fn resolve(
    containerd: &Containerd,
    reference: &str,
) -> Result<Option<Image>, ImageError> {
    let name = normalize(reference);
    let request = GetImageRequest { name: name.clone() };
    let record = match containerd.images().get(containerd.request(request)).await {
        Ok(reply) => reply.into_inner().image,
        Err(status) if status.code() == Code::NotFound => None,
        Err(status) => return Err(ContainerdError::call("images get")(status).into()),
    };
    let Some(record) = record else {
        return Ok(None);
    };
    let target = record
        .target
        .map(descriptor)
        .ok_or_else(|| ImageError::NoTarget { name: name.clone() })?;
    ready(containerd, name, target).await.map(Some)
}

/// The image `name` whose record points at `target`, unpacked (now, if its snapshots went
/// missing).
async fn ready(
    containerd: &Containerd,
    name: String,
    target: Descriptor,
) -> Result<Image, ImageError> {
    let resolved = load(containerd, &target).await?;
    let chain_id = unpack::top_chain_id(
        &resolved.manifest,
        &resolved.layers,
        &resolved.config.rootfs.diff_ids,
    )?;
    if !unpack::exists(containerd, &chain_id).await? {
        let lease = Lease::create(containerd).await?;
        let result = unpack(&lease, &resolved).await;
        lease.delete().await;
        result?;
    }
    let run = resolved.config.config.unwrap_or_default();
    Ok(Image {
        name,
        digest: target.digest,
        chain_id,
        config: ImageConfig {
            entrypoint: run.entrypoint.unwrap_or_default(),
            cmd: run.cmd.unwrap_or_default(),
            env: run.env.unwrap_or_default(),
            working_dir: run.working_dir.unwrap_or_default(),
            user: run.user.unwrap_or_default(),
        },
    })
}

/// Every image's name and size (its blobs for this platform, compressed), for the Node's
/// `status.images`.
pub async fn list(containerd: &Containerd) -> Result<Vec<(String, u64)>, ImageError> {
    let request = ListImagesRequest { filters: vec![] };
    let images = containerd
        .images()
        .list(containerd.request(request))
        .await
        .map_err(ContainerdError::call("images list"))?
        .into_inner()
        .images;
    let mut sizes = Vec::with_capacity(images.len());
    for image in images {
        let Some(target) = image.target.map(descriptor) else {
            continue;
        };
        let size = match load(containerd, &target).await {
            Ok(resolved) => resolved.size,
            Err(error) => {
                warn!(image = %image.name, %error, "cannot size an image; counting its target only");
                target.size
            }
        };
        sizes.push((image.name, size));
    }
    Ok(sizes)
}

// === reading an image back from the content store ===

/// An image's manifest for this platform and its config, read from the content store.
struct Resolved {
    /// The manifest's digest.
    manifest: String,
    config_digest: String,
    layers: Vec<Descriptor>,
    config: ConfigFile,
    /// Every blob's size on the way, indexes and manifest included.
    size: u64,
}

async fn load(containerd: &Containerd, target: &Descriptor) -> Result<Resolved, ImageError> {
    let mut descriptor = target.clone();
    let mut size = 0;
    for _ in 0..MAX_DEPTH {
        let data = content::read(containerd, &descriptor).await?;
        size += descriptor.size;
        match Kind::of(&descriptor.media_type, &data) {
            Kind::Index => {
                let index: Index = json(&descriptor, &data)?;
                descriptor =
                    oci::select(&index)
                        .cloned()
                        .ok_or_else(|| ImageError::NoPlatform {
                            digest: descriptor.digest.clone(),
                            architecture: oci::host_architecture(),
                        })?;
            }
            Kind::Manifest => {
                let manifest: Manifest = json(&descriptor, &data)?;
                let config_data = content::read(containerd, &manifest.config).await?;
                let config: ConfigFile = json(&manifest.config, &config_data)?;
                size += manifest.config.size + manifest.layers.iter().map(|l| l.size).sum::<u64>();
                return Ok(Resolved {
                    manifest: descriptor.digest,
                    config_digest: manifest.config.digest,
                    layers: manifest.layers,
                    config,
                    size,
                });
            }
            Kind::Other => {
                return Err(ImageError::NotAManifest {
                    digest: descriptor.digest,
                    media_type: descriptor.media_type,
                });
            }
        }
    }
    Err(ImageError::TooDeep {
        digest: target.digest.clone(),
    })
}

/// Unpacks an image's layers and labels its config with the top snapshot, which keeps the
/// snapshots from containerd's garbage collector for as long as the image is there.
async fn unpack(lease: &Lease<'_>, resolved: &Resolved) -> Result<String, ImageError> {
    let chain_id = unpack::unpack(
        lease,
        &resolved.manifest,
        &resolved.layers,
        &resolved.config.rootfs.diff_ids,
    )
    .await?;
    let label = HashMap::from([(
        format!("containerd.io/gc.ref.snapshot.{SNAPSHOTTER}"),
        chain_id.clone(),
    )]);
    content::set_labels(lease.containerd(), &resolved.config_digest, &label).await?;
    Ok(chain_id)
}

fn json<T: for<'de> serde::Deserialize<'de>>(
    descriptor: &Descriptor,
    data: &[u8],
) -> Result<T, ImageError> {
    serde_json::from_slice(data).map_err(|source| ImageError::Json {
        digest: descriptor.digest.clone(),
        source,
    })
}

fn descriptor(d: types::Descriptor) -> Descriptor {
    Descriptor::new(&d.media_type, d.digest, u64::try_from(d.size).unwrap_or(0))
}
