//! Small files of an unpacked image (its `/etc/passwd`), read from the layer directories of a
//! snapshot's mount description without mounting it: top layer first, overlayfs whiteouts and
//! opaque directories honoured, no symlink followed, at most a bounded size.

use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use containerd_client::types::Mount;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// The most of a file that is read: an `/etc/passwd` is a few KiB.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// No step leaves the layer or follows a symlink (an image's `/etc -> /host/etc` stays unread).
const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// The extended attributes overlayfs marks an opaque directory with (as root, and with the
/// `userxattr` mount option).
const OPAQUE: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} in the image is a symlink, which is not followed")]
    Symlink { path: String },
    #[error("{path} in the image is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge { path: String },
    #[error("the image's root filesystem is a {kind:?} mount, neither bind nor overlay")]
    Mount { kind: String },
}

/// The directories of a root filesystem, top layer first: a bind mount's source, or an
/// overlay's `upperdir` then its `lowerdir` list.
pub fn layers(mounts: &[Mount]) -> Result<Vec<PathBuf>, FilesError> {
    let mut layers = Vec::new();
    for mount in mounts {
        match mount.r#type.as_str() {
            "bind" | "rbind" => layers.push(PathBuf::from(&mount.source)),
            "overlay" => {
                let option = |key: &str| {
                    mount
                        .options
                        .iter()
                        .find_map(|o| o.strip_prefix(key)?.strip_prefix('='))
                };
                layers.extend(option("upperdir").map(PathBuf::from));
                let lower = option("lowerdir").unwrap_or_default();
                layers.extend(
                    lower
                        .split(':')
                        .filter(|d| !d.is_empty())
                        .map(PathBuf::from),
                );
            }
            kind => {
                return Err(FilesError::Mount {
                    kind: kind.to_string(),
                });
            }
        }
    }
    Ok(layers)
}

/// What one layer says about a path.
enum Found {
    /// The file's bytes.
    File(Vec<u8>),
    /// Deleted here (a whiteout, or a non-directory where a directory of the path would be):
    /// lower layers do not count.
    Gone,
    /// Not in this layer; lower layers count unless a directory on the way was opaque.
    Absent { opaque: bool },
}

/// The bytes of the file at `path` (absolute, in the image) in the merged view of `layers`;
/// `None` when it does not exist.
pub fn read(layers: &[PathBuf], path: &str) -> Result<Option<Vec<u8>>, FilesError> {
    let elements: Vec<&OsStr> = Path::new(path)
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(name) => Some(name),
            _ => None,
        })
        .collect();
    for layer in layers {
        match in_layer(layer, &elements, path)? {
            Found::File(bytes) => return Ok(Some(bytes)),
            Found::Gone | Found::Absent { opaque: true } => return Ok(None),
            Found::Absent { opaque: false } => {}
        }
    }
    Ok(None)
}

fn in_layer(layer: &Path, elements: &[&OsStr], path: &str) -> Result<Found, FilesError> {
    let io = |source: Errno| FilesError::Io {
        path: layer.join(path.trim_start_matches('/')),
        source: source.into(),
    };
    let Some((last, dirs)) = elements.split_last() else {
        return Ok(Found::Gone);
    };
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut dir = match rustix::fs::open(layer, flags, Mode::empty()) {
        Err(Errno::NOENT) => return Ok(Found::Absent { opaque: false }),
        other => other.map_err(io)?,
    };
    let mut opaque = is_opaque(&dir);
    for name in dirs {
        match kind(&dir, name).map_err(io)? {
            None => return Ok(Found::Absent { opaque }),
            Some(FileType::Directory) => {
                dir =
                    rustix::fs::openat2(&dir, *name, flags, Mode::empty(), RESOLVE).map_err(io)?;
                opaque |= is_opaque(&dir);
            }
            Some(FileType::Symlink) => return Err(symlink(path)),
            // A whiteout, or a file where the path needs a directory.
            Some(_) => return Ok(Found::Gone),
        }
    }
    match kind(&dir, last).map_err(io)? {
        None => Ok(Found::Absent { opaque }),
        Some(FileType::RegularFile) => read_file(&dir, last, path).map(Found::File),
        Some(FileType::Symlink) => Err(symlink(path)),
        Some(_) => Ok(Found::Gone),
    }
}

fn symlink(path: &str) -> FilesError {
    FilesError::Symlink {
        path: path.to_string(),
    }
}

/// The type of `name` in `dir` (not following a symlink), `None` when it is not there.
fn kind(dir: &OwnedFd, name: &OsStr) -> Result<Option<FileType>, Errno> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some(FileType::from_raw_mode(stat.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

fn is_opaque(dir: &OwnedFd) -> bool {
    OPAQUE.iter().any(|name| {
        let mut value = [0u8; 4];
        matches!(rustix::fs::fgetxattr(dir, *name, &mut value), Ok(1) if value[0] == b'y')
    })
}

fn read_file(dir: &OwnedFd, name: &OsStr, path: &str) -> Result<Vec<u8>, FilesError> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let failed = |source: std::io::Error| FilesError::Io {
        path: PathBuf::from(path),
        source,
    };
    let fd = rustix::fs::openat2(dir, name, flags, Mode::empty(), RESOLVE)
        .map_err(|e| failed(e.into()))?;
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(failed)?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_FILE_BYTES {
        return Err(FilesError::TooLarge {
            path: path.to_string(),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink as make_symlink;

    use super::*;

    fn mount(kind: &str, source: &str, options: &[&str]) -> Mount {
        Mount {
            r#type: kind.into(),
            source: source.into(),
            options: options.iter().map(|o| o.to_string()).collect(),
            ..Mount::default()
        }
    }

    #[test]
    fn layers_come_from_bind_and_overlay_mounts_top_first() {
        let bind = layers(&[mount("bind", "/s/1/fs", &["ro", "rbind"])]).expect("a bind");
        assert_eq!(bind, [PathBuf::from("/s/1/fs")]);
        let overlay = mount(
            "overlay",
            "overlay",
            &[
                "index=off",
                "workdir=/s/4/work",
                "upperdir=/s/4/fs",
                "lowerdir=/s/3/fs:/s/2/fs",
            ],
        );
        let got = layers(&[overlay]).expect("an overlay");
        let want: Vec<PathBuf> = ["/s/4/fs", "/s/3/fs", "/s/2/fs"]
            .map(PathBuf::from)
            .to_vec();
        assert_eq!(got, want);
        assert!(matches!(
            layers(&[mount("nfs", "x", &[])]),
            Err(FilesError::Mount { .. })
        ));
    }

    /// Three layers, top first, as the overlayfs snapshotter lays them out.
    fn stack() -> (tempfile::TempDir, Vec<PathBuf>) {
        let root = tempfile::tempdir().expect("a temp dir");
        let layers: Vec<PathBuf> = ["top", "middle", "bottom"]
            .iter()
            .map(|l| root.path().join(l))
            .collect();
        for layer in &layers {
            std::fs::create_dir_all(layer.join("etc")).expect("etc");
        }
        (root, layers)
    }

    fn whiteout(path: &Path) {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            FileType::CharacterDevice,
            Mode::from_raw_mode(0),
            0,
        )
        .expect("a whiteout (needs root, as the node agent)");
    }

    #[test]
    fn the_top_layer_wins_and_lower_ones_show_through() {
        let (_root, layers) = stack();
        std::fs::write(layers[2].join("etc/passwd"), "old").expect("written");
        std::fs::write(layers[2].join("etc/group"), "g").expect("written");
        std::fs::write(layers[1].join("etc/passwd"), "new").expect("written");
        assert_eq!(
            read(&layers, "/etc/passwd").expect("read"),
            Some(b"new".to_vec())
        );
        assert_eq!(
            read(&layers, "/etc/group").expect("read"),
            Some(b"g".to_vec())
        );
        assert_eq!(read(&layers, "/etc/shadow").expect("read"), None);
        assert_eq!(read(&layers, "/nowhere/x").expect("read"), None);
    }

    #[test]
    fn whiteouts_and_opaque_directories_hide_lower_layers() {
        let (_root, layers) = stack();
        std::fs::write(layers[2].join("etc/passwd"), "old").expect("written");
        std::fs::write(layers[2].join("etc/group"), "old").expect("written");
        whiteout(&layers[0].join("etc/passwd"));
        assert_eq!(read(&layers, "/etc/passwd").expect("read"), None);
        rustix::fs::setxattr(
            layers[1].join("etc"),
            "trusted.overlay.opaque",
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .expect("an opaque directory (needs root)");
        assert_eq!(read(&layers, "/etc/group").expect("read"), None);
        // A whole directory whited out.
        let (_root, layers) = stack();
        std::fs::write(layers[1].join("etc/group"), "old").expect("written");
        std::fs::remove_dir(layers[0].join("etc")).expect("removed");
        whiteout(&layers[0].join("etc"));
        assert_eq!(read(&layers, "/etc/group").expect("read"), None);
    }

    #[test]
    fn symlinks_are_not_followed_and_size_is_bounded() {
        let (root, layers) = stack();
        let secret = root.path().join("host-secret");
        std::fs::write(&secret, "host").expect("written");
        make_symlink(&secret, layers[0].join("etc/passwd")).expect("a symlink");
        assert!(matches!(
            read(&layers, "/etc/passwd"),
            Err(FilesError::Symlink { .. })
        ));
        std::fs::remove_dir(layers[1].join("etc")).expect("removed");
        make_symlink(root.path(), layers[1].join("etc")).expect("a symlink");
        assert!(matches!(
            read(&layers[1..], "/etc/group"),
            Err(FilesError::Symlink { .. })
        ));
        let big = vec![b'x'; usize::try_from(MAX_FILE_BYTES).expect("fits") + 1];
        std::fs::write(layers[2].join("etc/group"), big).expect("written");
        assert!(matches!(
            read(&layers[2..], "/etc/group"),
            Err(FilesError::TooLarge { .. })
        ));
    }
}
