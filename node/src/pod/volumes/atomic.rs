//! The kubelet's atomic writer (`pkg/volume/util/atomic_writer.go`) for configMap, secret,
//! downwardAPI and projected volumes: the files in a timestamped directory `..<time>`,
//! published by renaming a new `..data` symlink over the old one, and each top-level name a
//! symlink `name -> ..data/name`, so a reader that resolves `..data` once sees one whole set.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::{Files, VolumeError, beneath, io};

/// The symlink to the directory of the current files.
pub const DATA: &str = "..data";
/// The new `..data` before it is renamed over the old one.
const DATA_TMP: &str = "..data_tmp";
/// The longest path and file name the kubelet's `validatePath` takes.
const MAX_PATH: usize = 4096;
const MAX_NAME: usize = 255;
/// The mode of a timestamped directory, as the kubelet sets it.
const DATA_DIR_MODE: u32 = 0o755;

/// A payload path as the kubelet's `validatePath` takes it (relative, no `..` element, at most
/// 4096 bytes, names of at most 255), and not starting with `..`: the writer's own names
/// (`..data`, the timestamped directories) cannot be overwritten or shadowed by a key. The
/// path with `.` elements dropped.
fn validate(path: &str) -> Result<String, VolumeError> {
    let refuse = |reason| VolumeError::Path {
        path: path.to_string(),
        reason,
    };
    if path.len() > MAX_PATH {
        return Err(refuse("must be less than or equal to 4096 characters"));
    }
    let elements = beneath::elements(path)?;
    if elements.iter().any(|e| e.len() > MAX_NAME) {
        return Err(refuse("has a file name longer than 255 characters"));
    }
    if elements
        .first()
        .is_some_and(|e| e.as_bytes().starts_with(b".."))
    {
        return Err(refuse("must not start with '..'"));
    }
    let parts: Vec<&str> = elements.iter().filter_map(|e| e.to_str()).collect();
    Ok(parts.join("/"))
}

/// `files` with every path validated and normalised.
fn normalised(files: &Files) -> Result<Files, VolumeError> {
    files
        .iter()
        .map(|(path, file)| Ok((validate(path)?, file.clone())))
        .collect()
}

/// The directory `..data` points to: a single name of the writer's own (`..` first), never a
/// path leading elsewhere.
fn data_dir(dir: &Path) -> Result<Option<PathBuf>, VolumeError> {
    let link = dir.join(DATA);
    let target = match std::fs::read_link(&link) {
        Ok(target) => target,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // Not a symlink: nothing this writer published.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => return Ok(None),
        Err(e) => return Err(io(&link)(e)),
    };
    let mut components = target.components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(name)), None) if own_name(name) => Ok(Some(dir.join(name))),
        _ => Ok(None),
    }
}

/// A timestamped directory's name: `..` first, but neither `..` itself nor a symlink's name.
fn own_name(name: &OsStr) -> bool {
    name.as_bytes().starts_with(b"..") && name != ".." && name != DATA && name != DATA_TMP
}

/// The directory of the files a subPath of the volume at `dir` is resolved in: the one
/// `..data` points to now (a subPath mount keeps it, as in Kubernetes: it is not updated).
pub(super) fn sub_path_base(dir: &Path) -> Result<PathBuf, VolumeError> {
    data_dir(dir)?.ok_or_else(|| VolumeError::Path {
        path: DATA.to_string(),
        reason: "is not published in the volume yet",
    })
}

/// Whether the volume at `dir` would show something else than `files`: true when it has
/// never been written.
pub(super) fn changed(dir: &Path, files: &Files) -> Result<bool, VolumeError> {
    let wanted = normalised(files)?;
    let Some(data) = data_dir(dir)? else {
        return Ok(true);
    };
    let mut current = Files::new();
    read_tree(&data, "", &mut current)?;
    Ok(current != wanted)
}

/// The files under `root/prefix`, their modes' permission bits; symlinks are not followed.
fn read_tree(root: &Path, prefix: &str, files: &mut Files) -> Result<(), VolumeError> {
    use std::os::unix::fs::PermissionsExt;
    let here = root.join(prefix);
    for entry in std::fs::read_dir(&here).map_err(io(&here))? {
        let entry = entry.map_err(io(&here))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let relative = match prefix {
            "" => name,
            _ => format!("{prefix}/{name}"),
        };
        let path = entry.path();
        let kind = entry.file_type().map_err(io(&path))?;
        if kind.is_dir() {
            read_tree(root, &relative, files)?;
        } else if kind.is_file() {
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            let meta = entry.metadata().map_err(io(&path))?;
            files.insert(relative, (bytes, meta.permissions().mode() & 0o777));
        }
    }
    Ok(())
}

/// Publishes `files` in the volume at `dir` (which exists): written into a new timestamped
/// directory, then `..data` swapped to it with a rename, the top-level symlinks made, and what
/// the old set had (its directory, names it no longer has) removed. A failure before the swap
/// leaves the old set as it was.
pub(super) fn write(dir: &Path, files: &Files) -> Result<(), VolumeError> {
    let files = normalised(files)?;
    let fresh = data_dir_for_now(dir)?;
    let written = files
        .iter()
        .try_for_each(|(path, (bytes, mode))| beneath::write_file(&fresh, path, bytes, *mode));
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&fresh);
        return Err(e);
    }
    let name = fresh
        .file_name()
        .map(Path::new)
        .ok_or_else(|| io(&fresh)(std::io::ErrorKind::InvalidInput.into()))?;
    let (data, data_tmp) = (dir.join(DATA), dir.join(DATA_TMP));
    remove_entry(&data_tmp)?;
    std::os::unix::fs::symlink(name, &data_tmp).map_err(io(&data_tmp))?;
    if std::fs::symlink_metadata(&data).is_ok_and(|m| !m.file_type().is_symlink()) {
        remove_entry(&data)?;
    }
    std::fs::rename(&data_tmp, &data).map_err(io(&data))?;
    let visible: BTreeSet<&str> = files
        .keys()
        .filter_map(|path| path.split('/').next())
        .collect();
    for top in &visible {
        link_visible(dir, top)?;
    }
    // Old timestamped directories, an interrupted write's leftovers, names no longer shown.
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let entry_name = entry.file_name();
        let keep = entry_name == DATA
            || entry_name == name.as_os_str()
            || entry_name.to_str().is_some_and(|n| visible.contains(n));
        if !keep {
            remove_entry(&entry.path())?;
        }
    }
    Ok(())
}

/// Makes `dir/top` the symlink `..data/top`, replacing whatever else is there (a file of the
/// layout before this writer).
fn link_visible(dir: &Path, top: &str) -> Result<(), VolumeError> {
    let path = dir.join(top);
    let target = Path::new(DATA).join(top);
    if std::fs::read_link(&path).is_ok_and(|t| t == target) {
        return Ok(());
    }
    remove_entry(&path)?;
    std::os::unix::fs::symlink(&target, &path).map_err(io(&path))
}

/// Removes `path` whatever it is, a directory with what it holds; a symlink is removed itself,
/// never followed.
fn remove_entry(path: &Path) -> Result<(), VolumeError> {
    let removed = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.file_type().is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
    };
    removed.map_err(io(path))
}

/// A new, empty timestamped directory in `dir`, named as the kubelet names them
/// (`..2006_01_02_15_04_05.` and a unique tail: here the nanoseconds).
fn data_dir_for_now(dir: &Path) -> Result<PathBuf, VolumeError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let mut tries = 0;
    loop {
        tries += 1;
        let name = chrono::Utc::now().format("..%Y_%m_%d_%H_%M_%S%.9f");
        let path = dir.join(name.to_string());
        match std::fs::DirBuilder::new().mode(DATA_DIR_MODE).create(&path) {
            Ok(()) => {
                let mode = std::fs::Permissions::from_mode(DATA_DIR_MODE);
                std::fs::set_permissions(&path, mode).map_err(io(&path))?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 3 => continue,
            Err(e) => return Err(io(&path)(e)),
        }
    }
}

#[cfg(test)]
mod tests;
