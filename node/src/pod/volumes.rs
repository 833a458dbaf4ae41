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
use crate::pod::tokens::TokenKey;
use crate::spec::Bind;

mod atomic;
mod beneath;
mod subpath;

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
    #[error("{}: {key}", kind.key_missing())]
    KeyMissing { kind: Kind, key: String },
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
    #[error("the ServiceAccount token has not been got yet")]
    TokenMissing,
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

/// A ConfigMap or Secret a volume projects, as the pod spec names it.
struct Source<'a> {
    kind: Kind,
    name: &'a str,
    items: Option<&'a Vec<KeyToPath>>,
    optional: bool,
}

impl<'a> Source<'a> {
    fn new(
        kind: Kind,
        name: &'a str,
        items: Option<&'a Vec<KeyToPath>>,
        optional: Option<bool>,
    ) -> Source<'a> {
        let optional = optional == Some(true);
        Source {
            kind,
            name,
            items,
            optional,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    ConfigMap,
    Secret,
}

impl Kind {
    /// The kubelet's words for an item whose key the source lacks.
    fn key_missing(self) -> &'static str {
        match self {
            Kind::ConfigMap => "configmap references non-existent config key",
            Kind::Secret => "references non-existent secret key",
        }
    }
}

/// The files of a key/value source: every key, or just `items` mapped to their paths, with
/// the item's mode or `default_mode`. The values are written as they are (a Secret's were
/// decoded once, when read from the API). A source that does not exist, or an item whose key
/// it lacks, is an error unless the source is optional, as with the kubelet.
fn project(
    sources: &Sources,
    source: &Source,
    default_mode: Option<i32>,
    files: &mut Files,
) -> Result<(), VolumeError> {
    let data: Option<BTreeMap<&String, &[u8]>> = match source.kind {
        Kind::ConfigMap => sources
            .config_maps
            .get(source.name)
            .and_then(Option::as_ref)
            .map(|d| d.iter().map(|(k, v)| (k, v.as_bytes())).collect()),
        Kind::Secret => sources
            .secrets
            .get(source.name)
            .and_then(Option::as_ref)
            .map(|d| d.iter().map(|(k, v)| (k, v.as_slice())).collect()),
    };
    let Some(data) = data else {
        return match (source.optional, source.kind) {
            (true, _) => Ok(()),
            (false, Kind::ConfigMap) => Err(VolumeError::ConfigMapMissing(source.name.into())),
            (false, Kind::Secret) => Err(VolumeError::SecretMissing(source.name.into())),
        };
    };
    let Some(items) = source.items else {
        for (key, value) in data {
            files.insert(key.clone(), (value.to_vec(), mode(None, default_mode)));
        }
        return Ok(());
    };
    for item in items {
        match data.get(&item.key) {
            Some(value) => {
                let file = (value.to_vec(), mode(item.mode, default_mode));
                files.insert(item.path.clone(), file);
            }
            None if source.optional => {}
            None => {
                return Err(VolumeError::KeyMissing {
                    kind: source.kind,
                    key: item.key.clone(),
                });
            }
        }
    }
    Ok(())
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

/// Prepares every volume of the pod under `pod_dir` (the first volume that failed as the
/// error).
pub async fn prepare(pod: &Pod, pod_dir: &Path, sources: &Sources) -> Result<(), VolumeError> {
    make(pod, pod_dir, sources, |_| true).await
}

/// Brings the files of the pod's configMap, secret, downwardAPI and projected volumes up to
/// date with `sources` and the pod (the first volume that failed as the error, its files left
/// as they were).
pub async fn update(pod: &Pod, pod_dir: &Path, sources: &Sources) -> Result<(), VolumeError> {
    make(pod, pod_dir, sources, written).await
}

/// Whether the agent writes the volume's files (with the atomic writer) rather than giving a
/// directory: configMap, secret, downwardAPI and projected volumes.
fn written(volume: &Volume) -> bool {
    volume.config_map.is_some()
        || volume.secret.is_some()
        || volume.downward_api.is_some()
        || volume.projected.is_some()
}

/// Prepares the pod's volumes that `which` selects.
async fn make(
    pod: &Pod,
    pod_dir: &Path,
    sources: &Sources,
    which: fn(&Volume) -> bool,
) -> Result<(), VolumeError> {
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
    // Each volume on its own: one whose source is missing does not hold up the others' updates.
    let mut failed = None;
    for volume in volumes.iter().filter(|v| which(v)) {
        if let Err(source) = prepare_one(pod, pod_dir, sources, volume).await {
            failed.get_or_insert(VolumeError::SetUp {
                volume: volume.name.clone(),
                source: Box::new(source),
            });
        }
    }
    failed.map_or(Ok(()), Err)
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
    if let Some(config_map) = &volume.config_map {
        let source = Source::new(
            Kind::ConfigMap,
            &config_map.name,
            config_map.items.as_ref(),
            config_map.optional,
        );
        project(sources, &source, config_map.default_mode, &mut files)?;
    } else if let Some(secret) = &volume.secret {
        let source = Source::new(
            Kind::Secret,
            secret.secret_name.as_deref().unwrap_or_default(),
            secret.items.as_ref(),
            secret.optional,
        );
        project(sources, &source, secret.default_mode, &mut files)?;
    } else if let Some(source) = &volume.downward_api {
        downward_files(pod, source.items.as_ref(), source.default_mode, &mut files);
    } else if let Some(projected) = &volume.projected {
        let mode = projected.default_mode;
        for source in projected.sources.iter().flatten() {
            if let Some(c) = &source.config_map {
                let source = Source::new(Kind::ConfigMap, &c.name, c.items.as_ref(), c.optional);
                project(sources, &source, mode, &mut files)?;
            }
            if let Some(s) = &source.secret {
                let source = Source::new(Kind::Secret, &s.name, s.items.as_ref(), s.optional);
                project(sources, &source, mode, &mut files)?;
            }
            if let Some(d) = &source.downward_api {
                downward_files(pod, d.items.as_ref(), mode, &mut files);
            }
            if let Some(t) = &source.service_account_token {
                let token = sources
                    .tokens
                    .get(&TokenKey::of(t))
                    .ok_or(VolumeError::TokenMissing)?;
                let file = (token.token.clone().into_bytes(), self::mode(None, mode));
                files.insert(t.path.clone(), file);
            }
        }
    } else {
        return Err(VolumeError::Unsupported {
            volume: volume.name.clone(),
            message: "only emptyDir, hostPath, persistentVolumeClaim, configMap, secret, downwardAPI and projected volumes are supported on this node".into(),
        });
    }
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    // Secret and projected volumes (which carry secrets and service account tokens too) are
    // a tmpfs; nothing is rewritten, nor remounted, when the files are what they were.
    let on_tmpfs = volume.secret.is_some() || volume.projected.is_some();
    let mounted = on_tmpfs && is_mounted(&dir);
    if (mounted || !on_tmpfs) && !atomic::changed(&dir, &files)? {
        return Ok(());
    }
    if on_tmpfs {
        // Room for the files and for the set they replace, until the swap removes it.
        let used = if mounted { used_bytes(&dir)? } else { 0 };
        let size = secret_tmpfs_size(&files)?.saturating_add(used);
        if size > MAX_SECRET_VOLUME_BYTES {
            return Err(VolumeError::TooLarge { bytes: size });
        }
        // Read-only in the containers, traversable by their users whoever they run as.
        let options = vec!["mode=0755".to_string(), format!("size={size}")];
        tmpfs(&dir, options, mounted).await?;
    }
    atomic::write(&dir, &files)
}

/// The bytes in use on the filesystem at `dir` (a secret volume's tmpfs).
fn used_bytes(dir: &Path) -> Result<u64, VolumeError> {
    let stat = rustix::fs::statvfs(dir).map_err(|e| io(dir)(e.into()))?;
    let blocks = stat.f_blocks.saturating_sub(stat.f_bfree);
    Ok(blocks.saturating_mul(stat.f_frsize))
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

/// Unmounts the pod's pinned subPaths and tmpfs volumes and removes its directory; one still
/// mounted keeps the directory (removing it would reach through the mount into the volume).
pub async fn clean(pod_dir: &Path) {
    if !subpath::release(pod_dir) {
        tracing::warn!(pod_dir = %pod_dir.display(), "a pinned subPath is still mounted; the pod directory stays");
        return;
    }
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

/// Where a volumeMount's files come from on the host: the volume's directory (the current set
/// of files for a volume the agent writes), and whether the volume is read-only.
fn mount_base(
    pod: &Pod,
    pod_dir: &Path,
    container: &k8s_openapi::api::core::v1::Container,
    sources: &Sources,
    mount: &k8s_openapi::api::core::v1::VolumeMount,
) -> Result<(PathBuf, bool), VolumeError> {
    let volume = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
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
    let written = written(volume);
    let read_only = written || claim.is_some_and(|c| c.read_only == Some(true));
    // A subPath of a written volume is taken in the files as they are now: the mount keeps them
    // when `..data` moves on.
    let base = match mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
        Some(_) if written => atomic::sub_path_base(&base)?,
        _ => base,
    };
    Ok((base, read_only))
}

/// The bind mounts of a container's volumeMounts. A `subPath` is resolved beneath its volume,
/// no symlink followed (CVE-2017-1002101); [`pin_sub_paths`] then pins it before the runtime
/// sees it.
pub fn binds(
    pod: &Pod,
    pod_dir: &Path,
    container: &k8s_openapi::api::core::v1::Container,
    sources: &Sources,
) -> Result<Vec<Bind>, VolumeError> {
    let mut binds = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let (base, read_only_volume) = mount_base(pod, pod_dir, container, sources, mount)?;
        let source = match mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
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

/// Opens each `subPath` of the container again beneath its volume and bind-mounts what was
/// opened to a private path of the pod, which replaces the bind's source: between this and the
/// runtime's mount no container can redirect it. Needs the agent's right to mount.
pub fn pin_sub_paths(
    pod: &Pod,
    pod_dir: &Path,
    container: &k8s_openapi::api::core::v1::Container,
    sources: &Sources,
    binds: &mut [Bind],
) -> Result<(), VolumeError> {
    if !is_dns1123_label(&container.name) {
        return Err(VolumeError::Path {
            path: container.name.clone(),
            reason: "is no DNS-1123 label (a container name)",
        });
    }
    for (index, mount) in container.volume_mounts.iter().flatten().enumerate() {
        let Some(sub) = mount.sub_path.as_deref().filter(|s| !s.is_empty()) else {
            continue;
        };
        let (base, _) = mount_base(pod, pod_dir, container, sources, mount)?;
        let target = beneath::open_sub_path(&base, sub)?;
        let point = subpath::point(pod_dir, &mount.name, &container.name, index);
        let pinned = subpath::pin(&target, &point)?;
        for bind in binds
            .iter_mut()
            .filter(|b| b.destination == mount.mount_path)
        {
            bind.source = pinned.clone();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
