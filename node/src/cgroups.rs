//! The pods' cgroups: where each container's goes, what its OOM counter says, and removing a
//! pod's parent cgroup once its containers are gone (runc removes only the container's own).

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("removing the pod cgroup {path}: {source}")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where cgroupfs is mounted: one hierarchy (v2) or one per controller (v1).
const ROOT: &str = "/sys/fs/cgroup";

/// The `cgroupsPath` of a pod's container: `/wasmkube/pod<uid>/<container id>`.
pub fn container_path(pod_uid: &str, container_id: &str) -> String {
    format!("/wasmkube/pod{pod_uid}/{container_id}")
}

/// Whether the container's memory cgroup saw the OOM killer (cgroup v1 or v2).
pub fn oom_killed(cgroups_path: &str) -> bool {
    let relative = cgroups_path.trim_start_matches('/');
    let counters = [
        Path::new(ROOT)
            .join("memory")
            .join(relative)
            .join("memory.oom_control"),
        Path::new(ROOT).join(relative).join("memory.events"),
    ];
    counters.iter().any(|path| {
        std::fs::read_to_string(path).is_ok_and(|text| {
            text.lines().any(|line| {
                line.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            })
        })
    })
}

/// Removes the pod's cgroup from every hierarchy it is in; one still holding a container's
/// cgroup or a process stays, and the error says so.
pub fn remove_pod(pod_uid: &str) -> Result<(), CgroupError> {
    let relative = format!("wasmkube/pod{pod_uid}");
    let mut dirs: Vec<PathBuf> = vec![Path::new(ROOT).join(&relative)];
    if let Ok(controllers) = std::fs::read_dir(ROOT) {
        dirs.extend(controllers.flatten().map(|c| c.path().join(&relative)));
    }
    for dir in dirs {
        match std::fs::remove_dir(&dir) {
            Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                return Err(CgroupError::Remove { path: dir, source });
            }
            _ => {}
        }
    }
    Ok(())
}
