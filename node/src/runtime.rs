//! What the pod workers need of a container runtime, and its implementation on containerd.

mod exec;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use containerd_client::services::v1::container::Runtime as RuntimeInfo;
use containerd_client::services::v1::snapshots::{PrepareSnapshotRequest, RemoveSnapshotRequest};
use containerd_client::services::v1::{
    Container, CreateContainerRequest, CreateTaskRequest, DeleteContainerRequest,
    DeleteTaskRequest, GetRequest, KillRequest, ListContainersRequest, StartRequest, WaitRequest,
};
use containerd_client::types::v1::Status;
use prost_types::Any;
use serde_json::Value;

use crate::accounts::Accounts;
use crate::cgroups::{self, CgroupError};
use crate::cni::{Cni, CniError, Network, PortMapping};
use crate::containerd::{Containerd, ContainerdError, SNAPSHOTTER};
use crate::image::registry::{self, Keychain};
use crate::image::{self, Image, ImageError};
use crate::namespaces::{self, NamespaceError};

pub use exec::{Control, ExecRequest, Session};

/// How much of each output stream of a probe's or hook's command is kept: the kubelet's
/// `maxReadLength` for exec probes (pkg/probe/exec), 10 KiB.
pub const EXEC_OUTPUT_LIMIT: usize = 10 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Containerd(#[from] ContainerdError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Network(#[from] CniError),
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("container {0} has no process in its spec to run a command as")]
    NoProcess(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl RuntimeError {
    /// Whether the runtime answered that the container (or what was asked for) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, RuntimeError::Containerd(e) if e.is_not_found())
    }
}

/// A container to create and start.
#[derive(Clone, Debug)]
pub struct Launch {
    pub id: String,
    pub image: Image,
    /// The OCI runtime spec.
    pub spec: Value,
    pub labels: HashMap<String, String>,
    /// Where its stdout and stderr go (the log files' writer reads these FIFOs); a terminal
    /// writes only to stdout.
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    /// The FIFO its stdin is read from (`stdin: true`).
    pub stdin: Option<PathBuf>,
    /// On a pseudo-terminal (`tty: true`).
    pub terminal: bool,
}

/// How a container's process ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Exit {
    pub code: i32,
    pub at: DateTime<Utc>,
    /// Killed by the kernel's OOM killer for its cgroup's memory limit.
    pub oom_killed: bool,
}

/// A container found in the runtime: its labels and whether its process runs.
#[derive(Clone, Debug)]
pub struct Found {
    pub id: String,
    pub labels: HashMap<String, String>,
    pub created: DateTime<Utc>,
    /// `None` while the process runs.
    pub exit: Option<Exit>,
}

/// The container runtime as the pod workers use it. containerd implements it; tests fake it.
#[async_trait::async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// The image, `None` when it is not present on the node.
    async fn image(&self, reference: &str) -> Result<Option<Image>, RuntimeError>;
    /// Pulls the image from its registry (what the node has of it already is not downloaded
    /// again), with credentials from `keychain`.
    async fn pull(&self, reference: &str, keychain: &Keychain) -> Result<Image, RuntimeError>;
    /// The users and groups of the image (its `/etc/passwd` and `/etc/group`).
    async fn accounts(&self, image: &Image) -> Result<Arc<Accounts>, RuntimeError>;
    /// Creates the container and starts its process.
    async fn start(&self, launch: Launch) -> Result<(), RuntimeError>;
    /// Waits for the container's process to end.
    async fn wait(&self, id: &str) -> Result<Exit, RuntimeError>;
    /// Sends a signal to every process of the container.
    async fn signal(&self, id: &str, signal: u32) -> Result<(), RuntimeError>;
    /// Removes a stopped container and its root filesystem; a missing one is fine.
    async fn remove(&self, id: &str) -> Result<(), RuntimeError>;
    /// Every container wasmkube created on this node.
    async fn list(&self) -> Result<Vec<Found>, RuntimeError>;
    /// Runs `command` in the running container as its own process runs (user, groups,
    /// environment, capabilities, `noNewPrivileges`) and returns its exit code and output (at
    /// most [`EXEC_OUTPUT_LIMIT`] bytes of each stream).
    async fn exec(&self, id: &str, command: &[String]) -> Result<(i32, String), RuntimeError>;
    /// Starts an interactive process in the running container (kubectl exec).
    async fn exec_session(&self, id: &str, request: &ExecRequest) -> Result<Session, RuntimeError>;
    /// Resizes the terminal of the container's own process.
    async fn resize(&self, id: &str, width: u32, height: u32) -> Result<(), RuntimeError>;
    /// Closes the standard input of the container's own process.
    async fn close_stdin(&self, id: &str) -> Result<(), RuntimeError>;
    /// Gives the pod its network; returns its IP.
    async fn attach(&self, uid: &str, network: &Network) -> Result<String, RuntimeError>;
    /// The IP of a pod attached before, if it still is.
    fn address(&self, uid: &str) -> Option<String>;
    /// Takes the pod's network away, with its shared namespaces and its cgroup (its containers
    /// are gone by then).
    async fn detach(&self, uid: &str, ports: &[PortMapping]) -> Result<(), RuntimeError>;
    /// The uids of pods with a network on this node.
    fn attached(&self) -> Vec<String>;
}

/// Pods' containers in containerd, their networks through CNI.
pub struct ContainerdRuntime {
    pub containerd: Containerd,
    pub cni: Cni,
    pub registry: registry::Client,
    /// Where exec output and the FIFOs of interactive execs are kept (in `exec/`).
    pub state_dir: PathBuf,
    /// Each image's users by its top snapshot (whose files never change), read once.
    pub accounts: Mutex<HashMap<String, Arc<Accounts>>>,
}

/// How many images' users are kept; past that the cache starts again.
const ACCOUNTS_CACHED: usize = 128;

fn time(timestamp: Option<prost_types::Timestamp>) -> DateTime<Utc> {
    timestamp
        .and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
        .unwrap_or_else(Utc::now)
}

impl ContainerdRuntime {
    async fn cgroups_path(&self, id: &str) -> Option<String> {
        let container =
            self.containerd
                .containers()
                .get(self.containerd.request(
                    containerd_client::services::v1::GetContainerRequest { id: id.to_string() },
                ))
                .await
                .ok()?
                .into_inner()
                .container?;
        let spec: Value = serde_json::from_slice(&container.spec?.value).ok()?;
        spec.pointer("/linux/cgroupsPath")?
            .as_str()
            .map(str::to_string)
    }
}

#[async_trait::async_trait]
impl Runtime for ContainerdRuntime {
    async fn image(&self, reference: &str) -> Result<Option<Image>, RuntimeError> {
        Ok(image::resolve(&self.containerd, reference).await?)
    }

    async fn pull(&self, reference: &str, keychain: &Keychain) -> Result<Image, RuntimeError> {
        Ok(image::pull(&self.containerd, &self.registry, reference, keychain).await?)
    }

    async fn accounts(&self, image: &Image) -> Result<Arc<Accounts>, RuntimeError> {
        let cached = |cache: &Mutex<HashMap<String, Arc<Accounts>>>| {
            let cache = cache.lock().unwrap_or_else(|e| e.into_inner());
            cache.get(&image.chain_id).cloned()
        };
        if let Some(accounts) = cached(&self.accounts) {
            return Ok(accounts);
        }
        let accounts = Arc::new(image::accounts(&self.containerd, image).await?);
        let mut cache = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= ACCOUNTS_CACHED {
            cache.clear();
        }
        cache.insert(image.chain_id.clone(), accounts.clone());
        Ok(accounts)
    }

    async fn start(&self, launch: Launch) -> Result<(), RuntimeError> {
        let c = &self.containerd;
        let container = Container {
            id: launch.id.clone(),
            labels: launch.labels,
            image: launch.image.name.clone(),
            runtime: Some(RuntimeInfo {
                name: "io.containerd.runc.v2".into(),
                options: None,
            }),
            spec: Some(Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
                value: launch.spec.to_string().into_bytes(),
            }),
            snapshotter: SNAPSHOTTER.into(),
            snapshot_key: launch.id.clone(),
            ..Default::default()
        };
        c.containers()
            .create(c.request(CreateContainerRequest {
                container: Some(container),
            }))
            .await
            .map_err(ContainerdError::call("containers create"))?;
        // The container (which names the snapshot) first, then the snapshot: a snapshot that
        // nothing references yet is fair game for containerd's garbage collector, which runs
        // whenever other pods' containers are deleted.
        let mounts = c
            .snapshots()
            .prepare(c.request(PrepareSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: launch.id.clone(),
                parent: launch.image.chain_id.clone(),
                labels: HashMap::new(),
            }))
            .await
            .map_err(ContainerdError::call("snapshots prepare"))?
            .into_inner()
            .mounts;
        c.tasks()
            .create(
                c.request(CreateTaskRequest {
                    container_id: launch.id.clone(),
                    rootfs: mounts,
                    stdin: launch
                        .stdin
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    stdout: launch.stdout.display().to_string(),
                    stderr: if launch.terminal {
                        String::new()
                    } else {
                        launch.stderr.display().to_string()
                    },
                    terminal: launch.terminal,
                    ..Default::default()
                }),
            )
            .await
            .map_err(ContainerdError::call("tasks create"))?;
        c.tasks()
            .start(c.request(StartRequest {
                container_id: launch.id,
                exec_id: String::new(),
            }))
            .await
            .map_err(ContainerdError::call("tasks start"))?;
        Ok(())
    }

    async fn wait(&self, id: &str) -> Result<Exit, RuntimeError> {
        let c = &self.containerd;
        let reply = c
            .tasks()
            .wait(c.request(WaitRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            }))
            .await
            .map_err(ContainerdError::call("tasks wait"))?
            .into_inner();
        let oom = match self.cgroups_path(id).await {
            Some(path) => cgroups::oom_killed(&path),
            None => false,
        };
        Ok(Exit {
            code: i32::try_from(reply.exit_status).unwrap_or(i32::MAX),
            at: time(reply.exited_at),
            oom_killed: oom,
        })
    }

    async fn signal(&self, id: &str, signal: u32) -> Result<(), RuntimeError> {
        let c = &self.containerd;
        match c
            .tasks()
            .kill(c.request(KillRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
                signal,
                all: true,
            }))
            .await
        {
            Err(status) if status.code() == tonic::Code::NotFound => Ok(()),
            Err(status) => Err(ContainerdError::Call {
                call: "tasks kill",
                status,
            }
            .into()),
            Ok(_) => Ok(()),
        }
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let c = &self.containerd;
        let ignore_missing = |call: &'static str, result: Result<(), tonic::Status>| match result {
            Err(status) if status.code() != tonic::Code::NotFound => {
                Err(ContainerdError::Call { call, status })
            }
            _ => Ok(()),
        };
        let deleted = c
            .tasks()
            .delete(c.request(DeleteTaskRequest {
                container_id: id.to_string(),
            }))
            .await
            .map(|_| ());
        ignore_missing("tasks delete", deleted)?;
        let deleted = c
            .containers()
            .delete(c.request(DeleteContainerRequest { id: id.to_string() }))
            .await
            .map(|_| ());
        ignore_missing("containers delete", deleted)?;
        let removed = c
            .snapshots()
            .remove(c.request(RemoveSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: id.to_string(),
            }))
            .await
            .map(|_| ());
        ignore_missing("snapshots remove", removed)?;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<Found>, RuntimeError> {
        let c = &self.containerd;
        let containers = c
            .containers()
            .list(c.request(ListContainersRequest {
                filters: Vec::new(),
            }))
            .await
            .map_err(ContainerdError::call("containers list"))?
            .into_inner()
            .containers;
        let mut found = Vec::with_capacity(containers.len());
        for container in containers {
            let task = c
                .tasks()
                .get(c.request(GetRequest {
                    container_id: container.id.clone(),
                    exec_id: String::new(),
                }))
                .await
                .ok()
                .and_then(|reply| reply.into_inner().process);
            let exit = match task {
                Some(p) if p.status == Status::Running as i32 => None,
                Some(p) if p.status == Status::Stopped as i32 => Some(Exit {
                    code: i32::try_from(p.exit_status).unwrap_or(i32::MAX),
                    at: time(p.exited_at),
                    oom_killed: false,
                }),
                _ => Some(Exit {
                    code: 255,
                    at: time(container.updated_at),
                    oom_killed: false,
                }),
            };
            found.push(Found {
                id: container.id,
                labels: container.labels,
                created: time(container.created_at),
                exit,
            });
        }
        Ok(found)
    }

    async fn exec(&self, id: &str, command: &[String]) -> Result<(i32, String), RuntimeError> {
        let fifo_dir = self.state_dir.join("exec");
        exec::run(&self.containerd, &fifo_dir, id, command, EXEC_OUTPUT_LIMIT).await
    }

    async fn exec_session(&self, id: &str, request: &ExecRequest) -> Result<Session, RuntimeError> {
        exec::start(&self.containerd, &self.state_dir.join("exec"), id, request).await
    }

    async fn resize(&self, id: &str, width: u32, height: u32) -> Result<(), RuntimeError> {
        exec::resize(&self.containerd, id, "", width, height).await
    }

    async fn close_stdin(&self, id: &str) -> Result<(), RuntimeError> {
        exec::close_stdin(&self.containerd, id, "").await
    }

    async fn attach(&self, uid: &str, network: &Network) -> Result<String, RuntimeError> {
        namespaces::create(uid).await?;
        match self.cni.attach(uid, network).await {
            Ok(ip) => Ok(ip),
            Err(e) => {
                let _ = namespaces::remove(uid).await;
                Err(e.into())
            }
        }
    }

    fn address(&self, uid: &str) -> Option<String> {
        self.cni.address(uid)
    }

    async fn detach(&self, uid: &str, ports: &[PortMapping]) -> Result<(), RuntimeError> {
        self.cni.detach(uid, ports).await?;
        namespaces::remove(uid).await?;
        Ok(cgroups::remove_pod(uid)?)
    }

    fn attached(&self) -> Vec<String> {
        self.cni.attached()
    }
}
