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
use super::oci::{self, Descriptor};
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
    let mut writer = match Writer::open(lease, descriptor).await? {
        Some(writer) => writer,
        None => return set_labels(lease.containerd(), &descriptor.digest, labels).await,
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
    // Where containerd's ingest stands (0 unless the ingest was started before).
    let mut offset = writer.offset;
    if offset > size {
        offset = 0;
    }
    while offset < size {
        let len = CHUNK.min(size - offset);
        let chunk = data.read(offset, len).await?;
        let message = WriteContentRequest {
            action: WriteAction::Write as i32,
            offset: offset as i64,
            data: chunk,
            ..Default::default()
        };
        let Some(reply) = writer.exchange(message).await? else {
            return set_labels(lease.containerd(), &descriptor.digest, labels).await;
        };
        offset += len;
        if reply.offset != offset as i64 {
            return Err(ImageError::WriteOffset {
                digest: descriptor.digest.clone(),
                expected: offset,
                got: reply.offset,
            });
        }
    }
    let commit = WriteContentRequest {
        action: WriteAction::Commit as i32,
        total: size as i64,
        offset: offset as i64,
        expected: descriptor.digest.clone(),
        labels: labels.clone(),
        ..Default::default()
    };
    let Some(reply) = writer.exchange(commit).await? else {
        return set_labels(lease.containerd(), &descriptor.digest, labels).await;
    };
    if reply.digest != descriptor.digest {
        return Err(ImageError::Committed {
            digest: descriptor.digest.clone(),
            got: reply.digest,
        });
    }
    writer.close().await
}

/// One content Write stream, message by message: each request waits for its answer.
struct Writer {
    digest: String,
    sender: mpsc::Sender<WriteContentRequest>,
    replies: Streaming<WriteContentResponse>,
    /// Where containerd's ingest of this blob stands.
    offset: u64,
}

impl Writer {
    /// Starts writing `descriptor`'s blob; None when containerd has it already.
    async fn open(
        lease: &Lease<'_>,
        descriptor: &Descriptor,
    ) -> Result<Option<Writer>, ImageError> {
        let (mut sender, receiver) = mpsc::channel(1);
        let stat = WriteContentRequest {
            action: WriteAction::Stat as i32,
            // One ingest per lease: concurrent imports of a blob never wait on each other's
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
        let replies = match lease
            .containerd()
            .content()
            .write(lease.request(receiver))
            .await
        {
            Ok(replies) => replies.into_inner(),
            Err(status) if status.code() == Code::AlreadyExists => return Ok(None),
            Err(status) => return Err(ContainerdError::call("content write")(status).into()),
        };
        let mut writer = Writer {
            digest: descriptor.digest.clone(),
            sender,
            replies,
            offset: 0,
        };
        match writer.reply().await? {
            Some(reply) => {
                writer.offset = u64::try_from(reply.offset).unwrap_or(0);
                Ok(Some(writer))
            }
            None => Ok(None),
        }
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
                digest: self.digest.clone(),
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
    let request = ReadContentRequest {
        digest: descriptor.digest.clone(),
        offset: 0,
        size: 0,
    };
    let mut stream = containerd
        .content()
        .read(containerd.request(request))
        .await
        .map_err(ContainerdError::call("content read"))?
        .into_inner();
    let capacity = usize::try_from(descriptor.size).unwrap_or(0).min(16 << 20);
    let mut data = Vec::with_capacity(capacity);
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(ContainerdError::call("content read"))?
    {
        data.extend_from_slice(&chunk.data);
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
    Ok(data)
}
