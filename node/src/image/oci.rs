//! The OCI and Docker image formats: descriptors, indexes, manifests, configs, chain IDs, platforms.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Where the OCI image layout keeps the name containerd gave an image.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI image layout's own name annotation (a full reference or only a tag).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    /// A descriptor with neither annotations nor platform.
    pub fn new(media_type: &str, digest: String, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            annotations: BTreeMap::new(),
            platform: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
}

#[derive(Debug, Deserialize)]
pub struct Index {
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// The parts of an image config the node agent uses.
#[derive(Debug, Default, Deserialize)]
pub struct ConfigFile {
    #[serde(default)]
    pub config: Option<RunConfig>,
    #[serde(default)]
    pub rootfs: RootFs,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// What a JSON blob is, by media type or, when that says nothing, by its shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Index,
    Manifest,
    Other,
}

impl Kind {
    pub fn of(media_type: &str, data: &[u8]) -> Kind {
        match media_type {
            INDEX | DOCKER_LIST => Kind::Index,
            MANIFEST | DOCKER_MANIFEST => Kind::Manifest,
            "" | "application/json" => {
                #[derive(Deserialize)]
                struct Shape {
                    manifests: Option<serde_json::Value>,
                    config: Option<serde_json::Value>,
                }
                match serde_json::from_slice::<Shape>(data) {
                    Ok(Shape {
                        manifests: Some(_), ..
                    }) => Kind::Index,
                    Ok(Shape {
                        config: Some(_), ..
                    }) => Kind::Manifest,
                    _ => Kind::Other,
                }
            }
            _ => Kind::Other,
        }
    }

    /// The media type to record for a blob of this kind that came without one.
    pub fn media_type(self) -> Option<&'static str> {
        match self {
            Kind::Index => Some(INDEX),
            Kind::Manifest => Some(MANIFEST),
            Kind::Other => None,
        }
    }
}

/// The platform this node runs images for, in OCI's words (`amd64`, `arm64`, ...).
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The manifest of `index` to run on this node: the first one for linux and the host's
/// architecture, else the first one that names no platform at all.
pub fn select(index: &Index) -> Option<&Descriptor> {
    let arch = host_architecture();
    index
        .manifests
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch)
        })
        .or_else(|| index.manifests.iter().find(|d| d.platform.is_none()))
}

/// `sha256:<hex>` of `data`.
pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// The chain IDs of a stack of layers: the first is its diff ID, each next one
/// `sha256(previous + " " + diff ID)`. The last names the image's top snapshot.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chain: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.clone(),
            Some(parent) => sha256(format!("{parent} {diff_id}").as_bytes()),
        };
        chain.push(next);
    }
    chain
}

/// Where a blob lives in an OCI image layout: `blobs/<algorithm>/<hex>`.
pub fn blob_path(digest: &str) -> Option<String> {
    let (algorithm, hex) = digest.split_once(':')?;
    let valid = !algorithm.is_empty()
        && !hex.is_empty()
        && algorithm
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c))
        && hex.chars().all(|c| c.is_ascii_hexdigit());
    valid.then(|| format!("blobs/{algorithm}/{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        let a = "sha256:aaaa".to_string();
        let b = "sha256:bbbb".to_string();
        let c = "sha256:cccc".to_string();
        let chain = chain_ids(&[a.clone(), b.clone(), c.clone()]);
        assert_eq!(chain.len(), 3);
        assert_eq!(chain[0], a);
        assert_eq!(chain[1], sha256(b"sha256:aaaa sha256:bbbb"));
        assert_eq!(chain[2], sha256(format!("{} {}", chain[1], c).as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn chain_id_matches_a_known_value() {
        // Computed independently: printf 'sha256:1…1 sha256:2…2' | sha256sum
        let a = format!("sha256:{}", "1".repeat(64));
        let b = format!("sha256:{}", "2".repeat(64));
        let chain = chain_ids(&[a, b]);
        assert_eq!(
            chain[1],
            "sha256:9932074217c35353d2e03a3f5a86549f7c67bfeb0ba53e23d69f4d4c8f7958f5"
        );
    }

    #[test]
    fn sha256_is_prefixed_lower_hex() {
        assert_eq!(
            sha256(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn kinds_by_media_type_and_shape() {
        assert_eq!(Kind::of(INDEX, b""), Kind::Index);
        assert_eq!(Kind::of(DOCKER_MANIFEST, b""), Kind::Manifest);
        assert_eq!(Kind::of("", br#"{"manifests":[]}"#), Kind::Index);
        assert_eq!(Kind::of("", br#"{"config":{}}"#), Kind::Manifest);
        assert_eq!(Kind::of(LAYER_GZIP, b""), Kind::Other);
    }

    #[test]
    fn select_prefers_the_host_platform() {
        let descriptor = |digest: &str, platform: Option<(&str, &str)>| Descriptor {
            media_type: MANIFEST.into(),
            digest: digest.into(),
            size: 1,
            annotations: BTreeMap::new(),
            platform: platform.map(|(os, architecture)| Platform {
                os: os.into(),
                architecture: architecture.into(),
            }),
        };
        let index = Index {
            manifests: vec![
                descriptor("sha256:01", Some(("linux", "s390x"))),
                descriptor("sha256:02", None),
                descriptor("sha256:03", Some(("linux", host_architecture()))),
            ],
        };
        assert_eq!(select(&index).map(|d| d.digest.as_str()), Some("sha256:03"));
        let index = Index {
            manifests: vec![
                descriptor("sha256:01", Some(("linux", "s390x"))),
                descriptor("sha256:02", None),
            ],
        };
        assert_eq!(select(&index).map(|d| d.digest.as_str()), Some("sha256:02"));
        let index = Index {
            manifests: vec![descriptor(
                "sha256:01",
                Some(("windows", host_architecture())),
            )],
        };
        assert_eq!(select(&index), None);
    }

    #[test]
    fn blob_paths() {
        assert_eq!(
            blob_path("sha256:ab12").as_deref(),
            Some("blobs/sha256/ab12")
        );
        assert_eq!(blob_path("sha256:../x"), None);
        assert_eq!(blob_path("nodigest"), None);
    }
}
