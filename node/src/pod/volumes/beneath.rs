//! Paths inside a volume, resolved beneath its root without following any symlink (the kubelet's
//! answer to CVE-2017-1002101), and files written there the same way.

use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::VolumeError;

/// Every step stays beneath the directory it starts from and follows no symlink at all.
const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// The mode of directories made on the way, as the kubelet's `SafeMakeDir`.
const DIR_MODE: u32 = 0o755;

/// The elements of a relative path from the pod spec (`subPath`, `items[].path`): refused when
/// empty, absolute or with a `..` element; `.` elements dropped.
pub(super) fn elements(path: &str) -> Result<Vec<&OsStr>, VolumeError> {
    let refuse = |reason| VolumeError::Path {
        path: path.to_string(),
        reason,
    };
    let mut elements = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(name) => elements.push(name),
            Component::CurDir => {}
            Component::ParentDir => return Err(refuse("must not contain '..'")),
            Component::RootDir | Component::Prefix(_) => return Err(refuse("must be relative")),
        }
    }
    if elements.is_empty() {
        return Err(refuse("must name something inside the volume"));
    }
    Ok(elements)
}

/// The volume's root, opened as a directory (its own path is the node's, trusted).
fn open_root(root: &Path) -> Result<OwnedFd, VolumeError> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    rustix::fs::open(root, flags, Mode::empty()).map_err(|e| errno(root, "", e))
}

/// One element beneath `dir`, made a directory first when it is missing and `create` is set;
/// a symlink is refused (`ELOOP`), not followed.
fn step(dir: &OwnedFd, name: &OsStr, directory: bool, create: bool) -> Result<OwnedFd, Errno> {
    // Not O_NOFOLLOW: with O_PATH it would open a trailing symlink itself instead of failing.
    let mut flags = OFlags::PATH | OFlags::CLOEXEC;
    if directory {
        flags |= OFlags::DIRECTORY;
    }
    let open = || rustix::fs::openat2(dir, name, flags, Mode::empty(), RESOLVE);
    match open() {
        Err(Errno::NOENT) if create => {
            match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(DIR_MODE)) {
                Ok(()) | Err(Errno::EXIST) => open(),
                Err(e) => Err(e),
            }
        }
        other => other,
    }
}

/// The directory holding the last element of `elements` beneath `root`, made as needed.
fn parent(root: OwnedFd, elements: &[&OsStr]) -> Result<OwnedFd, Errno> {
    let mut dir = root;
    for name in elements {
        dir = step(&dir, name, true, true)?;
    }
    Ok(dir)
}

fn errno(root: &Path, path: &str, e: Errno) -> VolumeError {
    match e {
        Errno::LOOP => VolumeError::Path {
            path: path.to_string(),
            reason: "crosses a symlink",
        },
        Errno::XDEV => VolumeError::Path {
            path: path.to_string(),
            reason: "leaves the volume",
        },
        e => VolumeError::Io {
            path: root.join(path),
            source: e.into(),
        },
    }
}

/// `subPath` `sub` of the volume at `root`, opened (`O_PATH`), missing directories made as the
/// kubelet makes them. Resolved element by element with `openat2` beneath the root, refusing
/// any symlink, so that a container cannot point a later container's mount outside the volume
/// (an init container's `escape -> /` in an emptyDir).
pub(super) fn open_sub_path(root: &Path, sub: &str) -> Result<OwnedFd, VolumeError> {
    let elements = elements(sub)?;
    let (last, dirs) = elements
        .split_last()
        .ok_or_else(|| errno(root, sub, Errno::INVAL))?;
    let dir = parent(open_root(root)?, dirs).map_err(|e| errno(root, sub, e))?;
    step(&dir, last, false, true).map_err(|e| errno(root, sub, e))
}

/// The host path of `subPath` `sub` of the volume at `root` ([`open_sub_path`]): the kernel's
/// own name for the opened file (`/proc/self/fd/N`), checked to lie under the root. The
/// runtime is given the pinned mount of it instead (`subpath::pin`), since a container sharing
/// the volume could swap a directory on this path for a symlink before the runtime mounts it.
pub(super) fn sub_path(root: &Path, sub: &str) -> Result<PathBuf, VolumeError> {
    let target = open_sub_path(root, sub)?;
    let fd = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&target));
    let resolved = std::fs::read_link(&fd).map_err(|source| VolumeError::Io {
        path: root.join(sub),
        source,
    })?;
    let root = std::fs::canonicalize(root).map_err(|source| VolumeError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    if !resolved.starts_with(&root) {
        return Err(VolumeError::Path {
            path: sub.to_string(),
            reason: "leaves the volume",
        });
    }
    Ok(resolved)
}

/// Writes `bytes` with `mode` to `path` (checked with [`elements`]) beneath `root`: into a
/// temporary file then renamed over the name, so a reader sees the old file or the new one;
/// no symlink is followed on the way, and the file never lands outside the volume.
pub(super) fn write_file(
    root: &Path,
    path: &str,
    bytes: &[u8],
    mode: u32,
) -> Result<(), VolumeError> {
    let elements = elements(path)?;
    let (name, dirs) = elements
        .split_last()
        .ok_or_else(|| errno(root, path, Errno::INVAL))?;
    let failed = |e| errno(root, path, e);
    let dir = parent(open_root(root)?, dirs).map_err(failed)?;
    // `..` starts no key the apiserver accepts, so the temporary name cannot be a file's.
    let mut temp = std::ffi::OsString::from("..");
    temp.push(name);
    temp.push(".tmp");
    let _ = rustix::fs::unlinkat(&dir, &temp, rustix::fs::AtFlags::empty());
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mode = Mode::from_raw_mode(mode & 0o777);
    let fd = rustix::fs::openat2(&dir, &temp, flags, mode, RESOLVE).map_err(failed)?;
    // The umask is not the volume's business: the mode asked for is the mode set.
    rustix::fs::fchmod(&fd, mode).map_err(failed)?;
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes).map_err(|source| VolumeError::Io {
        path: root.join(path),
        source,
    })?;
    rustix::fs::renameat(&dir, &temp, &dir, *name).map_err(failed)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    fn refused(result: Result<impl std::fmt::Debug, VolumeError>, why: &str) -> bool {
        matches!(result, Err(VolumeError::Path { reason, .. }) if reason == why)
    }

    #[test]
    fn sub_paths_stay_beneath_the_volume() {
        let root = tempfile::tempdir().expect("a temp dir");
        let outside = tempfile::tempdir().expect("a temp dir");
        symlink(outside.path(), root.path().join("escape")).expect("a symlink");
        symlink("/", root.path().join("slash")).expect("a symlink");
        std::fs::create_dir(root.path().join("d")).expect("a dir");
        symlink("..", root.path().join("d/up")).expect("a symlink");
        std::fs::write(root.path().join("f"), b"x").expect("a file");
        let canonical = std::fs::canonicalize(root.path()).expect("canonical");

        assert!(refused(
            sub_path(root.path(), "escape"),
            "crosses a symlink"
        ));
        assert!(refused(sub_path(root.path(), "slash"), "crosses a symlink"));
        assert!(refused(
            sub_path(root.path(), "escape/x"),
            "crosses a symlink"
        ));
        assert!(refused(sub_path(root.path(), "d/up"), "crosses a symlink"));
        assert!(refused(
            sub_path(root.path(), "../x"),
            "must not contain '..'"
        ));
        assert!(refused(
            sub_path(root.path(), "d/../../x"),
            "must not contain '..'"
        ));
        assert!(refused(sub_path(root.path(), "/etc"), "must be relative"));
        assert!(!outside.path().join("x").exists());

        let made = sub_path(root.path(), "a/./b").expect("made");
        assert_eq!(made, canonical.join("a/b"));
        assert!(made.is_dir());
        let file = sub_path(root.path(), "f").expect("a file");
        assert_eq!(file, canonical.join("f"));
    }

    #[test]
    fn files_are_written_beneath_with_their_mode() {
        let root = tempfile::tempdir().expect("a temp dir");
        let outside = tempfile::tempdir().expect("a temp dir");
        symlink(outside.path(), root.path().join("link")).expect("a symlink");
        symlink(outside.path().join("target"), root.path().join("dangling")).expect("a symlink");

        assert!(refused(
            write_file(root.path(), "../evil", b"x", 0o644),
            "must not contain '..'"
        ));
        assert!(refused(
            write_file(root.path(), "/evil", b"x", 0o644),
            "must be relative"
        ));
        assert!(refused(
            write_file(root.path(), "link/evil", b"x", 0o644),
            "crosses a symlink"
        ));
        assert_eq!(
            std::fs::read_dir(outside.path()).expect("listed").count(),
            0
        );
        // Over a symlink the rename replaces the link itself; nothing is written through it.
        write_file(root.path(), "dangling", b"y", 0o644).expect("written");
        assert!(!outside.path().join("target").exists());

        write_file(root.path(), "dir/key", b"secret", 0o400).expect("written");
        let path = root.path().join("dir/key");
        assert_eq!(std::fs::read(&path).expect("read"), b"secret");
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o400);
        write_file(root.path(), "dir/key", b"again", 0o644).expect("rewritten");
        assert_eq!(std::fs::read(&path).expect("read"), b"again");
    }
}
