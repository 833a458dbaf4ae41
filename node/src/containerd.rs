//! The connection to containerd: one gRPC channel, every request tagged with our namespace.

use std::path::{Path, PathBuf};

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::diff_client::DiffClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::version_client::VersionClient;
use tonic::Request;
use tonic::transport::Channel;

/// containerd's default socket.
pub const DEFAULT_SOCKET: &str = "/run/containerd/containerd.sock";
/// The containerd namespace every wasmkube image, container and snapshot lives in.
pub const NAMESPACE: &str = "wasmkube";
/// The snapshotter pods' root filesystems are made with.
pub const SNAPSHOTTER: &str = "overlayfs";

#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    #[error("connecting to containerd at {socket}: {source}")]
    Connect {
        socket: PathBuf,
        source: tonic::transport::Error,
    },
    #[error("containerd {call}: {status}")]
    Call {
        call: &'static str,
        status: tonic::Status,
    },
}

impl ContainerdError {
    /// A closure for `map_err` naming the call that failed.
    pub fn call(call: &'static str) -> impl FnOnce(tonic::Status) -> ContainerdError {
        move |status| ContainerdError::Call { call, status }
    }

    /// Whether containerd answered that the thing does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ContainerdError::Call { status, .. } if status.code() == tonic::Code::NotFound)
    }
}

/// A connection to containerd. Cloning shares the channel.
#[derive(Clone)]
pub struct Containerd {
    channel: Channel,
}

impl Containerd {
    pub async fn connect(socket: &Path) -> Result<Containerd, ContainerdError> {
        let channel = containerd_client::connect(socket).await.map_err(|source| {
            ContainerdError::Connect {
                socket: socket.to_path_buf(),
                source,
            }
        })?;
        Ok(Containerd { channel })
    }

    /// `message` as a request in the wasmkube namespace.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.metadata_mut().insert(
            "containerd-namespace",
            tonic::metadata::MetadataValue::from_static(NAMESPACE),
        );
        request
    }

    /// containerd's version string, for the Node's `containerRuntimeVersion`.
    pub async fn version(&self) -> Result<String, ContainerdError> {
        let reply = VersionClient::new(self.channel.clone())
            .version(())
            .await
            .map_err(ContainerdError::call("version"))?;
        Ok(reply.into_inner().version)
    }

    pub fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
    }

    pub fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel.clone())
    }

    pub fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone())
    }

    pub fn content(&self) -> ContentClient<Channel> {
        ContentClient::new(self.channel.clone())
    }

    pub fn snapshots(&self) -> SnapshotsClient<Channel> {
        SnapshotsClient::new(self.channel.clone())
    }

    pub fn diff(&self) -> DiffClient<Channel> {
        DiffClient::new(self.channel.clone())
    }

    pub fn leases(&self) -> LeasesClient<Channel> {
        LeasesClient::new(self.channel.clone())
    }
}
