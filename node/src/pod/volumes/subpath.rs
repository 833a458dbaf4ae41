//! `subPath` mounts pinned to what was resolved: the file opened beneath the volume is
//! bind-mounted to a private path of the pod before the runtime is given that path, so a
//! container that swaps a directory for a symlink after the check changes nothing (the
//! kubelet's `volume-subpaths`, its answer to the race left after CVE-2017-1002101).

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::mount::UnmountFlags;

use super::{VolumeError, io, is_mounted};

/// Where a pod's pinned subPaths are mounted, inside its private directory.
const DIR: &str = "volume-subpaths";

/// The private mount point of mount `index` of container `container` of volume `volume`
/// (both names checked DNS-1123 labels by the caller).
pub(super) fn point(pod_dir: &Path, volume: &str, container: &str, index: usize) -> PathBuf {
    pod_dir
        .join(DIR)
        .join(volume)
        .join(container)
        .join(index.to_string())
}

/// Bind-mounts the opened `target` (an `O_PATH` file or directory) on `point`, made as a file
/// or directory like it, replacing what an earlier start of the container mounted there.
pub(super) fn pin(target: &OwnedFd, point: &Path) -> Result<PathBuf, VolumeError> {
    let stat = rustix::fs::fstat(target).map_err(|e| VolumeError::Io {
        path: point.to_path_buf(),
        source: e.into(),
    })?;
    let directory = rustix::fs::FileType::from_raw_mode(stat.st_mode).is_dir();
    if let Some(parent) = point.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    if is_mounted(point) {
        unmount(point)?;
    }
    let made = if directory {
        std::fs::create_dir(point)
    } else {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(point)
            .map(drop)
    };
    match made {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(io(point)(e)),
        _ => {}
    }
    let source = format!("/proc/self/fd/{}", target.as_raw_fd());
    rustix::mount::mount_bind(source.as_str(), point).map_err(|e| VolumeError::Mount {
        path: point.to_path_buf(),
        message: format!("pinning the subPath: {e}"),
    })?;
    Ok(point.to_path_buf())
}

fn unmount(point: &Path) -> Result<(), VolumeError> {
    rustix::mount::unmount(point, UnmountFlags::DETACH).map_err(|e| VolumeError::Mount {
        path: point.to_path_buf(),
        message: format!("unmounting a pinned subPath: {e}"),
    })
}

/// Unmounts every pinned subPath of the pod. Returns whether none is left mounted.
pub(super) fn release(pod_dir: &Path) -> bool {
    let root = pod_dir.join(DIR);
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    let mut clear = true;
    for point in mounts.lines().filter_map(|l| l.split(' ').nth(1)) {
        let point = Path::new(point);
        if point.starts_with(&root) && unmount(point).is_err() {
            clear = false;
        }
    }
    clear
}

#[cfg(test)]
mod tests {
    use super::super::beneath::open_sub_path;
    use super::*;

    /// What is pinned stays what was checked: swapping the directory for a symlink to `/etc`
    /// afterwards changes nothing seen through the pin. Taking the pod down unmounts the pin
    /// before removing the pod's directory, so a host directory behind it keeps its files.
    /// (Mounts: needs root, as the node agent.)
    #[tokio::test]
    async fn a_pinned_sub_path_outlives_a_swap_and_is_released() {
        let root = tempfile::tempdir().expect("a temp dir");
        let host = root.path().join("host");
        std::fs::create_dir_all(host.join("data")).expect("dirs");
        std::fs::write(host.join("data/f"), "kept").expect("a file");
        let pod_dir = root.path().join("pod");
        let target = open_sub_path(&host, "data").expect("resolved");
        let point = point(&pod_dir, "vol", "main", 0);
        let pinned = pin(&target, &point).expect("pinned");
        std::fs::rename(host.join("data"), host.join("moved")).expect("renamed");
        std::os::unix::fs::symlink("/etc", host.join("data")).expect("a symlink");
        let seen = std::fs::read_to_string(pinned.join("f"));
        let again = pin(&target, &point).map(|_| is_mounted(&point));
        super::super::clean(&pod_dir).await;
        assert_eq!(seen.expect("read through the pin"), "kept");
        assert!(
            again.expect("pinned again"),
            "a second pin replaces the first"
        );
        assert!(!is_mounted(&point) && !pod_dir.exists());
        assert_eq!(
            std::fs::read_to_string(host.join("moved/f")).expect("the host's file"),
            "kept"
        );
    }
}
