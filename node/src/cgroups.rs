//! The pods' cgroups: where each container's goes, the pod's own pids limit, what a
//! container's OOM counter says, and removing a pod's parent cgroup once its containers are gone
//! (runc removes only the container's own).

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("limiting the pod's processes in {path}: {source}")]
    Limit {
        path: PathBuf,
        source: std::io::Error,
    },
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

/// Caps the processes of all the pod's containers together at `max` (the kubelet's
/// `--pod-max-pids` is per pod): the pod's cgroup is made before its containers', in the pids
/// hierarchy (v1) or the unified one (v2, with the pids controller enabled down to it).
pub fn limit_pod_pids(pod_uid: &str, max: i64) -> Result<(), CgroupError> {
    let v1 = Path::new(ROOT).join("pids");
    let unified = !v1.exists();
    let base = if unified {
        Path::new(ROOT).to_path_buf()
    } else {
        v1
    };
    let pod = base.join("wasmkube").join(format!("pod{pod_uid}"));
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CgroupError::Limit { path, source }
    };
    std::fs::create_dir_all(&pod).map_err(fail(&pod))?;
    if unified {
        for parent in [base.clone(), base.join("wasmkube")] {
            let control = parent.join("cgroup.subtree_control");
            std::fs::write(&control, "+pids").map_err(fail(&control))?;
        }
    }
    let file = pod.join("pids.max");
    std::fs::write(&file, max.to_string()).map_err(fail(&file))
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
