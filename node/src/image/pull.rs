//! Fetching an image from a registry into the content store: the index and manifest for this
//! platform, its config and layers, each checked, and downloaded only when containerd lacks it.

use std::collections::HashMap;

use tracing::debug;

use super::content::{self, Data, Lease, Writer};
use super::oci::{self, Descriptor, Index, Kind, Manifest};
use super::registry::Session;
use super::{ImageError, MAX_DEPTH, json};

/// How much of a layer is gathered before it is sent to containerd.
const CHUNK: usize = 1 << 20;

/// Puts everything `target` needs on this node into the content store, children before the
/// indexes and manifests that keep them. `data` is the target's bytes when resolving it fetched
/// them already. Returns `target` with the media type its bytes have.
pub async fn fetch(
    lease: &Lease<'_>,
    session: &mut Session<'_>,
    target: Descriptor,
    mut data: Option<Vec<u8>>,
) -> Result<Descriptor, ImageError> {
    // Indexes on the way down, written once what they lead to is.
    let mut parents: Vec<(Descriptor, Vec<u8>, HashMap<String, String>)> = Vec::new();
    let mut descriptor = target.clone();
    for _ in 0..MAX_DEPTH {
        let bytes = match data.take() {
            Some(bytes) => bytes,
            None => manifest(lease, session, &descriptor).await?,
        };
        match Kind::of(&descriptor.media_type, &bytes) {
            Kind::Index => {
                let index: Index = json(&descriptor, &bytes)?;
                let child = oci::select(&index)
                    .cloned()
                    .ok_or_else(|| ImageError::NoPlatform {
                        digest: descriptor.digest.clone(),
                        architecture: oci::host_architecture(),
                    })?;
                parents.push((descriptor, bytes, content::index_labels(&index)));
                descriptor = child;
            }
            Kind::Manifest => {
                let manifest: Manifest = json(&descriptor, &bytes)?;
                blob(lease, session, &manifest.config).await?;
                for layer in &manifest.layers {
                    blob(lease, session, layer).await?;
                }
                let labels = content::manifest_labels(&manifest);
                parents.push((descriptor, bytes, labels));
                for (descriptor, bytes, labels) in parents.iter().rev() {
                    content::write(lease, descriptor, labels, Data::Bytes(bytes)).await?;
                }
                return Ok(recorded(target, &parents[0].1));
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
        digest: target.digest,
    })
}

/// `target` with a media type an image record can carry: the registry's, unless it named none
/// that says what the blob is (say `application/json`), then the one its bytes show.
fn recorded(mut target: Descriptor, bytes: &[u8]) -> Descriptor {
    if Kind::of(&target.media_type, &[]) == Kind::Other
        && let Some(media_type) = Kind::of("", bytes).media_type()
    {
        target.media_type = media_type.to_string();
    }
    target
}

/// An index or manifest: from the content store when it is there, else from the registry.
async fn manifest(
    lease: &Lease<'_>,
    session: &mut Session<'_>,
    descriptor: &Descriptor,
) -> Result<Vec<u8>, ImageError> {
    if let Some(bytes) = content::find(lease.containerd(), descriptor).await? {
        return Ok(bytes);
    }
    debug!(digest = %descriptor.digest, "downloading a manifest");
    Ok(session.manifest(descriptor).await?)
}

/// A config or layer, streamed from the registry into the content store unless it is there.
async fn blob(
    lease: &Lease<'_>,
    session: &mut Session<'_>,
    descriptor: &Descriptor,
) -> Result<(), ImageError> {
    let Some(mut writer) = Writer::open(lease, descriptor, &HashMap::new()).await? else {
        return Ok(());
    };
    debug!(digest = %descriptor.digest, size = descriptor.size, "downloading a blob");
    let mut download = session.blob(descriptor).await?;
    // Bytes containerd has from an earlier ingest are checked but not sent again.
    let mut skip = writer.offset();
    let mut buffer = Vec::with_capacity(CHUNK);
    while let Some(chunk) = download.chunk().await? {
        let skipped = usize::try_from(skip).map_or(chunk.len(), |s| s.min(chunk.len()));
        skip -= skipped as u64;
        buffer.extend_from_slice(&chunk[skipped..]);
        if buffer.len() >= CHUNK && !writer.push(std::mem::take(&mut buffer)).await? {
            return Ok(());
        }
    }
    // The download ended and matched its descriptor: only now is anything committed.
    if !buffer.is_empty() && !writer.push(buffer).await? {
        return Ok(());
    }
    writer.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_carry_a_media_type_the_bytes_show_when_the_registry_gave_none() {
        let target = |media_type: &str| Descriptor::new(media_type, "sha256:00".into(), 2);
        let index = br#"{"manifests":[]}"#;
        let manifest = br#"{"config":{}}"#;
        let docker = "application/vnd.docker.distribution.manifest.v2+json";
        assert_eq!(recorded(target(docker), manifest).media_type, docker);
        assert_eq!(
            recorded(target("application/json"), index).media_type,
            oci::INDEX
        );
        assert_eq!(recorded(target(""), manifest).media_type, oci::MANIFEST);
    }
}
