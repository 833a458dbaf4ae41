//! Interactive processes in running containers (kubectl exec, cp): containerd's Exec with FIFOs
//! for the standard streams, a pseudo-terminal when asked, resize, and the exit code.

use std::fs::File;
use std::path::{Path, PathBuf};

use containerd_client::services::v1::{
    CloseIoRequest, DeleteProcessRequest, ExecProcessRequest, GetContainerRequest, KillRequest,
    ResizePtyRequest, StartRequest, WaitRequest,
};
use prost_types::Any;
use serde_json::Value;
use tokio::net::unix::pipe;
use tokio::task::JoinHandle;

use super::RuntimeError;
use crate::containerd::{Containerd, ContainerdError};

/// What to run in the container and which of its streams to connect.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExecRequest {
    pub command: Vec<String>,
    /// On a pseudo-terminal: its output is one stream (stdout), and it can be resized.
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// A started process: our ends of the streams it was given, and its control.
pub struct Session {
    pub stdin: Option<pipe::Sender>,
    pub stdout: Option<pipe::Receiver>,
    pub stderr: Option<pipe::Receiver>,
    pub control: Box<dyn Control>,
}

/// What can be done to a started process. Dropping it removes the process from the runtime.
#[async_trait::async_trait]
pub trait Control: Send + Sync {
    /// Resizes its terminal.
    async fn resize(&self, width: u32, height: u32) -> Result<(), RuntimeError>;
    /// Closes its standard input (once our end of it is dropped).
    async fn close_stdin(&self) -> Result<(), RuntimeError>;
    /// Kills it.
    async fn kill(&self) -> Result<(), RuntimeError>;
    /// Waits for it to end; its exit code.
    async fn wait(&self) -> Result<i32, RuntimeError>;
}

/// An exec'd process in containerd.
struct Process {
    containerd: Containerd,
    container: String,
    exec_id: String,
    fifos: Vec<PathBuf>,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Our end of a FIFO, being opened on a helper thread: the open returns once the shim opens
/// its end, so reading sees end of file only when the shim closes it.
struct Opening {
    path: PathBuf,
    open: JoinHandle<std::io::Result<File>>,
}

impl Opening {
    fn start(path: &Path, write: bool) -> Opening {
        let target = path.to_path_buf();
        Opening {
            path: path.to_path_buf(),
            open: tokio::task::spawn_blocking(move || {
                std::fs::OpenOptions::new()
                    .read(!write)
                    .write(write)
                    .open(target)
            }),
        }
    }

    /// The opened end, as `wrap` makes it.
    async fn finish<T>(
        this: Option<Opening>,
        wrap: fn(File) -> std::io::Result<T>,
    ) -> Result<Option<T>, RuntimeError> {
        let Some(Opening { path, open }) = this else {
            return Ok(None);
        };
        let file = open
            .await
            .map_err(std::io::Error::other)
            .and_then(|opened| opened)
            .and_then(wrap)
            .map_err(io_error(&path))?;
        Ok(Some(file))
    }

    /// Completes an open still waiting for the shim (which never came) and removes the FIFO.
    async fn abandon(self) {
        // A read-write open never blocks, and is both the reader and the writer waited for.
        let unblock = pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(&self.path);
        let _ = self.open.await;
        drop(unblock);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The container's own process (user and groups, environment, working directory,
/// capabilities, `noNewPrivileges`) from its OCI spec, to run `command`.
async fn container_process(
    c: &Containerd,
    container: &str,
    command: &[String],
    tty: bool,
) -> Result<Value, RuntimeError> {
    let reply = c
        .containers()
        .get(c.request(GetContainerRequest {
            id: container.to_string(),
        }))
        .await
        .map_err(ContainerdError::call("containers get"))?
        .into_inner();
    let spec: Value = reply
        .container
        .and_then(|c| c.spec)
        .and_then(|spec| serde_json::from_slice(&spec.value).ok())
        .unwrap_or(Value::Null);
    crate::spec::exec_process(&spec["process"], command, tty)
        .ok_or_else(|| RuntimeError::NoProcess(container.to_string()))
}

/// Starts `request` in the running container `container`, its FIFOs in `fifo_dir`.
pub async fn start(
    c: &Containerd,
    fifo_dir: &Path,
    container: &str,
    request: &ExecRequest,
) -> Result<Session, RuntimeError> {
    let spec = container_process(c, container, &request.command, request.tty).await?;
    start_process(c, fifo_dir, container, spec, request).await
}

/// Runs `command` in `container` as its own process runs (see [`container_process`]) to its
/// end: its exit code and its stdout and stderr, of which the first `limit` bytes each are
/// kept (the rest is drained). The output is read from the shim's FIFOs to their end, so none
/// of it is missed.
pub async fn run(
    c: &Containerd,
    fifo_dir: &Path,
    container: &str,
    command: &[String],
    limit: usize,
) -> Result<(i32, String), RuntimeError> {
    let streams = ExecRequest {
        stdout: true,
        stderr: true,
        ..ExecRequest::default()
    };
    let process = container_process(c, container, command, false).await?;
    let session = start_process(c, fifo_dir, container, process, &streams).await?;
    let (out, err, code) = tokio::join!(
        read_bounded(session.stdout, limit),
        read_bounded(session.stderr, limit),
        session.control.wait()
    );
    let mut output = out;
    output.extend_from_slice(&err);
    Ok((code?, String::from_utf8_lossy(&output).into_owned()))
}

/// Reads `stream` to its end; its first `limit` bytes.
async fn read_bounded(stream: Option<pipe::Receiver>, limit: usize) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut kept = Vec::new();
    let Some(mut stream) = stream else {
        return kept;
    };
    let mut buffer = [0u8; 4096];
    while let Ok(n @ 1..) = stream.read(&mut buffer).await {
        let room = limit.saturating_sub(kept.len()).min(n);
        kept.extend_from_slice(&buffer[..room]);
    }
    kept
}

/// Starts `spec` in the running container `container` with `request`'s streams, its FIFOs
/// in `fifo_dir`.
async fn start_process(
    c: &Containerd,
    fifo_dir: &Path,
    container: &str,
    spec: Value,
    request: &ExecRequest,
) -> Result<Session, RuntimeError> {
    std::fs::create_dir_all(fifo_dir).map_err(io_error(fifo_dir))?;
    let exec_id = format!("exec-{}", uuid::Uuid::new_v4().simple());
    let fifo =
        |wanted: bool, stream: &str| wanted.then(|| fifo_dir.join(format!("{exec_id}.{stream}")));
    let paths = [
        fifo(request.stdin, "stdin"),
        fifo(request.stdout, "stdout"),
        // A terminal has one output stream.
        fifo(request.stderr && !request.tty, "stderr"),
    ];
    let fifos: Vec<PathBuf> = paths.iter().flatten().cloned().collect();
    for fifo in &fifos {
        crate::logs::mkfifo(fifo).map_err(io_error(fifo))?;
    }
    let [stdin, stdout, stderr] = paths;
    let opens = [
        stdin.as_deref().map(|p| Opening::start(p, true)),
        stdout.as_deref().map(|p| Opening::start(p, false)),
        stderr.as_deref().map(|p| Opening::start(p, false)),
    ];
    let uri = |path: &Option<PathBuf>| {
        path.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    let process = Process {
        containerd: c.clone(),
        container: container.to_string(),
        exec_id: exec_id.clone(),
        fifos: fifos.clone(),
    };
    let started = async {
        c.tasks()
            .exec(c.request(ExecProcessRequest {
                container_id: container.to_string(),
                stdin: uri(&stdin),
                stdout: uri(&stdout),
                stderr: uri(&stderr),
                terminal: request.tty,
                spec: Some(Any {
                    type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
                    value: spec.to_string().into_bytes(),
                }),
                exec_id: exec_id.clone(),
            }))
            .await
            .map_err(ContainerdError::call("tasks exec"))?;
        c.tasks()
            .start(c.request(StartRequest {
                container_id: container.to_string(),
                exec_id: exec_id.clone(),
            }))
            .await
            .map_err(ContainerdError::call("tasks start exec"))?;
        Ok::<_, ContainerdError>(())
    }
    .await;
    if let Err(e) = started {
        for opening in opens.into_iter().flatten() {
            opening.abandon().await;
        }
        return Err(e.into());
    }
    let [open_in, open_out, open_err] = opens;
    Ok(Session {
        stdin: Opening::finish(open_in, pipe::Sender::from_file).await?,
        stdout: Opening::finish(open_out, pipe::Receiver::from_file).await?,
        stderr: Opening::finish(open_err, pipe::Receiver::from_file).await?,
        control: Box::new(process),
    })
}

#[async_trait::async_trait]
impl Control for Process {
    async fn resize(&self, width: u32, height: u32) -> Result<(), RuntimeError> {
        resize(
            &self.containerd,
            &self.container,
            &self.exec_id,
            width,
            height,
        )
        .await
    }

    async fn close_stdin(&self) -> Result<(), RuntimeError> {
        close_stdin(&self.containerd, &self.container, &self.exec_id).await
    }

    async fn kill(&self) -> Result<(), RuntimeError> {
        let c = &self.containerd;
        c.tasks()
            .kill(c.request(KillRequest {
                container_id: self.container.clone(),
                exec_id: self.exec_id.clone(),
                signal: 9,
                all: false,
            }))
            .await
            .map_err(ContainerdError::call("tasks kill exec"))?;
        Ok(())
    }

    async fn wait(&self) -> Result<i32, RuntimeError> {
        let c = &self.containerd;
        let reply = c
            .tasks()
            .wait(c.request(WaitRequest {
                container_id: self.container.clone(),
                exec_id: self.exec_id.clone(),
            }))
            .await
            .map_err(ContainerdError::call("tasks wait exec"))?;
        Ok(i32::try_from(reply.into_inner().exit_status).unwrap_or(i32::MAX))
    }
}

/// Resizes the terminal of a process of `container` (its own when `exec_id` is empty).
pub async fn resize(
    c: &Containerd,
    container: &str,
    exec_id: &str,
    width: u32,
    height: u32,
) -> Result<(), RuntimeError> {
    c.tasks()
        .resize_pty(c.request(ResizePtyRequest {
            container_id: container.to_string(),
            exec_id: exec_id.to_string(),
            width,
            height,
        }))
        .await
        .map_err(ContainerdError::call("tasks resize pty"))?;
    Ok(())
}

/// Closes the stdin of a process of `container` (its own when `exec_id` is empty).
pub async fn close_stdin(
    c: &Containerd,
    container: &str,
    exec_id: &str,
) -> Result<(), RuntimeError> {
    c.tasks()
        .close_io(c.request(CloseIoRequest {
            container_id: container.to_string(),
            exec_id: exec_id.to_string(),
            stdin: true,
        }))
        .await
        .map_err(ContainerdError::call("tasks close io"))?;
    Ok(())
}

impl Drop for Process {
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let c = self.containerd.clone();
        let request = DeleteProcessRequest {
            container_id: self.container.clone(),
            exec_id: self.exec_id.clone(),
        };
        let fifos = std::mem::take(&mut self.fifos);
        runtime.spawn(async move {
            let _ = c.tasks().delete_process(c.request(request)).await;
            for fifo in fifos {
                let _ = std::fs::remove_file(fifo);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt as _;

    use super::*;

    #[tokio::test]
    async fn output_is_read_to_its_end_and_kept_up_to_the_limit() {
        let (mut writer, reader) = pipe::pipe().expect("pipe");
        let writing = tokio::spawn(async move {
            writer.write_all(&[b'x'; 30 * 1024]).await.expect("written");
        });
        let kept = read_bounded(Some(reader), 10 * 1024).await;
        writing.await.expect("writer ended");
        assert_eq!(kept.len(), 10 * 1024, "the rest drained, not kept");
        assert!(read_bounded(None, 10).await.is_empty());
    }
}
