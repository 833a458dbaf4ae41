//! containerd's content store and leases: blobs written with their GC labels, and read back.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{SecondsFormat, TimeDelta, Utc};
use containerd_client::services::v1::{
    CreateRequest, DeleteRequest, Info, ReadContentRequest, UpdateRequest, WriteAction,
    WriteContentRequest, WriteContentResponse,
};
use futures::SinkExt as _;
use futures::channel::mpsc;
use tonic::metadata::AsciiMetadataValue;
use tonic::{Code, Request, Status, Streaming};
use tracing::warn;

use super::ImageError;
use super::archive::Archive;
use super::oci::{self, Descriptor, Index, Manifest};
use crate::containerd::{Containerd, ContainerdError};

/// How much is sent to containerd in one write message (its limit is 16 MiB a message).
const CHUNK: u64 = 1 << 20;
/// How long containerd keeps a lease when we die before deleting it.
const LEASE_EXPIRY: TimeDelta = TimeDelta::minutes(30);

// === impl Lease ===

/// A containerd lease: what is written or unpacked under it is safe from the garbage collector
/// until the image records and GC labels that keep it are in place.
pub struct Lease<'a> {
    containerd: &'a Containerd,
    id: String,
    value: AsciiMetadataValue,
}

impl<'a> Lease<'a> {
    pub async fn create(containerd: &'a Containerd) -> Result<Lease<'a>, ImageError> {
        let id = format!("wasmkube-image-{}", uuid::Uuid::new_v4().simple());
        let value = AsciiMetadataValue::try_from(id.as_str())
            .map_err(|_| ImageError::LeaseId(id.clone()))?;
        let expire = (Utc::now() + LEASE_EXPIRY).to_rfc3339_opts(SecondsFormat::Secs, true);
        let request = CreateRequest {
            id: id.clone(),
            labels: HashMap::from([("containerd.io/gc.expire".to_string(), expire)]),
        };
        containerd
            .leases()
            .create(containerd.request(request))
            .await
            .map_err(ContainerdError::call("leases create"))?;
        Ok(Lease {
            containerd,
            id,
            value,
        })
    }

    pub fn containerd(&self) -> &'a Containerd {
        self.containerd
    }

    /// `message` as a request in our namespace, under this lease.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = self.containerd.request(message);
        request
            .metadata_mut()
            .insert("containerd-lease", self.value.clone());
        request
    }

    /// Ends the lease; what nothing else references becomes garbage. A failure only delays
    /// that until the lease expires, so it is logged, not returned.
    pub async fn delete(self) {
        let request = DeleteRequest {
            id: self.id.clone(),
            sync: false,
        };
        if let Err(status) = self
            .containerd
            .leases()
            .delete(self.containerd.request(request))
            .await
        {
            warn!(lease = %self.id, %status, "could not delete a containerd lease; it will expire");
        }
    }
}

// === writing ===

/// The bytes of a blob to write.
pub enum Data<'a> {
    /// At `offset` in an image archive.
    Archive {
        archive: &'a Arc<Archive>,
        offset: u64,
    },
    Bytes(&'a [u8]),
}

impl Data<'_> {
    /// `len` (at most `CHUNK`) bytes at `at`, which `write` keeps within the blob's size.
    async fn read(&self, at: u64, len: u64) -> Result<Vec<u8>, ImageError> {
        let len = usize::try_from(len).unwrap_or(0);
        match self {
            Data::Bytes(bytes) => {
                let start = usize::try_from(at).unwrap_or(usize::MAX);
                let chunk = start.checked_add(len).and_then(|end| bytes.get(start..end));
                Ok(chunk.map(<[u8]>::to_vec).unwrap_or_default())
            }
            Data::Archive { archive, offset } => {
                let archive = Arc::clone(archive);
                let offset = offset + at;
                Ok(tokio::task::spawn_blocking(move || archive.read_at(offset, len)).await??)
            }
        }
    }
}

/// Writes a blob into the content store unless it is there already, with `labels` either way.
pub async fn write(
    lease: &Lease<'_>,
    descriptor: &Descriptor,
    labels: &HashMap<String, String>,
    data: Data<'_>,
) -> Result<(), ImageError> {
    let Some(mut writer) = Writer::open(lease, descriptor, labels).await? else {
        return Ok(());
    };
    let size = descriptor.size;
    if let Data::Bytes(bytes) = &data
        && bytes.len() as u64 != size
    {
        return Err(ImageError::Size {
            digest: descriptor.digest.clone(),
            expected: size,
            size: bytes.len() as u64,
        });
    }
    while writer.offset < size {
        let len = CHUNK.min(size - writer.offset);
        let chunk = data.read(writer.offset, len).await?;
        if !writer.push(chunk).await? {
            return Ok(());
        }
    }
    writer.commit().await
}

/// One content Write stream, message by message: each request waits for its answer. Whoever
/// finds the blob committed by someone else meanwhile sets the writer's labels on it instead.
pub struct Writer<'a> {
    containerd: &'a Containerd,
    descriptor: Descriptor,
    labels: HashMap<String, String>,
    sender: mpsc::Sender<WriteContentRequest>,
    replies: Streaming<WriteContentResponse>,
    /// Where containerd's ingest of this blob stands: the next byte to push.
    offset: u64,
}

impl<'a> Writer<'a> {
    /// Starts writing `descriptor`'s blob, to be committed with `labels`; None when containerd
    /// has it already (then with `labels` set, and held by the lease).
    pub async fn open(
        lease: &Lease<'a>,
        descriptor: &Descriptor,
        labels: &HashMap<String, String>,
    ) -> Result<Option<Writer<'a>>, ImageError> {
        let containerd = lease.containerd();
        let present = || set_labels(containerd, &descriptor.digest, labels);
        let (mut sender, receiver) = mpsc::channel(1);
        let stat = WriteContentRequest {
            action: WriteAction::Stat as i32,
            // One ingest per lease: concurrent writes of a blob never wait on each other's
            // lock (the second commit finds it exists), and a crashed one's ingest goes with
            // its lease.
            r#ref: format!("{} {}", lease.id, descriptor.digest),
            total: descriptor.size as i64,
            expected: descriptor.digest.clone(),
            ..Default::default()
        };
        // Queued before the call: containerd answers (and the call returns) only once it has it.
        sender
            .send(stat)
            .await
            .map_err(|_| ImageError::WriteEnded {
                digest: descriptor.digest.clone(),
            })?;
        let replies = match containerd.content().write(lease.request(receiver)).await {
            Ok(replies) => replies.into_inner(),
            Err(status) if status.code() == Code::AlreadyExists => {
                present().await?;
                return Ok(None);
            }
            Err(status) => return Err(ContainerdError::call("content write")(status).into()),
        };
        let mut writer = Writer {
            containerd,
            descriptor: descriptor.clone(),
            labels: labels.clone(),
            sender,
            replies,
            offset: 0,
        };
        match writer.reply().await? {
            Some(reply) => {
                // Where an ingest of this lease left off (a fresh lease's is empty); past the
                // blob's end it is written afresh.
                let offset = u64::try_from(reply.offset).unwrap_or(0);
                writer.offset = if offset > descriptor.size { 0 } else { offset };
                Ok(Some(writer))
            }
            None => {
                present().await?;
                Ok(None)
            }
        }
    }

    /// Where containerd's ingest stands: the bytes before it need not be pushed again.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Writes the next bytes (at most 16 MiB); false when the blob turned out to be committed
    /// by someone else (and is labelled).
    pub async fn push(&mut self, data: Vec<u8>) -> Result<bool, ImageError> {
        let len = data.len() as u64;
        let message = WriteContentRequest {
            action: WriteAction::Write as i32,
            offset: self.offset as i64,
            data,
            ..Default::default()
        };
        let Some(reply) = self.exchange(message).await? else {
            self.present().await?;
            return Ok(false);
        };
        self.offset += len;
        if reply.offset != self.offset as i64 {
            return Err(ImageError::WriteOffset {
                digest: self.descriptor.digest.clone(),
                expected: self.offset,
                got: reply.offset,
            });
        }
        Ok(true)
    }

    /// Commits the blob, which containerd checks against the descriptor's size and digest.
    pub async fn commit(mut self) -> Result<(), ImageError> {
        let commit = WriteContentRequest {
            action: WriteAction::Commit as i32,
            total: self.descriptor.size as i64,
            offset: self.offset as i64,
            expected: self.descriptor.digest.clone(),
            labels: self.labels.clone(),
            ..Default::default()
        };
        let Some(reply) = self.exchange(commit).await? else {
            return self.present().await;
        };
        if reply.digest != self.descriptor.digest {
            return Err(ImageError::Committed {
                digest: self.descriptor.digest.clone(),
                got: reply.digest,
            });
        }
        self.close().await
    }

    async fn present(&self) -> Result<(), ImageError> {
        set_labels(self.containerd, &self.descriptor.digest, &self.labels).await
    }

    /// Sends `message` and waits for its answer; None when containerd says the blob exists
    /// (someone else committed it meanwhile).
    async fn exchange(
        &mut self,
        message: WriteContentRequest,
    ) -> Result<Option<WriteContentResponse>, ImageError> {
        // A send fails only when the call is over; its status is then in the replies.
        let _ = self.sender.send(message).await;
        self.reply().await
    }

    async fn reply(&mut self) -> Result<Option<WriteContentResponse>, ImageError> {
        match self.replies.message().await {
            Ok(Some(reply)) => Ok(Some(reply)),
            Ok(None) => Err(ImageError::WriteEnded {
                digest: self.descriptor.digest.clone(),
            }),
            Err(status) => exists_or(status),
        }
    }

    /// Ends the stream after a commit.
    async fn close(mut self) -> Result<(), ImageError> {
        self.sender.close_channel();
        loop {
            match self.replies.message().await {
                Ok(Some(_)) => {}
                Ok(None) => return Ok(()),
                Err(status) => return exists_or(status).map(|_| ()),
            }
        }
    }
}

fn exists_or(status: Status) -> Result<Option<WriteContentResponse>, ImageError> {
    if status.code() == Code::AlreadyExists {
        Ok(None)
    } else {
        Err(ContainerdError::call("content write")(status).into())
    }
}

/// Sets `labels` on a blob in the content store, keeping its others.
pub async fn set_labels(
    containerd: &Containerd,
    digest: &str,
    labels: &HashMap<String, String>,
) -> Result<(), ImageError> {
    if labels.is_empty() {
        return Ok(());
    }
    let request = UpdateRequest {
        info: Some(Info {
            digest: digest.to_string(),
            labels: labels.clone(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: labels.keys().map(|key| format!("labels.{key}")).collect(),
        }),
    };
    containerd
        .content()
        .update(containerd.request(request))
        .await
        .map_err(ContainerdError::call("content update"))?;
    Ok(())
}

// === reading ===

/// A whole blob from the content store, checked against its descriptor.
pub async fn read(containerd: &Containerd, descriptor: &Descriptor) -> Result<Vec<u8>, ImageError> {
    find(containerd, descriptor)
        .await?
        .ok_or_else(|| ImageError::Missing {
            digest: descriptor.digest.clone(),
        })
}

/// A whole blob from the content store, checked against its descriptor; None when the store
/// does not have it.
pub async fn find(
    containerd: &Containerd,
    descriptor: &Descriptor,
) -> Result<Option<Vec<u8>>, ImageError> {
    let request = ReadContentRequest {
        digest: descriptor.digest.clone(),
        offset: 0,
        size: 0,
    };
    let missing = |status: Status| match status.code() {
        Code::NotFound => Ok(None),
        _ => Err(ContainerdError::call("content read")(status)),
    };
    let mut stream = match containerd.content().read(containerd.request(request)).await {
        Ok(reply) => reply.into_inner(),
        Err(status) => return Ok(missing(status)?),
    };
    let capacity = usize::try_from(descriptor.size).unwrap_or(0).min(16 << 20);
    let mut data = Vec::with_capacity(capacity);
    loop {
        match stream.message().await {
            Ok(Some(chunk)) => data.extend_from_slice(&chunk.data),
            Ok(None) => break,
            // The status of a missing blob may come with the first message.
            Err(status) if data.is_empty() => return Ok(missing(status)?),
            Err(status) => return Err(ContainerdError::call("content read")(status).into()),
        }
        if data.len() as u64 > descriptor.size {
            break;
        }
    }
    if data.len() as u64 != descriptor.size {
        return Err(ImageError::Size {
            digest: descriptor.digest.clone(),
            expected: descriptor.size,
            size: data.len() as u64,
        });
    }
    let actual = oci::sha256(&data);
    if descriptor.digest.starts_with("sha256:") && actual != descriptor.digest {
        return Err(ImageError::Digest {
            digest: descriptor.digest.clone(),
            actual,
        });
    }
    Ok(Some(data))
}

// === GC labels ===

/// containerd's GC labels for a manifest: it keeps its config and layers.
pub fn manifest_labels(manifest: &Manifest) -> HashMap<String, String> {
    let mut labels = HashMap::new();
    labels.insert(
        "containerd.io/gc.ref.content.config".to_string(),
        manifest.config.digest.clone(),
    );
    for (i, layer) in manifest.layers.iter().enumerate() {
        labels.insert(
            format!("containerd.io/gc.ref.content.l.{i}"),
            layer.digest.clone(),
        );
    }
    labels
}

/// containerd's GC labels for an index: it keeps its manifests.
pub fn index_labels(index: &Index) -> HashMap<String, String> {
    index
        .manifests
        .iter()
        .enumerate()
        .map(|(i, m)| {
            (
                format!("containerd.io/gc.ref.content.m.{i}"),
                m.digest.clone(),
            )
        })
        .collect()
}
