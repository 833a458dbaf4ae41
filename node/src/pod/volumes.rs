//! A pod's volumes on the node: directories under the pod's own directory (0700, so no other
//! user of the host reaches them), filled from the API for configMap, secret, downwardAPI and
//! projected; secret and projected volumes and emptyDir of medium Memory are a tmpfs (secrets
//! never touch the disk, as with the kubelet); hostPath and persistentVolumeClaim volumes are
//! directories of the host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, KeyToPath, Pod, Volume};
use wasmkube_model::validation::is_dns1123_label;

use crate::container::Sources;
use crate::spec::Bind;

mod beneath;

/// The files of a volume: path in the volume → bytes and mode.
type Files = BTreeMap<String, (Vec<u8>, u32)>;

/// The mode of a volume's files when the pod asks for none (Kubernetes' `defaultMode`).
const DEFAULT_MODE: i32 = 0o644;

/// The mode of the pod's directory and of its `volumes` directory: the host's other users
/// cannot read what the pod's volumes hold.
const POD_DIR_MODE: u32 = 0o700;

/// The most a secret (or projected) volume's tmpfs may hold: it is sized to its files (plus
/// [`TMPFS_SLACK`] and a page per file), at most this.
pub const MAX_SECRET_VOLUME_BYTES: u64 = 64 << 20;

/// Room on a secret volume's tmpfs beyond its files: the temporary file of an update.
const TMPFS_SLACK: u64 = 1 << 20;

/// A mode from the pod spec: its permission bits only.
fn mode(mode: Option<i32>, default: Option<i32>) -> u32 {
    let mode = mode.or(default).unwrap_or(DEFAULT_MODE);
    u32::try_from(mode).unwrap_or(0o644) & 0o777
}

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mounting a tmpfs at {path}: {message}")]
    Mount { path: PathBuf, message: String },
    #[error("the files of the volume take {bytes} bytes, more than {MAX_SECRET_VOLUME_BYTES}")]
    TooLarge { bytes: u64 },
    #[error("configmap {0:?} not found")]
    ConfigMapMissing(String),
    #[error("secret {0:?} not found")]
    SecretMissing(String),
    #[error("volume {volume}: {message}")]
    Unsupported { volume: String, message: String },
    #[error("persistentvolumeclaim {0:?} has no volume on this node yet")]
    ClaimUnresolved(String),
    #[error("MountVolume.SetUp failed for volume {volume:?} : {source}")]
    SetUp {
        volume: String,
        source: Box<VolumeError>,
    },
    #[error("container {container} mounts volume {volume:?}, which the pod does not have")]
    NoSuchVolume { container: String, volume: String },
    #[error("volume name {0:?} is not a DNS-1123 label")]
    VolumeName(String),
    #[error("path {path:?} {reason}")]
    Path { path: String, reason: &'static str },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The host directory a volume is served from; the name must be a DNS-1123 label (no `/`, no
/// `..`), whatever the apiserver let through.
fn volume_dir(pod_dir: &Path, name: &str) -> Result<PathBuf, VolumeError> {
    if !is_dns1123_label(name) {
        return Err(VolumeError::VolumeName(name.to_string()));
    }
    Ok(pod_dir.join("volumes").join(name))
}

/// Writes `files` into `dir`, replacing what was there. Every path is checked first (relative,
/// no `..`); the directory itself is kept, as containers of the pod may have it mounted; each
/// file is written beneath it without following a symlink, then renamed into place.
fn write_files(dir: &Path, files: &Files) -> Result<(), VolumeError> {
    for relative in files.keys() {
        beneath::elements(relative)?;
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        // `file_type` is the entry's own: a symlink is removed, never followed.
        let removed = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        removed.map_err(io(&path))?;
    }
    for (relative, (bytes, mode)) in files {
        beneath::write_file(dir, relative, bytes, *mode)?;
    }
    Ok(())
}

/// The files of a key/value source: every key, or just `items` mapped to their paths, with
/// the item's mode or `default_mode`. The values are written as they are (a Secret's were
/// decoded once, when read from the API).
fn project<V: AsRef<[u8]>>(
    data: &BTreeMap<String, V>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: Option<i32>,
    files: &mut Files,
) {
    match items {
        Some(items) => {
            for item in items {
                if let Some(value) = data.get(&item.key) {
                    let file = (value.as_ref().to_vec(), mode(item.mode, default_mode));
                    files.insert(item.path.clone(), file);
                }
            }
        }
        None => {
            for (key, value) in data {
                let file = (value.as_ref().to_vec(), mode(None, default_mode));
                files.insert(key.clone(), file);
            }
        }
    }
}

/// The files of downward API `items`.
fn downward_files(
    pod: &Pod,
    items: Option<&Vec<DownwardAPIVolumeFile>>,
    default_mode: Option<i32>,
    files: &mut Files,
) {
    for item in items.into_iter().flatten() {
        if let Some(field) = &item.field_ref {
            let bytes = downward(pod, &field.field_path).into_bytes();
            files.insert(item.path.clone(), (bytes, mode(item.mode, default_mode)));
        }
    }
}

/// The value of a downward API `fieldRef` for a file.
fn downward(pod: &Pod, path: &str) -> String {
    let render = |map: &Option<BTreeMap<String, String>>| {
        map.iter()
            .flatten()
            .map(|(k, v)| format!("{k}=\"{v}\"\n"))
            .collect::<String>()
    };
    match path {
        "metadata.labels" => render(&pod.metadata.labels),
        "metadata.annotations" => render(&pod.metadata.annotations),
        "metadata.name" => pod.metadata.name.clone().unwrap_or_default(),
        "metadata.namespace" => pod.metadata.namespace.clone().unwrap_or_default(),
        "metadata.uid" => pod.metadata.uid.clone().unwrap_or_default(),
        _ => String::new(),
    }
}

/// Prepares every volume of the pod under `pod_dir`.
pub async fn prepare(pod: &Pod, pod_dir: &Path, sources: &Sources) -> Result<(), VolumeError> {
    use std::os::unix::fs::DirBuilderExt;
    let volumes_dir = pod_dir.join("volumes");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(POD_DIR_MODE)
        .create(&volumes_dir)
        .map_err(io(&volumes_dir))?;
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    for volume in &volumes {
        prepare_one(pod, pod_dir, sources, volume)
            .await
            .map_err(|source| VolumeError::SetUp {
                volume: volume.name.clone(),
                source: Box::new(source),
            })?;
    }
    Ok(())
}

async fn prepare_one(
    pod: &Pod,
    pod_dir: &Path,
    sources: &Sources,
    volume: &Volume,
) -> Result<(), VolumeError> {
    let dir = volume_dir(pod_dir, &volume.name)?;
    let mut files = BTreeMap::new();
    if let Some(empty) = &volume.empty_dir {
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        if empty.medium.as_deref() == Some("Memory") && !is_mounted(&dir) {
            let size = empty
                .size_limit
                .as_ref()
                .map(|limit| format!("size={}", limit.0));
            tmpfs(&dir, size.into_iter().collect(), false).await?;
        }
        return Ok(());
    }
    if let Some(host) = &volume.host_path {
        let path = Path::new(&host.path);
        match host.type_.as_deref() {
            Some("DirectoryOrCreate") => std::fs::create_dir_all(path).map_err(io(path))?,
            Some("FileOrCreate") if !path.exists() => {
                std::fs::write(path, b"").map_err(io(path))?
            }
            Some("Directory") if !path.is_dir() => {
                return Err(VolumeError::Unsupported {
                    volume: volume.name.clone(),
                    message: format!(
                        "hostPath type check failed: {} is not a directory",
                        host.path
                    ),
                });
            }
            _ => {}
        }
        return Ok(());
    }
    if let Some(claim) = &volume.persistent_volume_claim {
        let dir = claim_dir(sources, &claim.claim_name)?;
        if !dir.is_dir() {
            return Err(VolumeError::Unsupported {
                volume: volume.name.clone(),
                message: format!(
                    "{} of persistentvolumeclaim {:?} is not a directory",
                    dir.display(),
                    claim.claim_name
                ),
            });
        }
        return Ok(());
    }
    if let Some(source) = &volume.config_map {
        match sources
            .config_maps
            .get(&source.name)
            .and_then(Option::as_ref)
        {
            Some(data) => project(data, source.items.as_ref(), source.default_mode, &mut files),
            None if source.optional == Some(true) => {}
            None => return Err(VolumeError::ConfigMapMissing(source.name.clone())),
        }
    } else if let Some(source) = &volume.secret {
        let name = source.secret_name.clone().unwrap_or_default();
        match sources.secrets.get(&name).and_then(Option::as_ref) {
            Some(data) => project(data, source.items.as_ref(), source.default_mode, &mut files),
            None if source.optional == Some(true) => {}
            None => return Err(VolumeError::SecretMissing(name)),
        }
    } else if let Some(source) = &volume.downward_api {
        downward_files(pod, source.items.as_ref(), source.default_mode, &mut files);
    } else if let Some(projected) = &volume.projected {
        for source in projected.sources.iter().flatten() {
            if let Some(c) = &source.config_map {
                match sources.config_maps.get(&c.name).and_then(Option::as_ref) {
                    Some(data) => {
                        project(data, c.items.as_ref(), projected.default_mode, &mut files)
                    }
                    None if c.optional == Some(true) => {}
                    None => return Err(VolumeError::ConfigMapMissing(c.name.clone())),
                }
            }
            if let Some(s) = &source.secret {
                match sources.secrets.get(&s.name).and_then(Option::as_ref) {
                    Some(data) => {
                        project(data, s.items.as_ref(), projected.default_mode, &mut files)
                    }
                    None if s.optional == Some(true) => {}
                    None => return Err(VolumeError::SecretMissing(s.name.clone())),
                }
            }
            if let Some(d) = &source.downward_api {
                downward_files(pod, d.items.as_ref(), projected.default_mode, &mut files);
            }
        }
    } else {
        return Err(VolumeError::Unsupported {
            volume: volume.name.clone(),
            message: "only emptyDir, hostPath, persistentVolumeClaim, configMap, secret, downwardAPI and projected volumes are supported on this node".into(),
        });
    }
    if volume.secret.is_some() || volume.projected.is_some() {
        // Projected volumes carry secrets and service account tokens too.
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        // Read-only in the containers, traversable by their users whoever they run as.
        let options = vec![
            "mode=0755".to_string(),
            format!("size={}", secret_tmpfs_size(&files)?),
        ];
        tmpfs(&dir, options, is_mounted(&dir)).await?;
    }
    write_files(&dir, &files)
}

/// The size of a secret volume's tmpfs for `files`: their bytes, a page each and
/// [`TMPFS_SLACK`]; refused past [`MAX_SECRET_VOLUME_BYTES`].
fn secret_tmpfs_size(files: &Files) -> Result<u64, VolumeError> {
    const PAGE: u64 = 4096;
    let bytes = files.values().fold(TMPFS_SLACK, |sum, (data, _)| {
        let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
        sum.saturating_add(len).saturating_add(PAGE)
    });
    if bytes > MAX_SECRET_VOLUME_BYTES {
        return Err(VolumeError::TooLarge { bytes });
    }
    Ok(bytes)
}

/// Mounts a tmpfs with `options` (`size=`, `mode=`) at `dir`, no set-uid files or device nodes
/// honoured; with `remount`, changes the options of the one there (a secret grown).
async fn tmpfs(dir: &Path, extra: Vec<String>, remount: bool) -> Result<(), VolumeError> {
    let mut options = vec!["nosuid".to_string(), "nodev".into()];
    if remount {
        options.insert(0, "remount".into());
    }
    options.extend(extra);
    let output = tokio::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &options.join(",")])
        .args(["tmpfs".as_ref(), dir.as_os_str()])
        .output()
        .await
        .map_err(io(dir))?;
    if !output.status.success() {
        return Err(VolumeError::Mount {
            path: dir.to_path_buf(),
            message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// The host directory of a claim's volume, as the pod's sources found it.
fn claim_dir<'a>(sources: &'a Sources, claim: &str) -> Result<&'a PathBuf, VolumeError> {
    sources
        .claims
        .get(claim)
        .ok_or_else(|| VolumeError::ClaimUnresolved(claim.to_string()))
}

/// Whether something is mounted on `path` (a tmpfs volume, a bound namespace).
pub fn is_mounted(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mounts").is_ok_and(|mounts| {
        let path = path.display().to_string();
        mounts
            .lines()
            .any(|l| l.split(' ').nth(1) == Some(path.as_str()))
    })
}

/// Unmounts the pod's tmpfs volumes and removes its directory.
pub async fn clean(pod_dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(pod_dir.join("volumes")) {
        for entry in entries.flatten() {
            if is_mounted(&entry.path()) {
                let _ = tokio::process::Command::new("umount")
                    .arg(entry.path())
                    .status()
                    .await;
            }
        }
    }
    let _ = std::fs::remove_dir_all(pod_dir);
}

/// The bind mounts of a container's volumeMounts.
pub fn binds(
    pod: &Pod,
    pod_dir: &Path,
    container: &k8s_openapi::api::core::v1::Container,
    sources: &Sources,
) -> Result<Vec<Bind>, VolumeError> {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    let mut binds = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let volume = volumes
            .and_then(|v| v.iter().find(|v| v.name == mount.name))
            .ok_or_else(|| VolumeError::NoSuchVolume {
                container: container.name.clone(),
                volume: mount.name.clone(),
            })?;
        let claim = volume.persistent_volume_claim.as_ref();
        let base = match (&volume.host_path, claim) {
            (Some(host), _) => PathBuf::from(&host.path),
            (None, Some(claim)) => claim_dir(sources, &claim.claim_name)?.clone(),
            (None, None) => volume_dir(pod_dir, &volume.name)?,
        };
        let read_only_volume = volume.config_map.is_some()
            || volume.secret.is_some()
            || volume.downward_api.is_some()
            || volume.projected.is_some()
            || claim.is_some_and(|c| c.read_only == Some(true));
        let source = match mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            // Resolved beneath the volume, no symlink followed (CVE-2017-1002101).
            Some(sub) => beneath::sub_path(&base, sub)?,
            None => base,
        };
        binds.push(Bind {
            source,
            destination: mount.mount_path.clone(),
            read_only: mount.read_only == Some(true) || read_only_volume,
        });
    }
    Ok(binds)
}

#[cfg(test)]
mod tests;
