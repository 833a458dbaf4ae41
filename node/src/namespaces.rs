//! A pod's shared IPC and UTS namespaces (its network namespace is the CNI's), made once per
//! pod and kept alive by bind mounts, so that all its containers join the same ones.

use std::path::{Path, PathBuf};

use crate::command::{CommandError, run};
use crate::pod::volumes::is_mounted;

/// Where the namespaces of each pod are bound: `<dir>/<uid>/{ipc,uts}`.
const DIR: &str = "/run/wasmkube/namespaces";

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The kinds of namespace a pod's containers share besides the network.
pub const SHARED: [&str; 2] = ["ipc", "uts"];

/// The bound namespace of `kind` ("ipc" or "uts") of the pod with this uid.
pub fn path(uid: &str, kind: &str) -> PathBuf {
    Path::new(DIR).join(uid).join(kind)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> NamespaceError + '_ {
    move |source| NamespaceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Makes the pod's IPC and UTS namespaces, unless they are there already.
pub async fn create(uid: &str) -> Result<(), NamespaceError> {
    let dir = Path::new(DIR).join(uid);
    if SHARED.iter().all(|kind| is_mounted(&path(uid, kind))) {
        return Ok(());
    }
    remove(uid).await?;
    tokio::fs::create_dir_all(&dir).await.map_err(io(&dir))?;
    let mut args = Vec::new();
    for kind in SHARED {
        let file = path(uid, kind);
        tokio::fs::write(&file, b"").await.map_err(io(&file))?;
        args.push(format!("--{kind}={}", file.display()));
    }
    args.push("true".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run("unshare", &args).await?;
    Ok(())
}

/// Unbinds and deletes the pod's namespaces; safe to repeat.
pub async fn remove(uid: &str) -> Result<(), NamespaceError> {
    let dir = Path::new(DIR).join(uid);
    for kind in SHARED {
        let file = path(uid, kind);
        if is_mounted(&file) {
            run("umount", &[&file.display().to_string()]).await?;
        }
    }
    match tokio::fs::remove_dir_all(&dir).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&dir)(e)),
        _ => Ok(()),
    }
}
