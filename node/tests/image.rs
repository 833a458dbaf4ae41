//! Importing the test image into the real containerd that scripts/containerd.sh starts.
//!
//! Needs containerd at `WASMKUBE_CONTAINERD_SOCKET` (default /run/wasmkube/containerd.sock) and
//! target/images/busybox.tar (scripts/build-images.sh); scripts/setup.sh provides both. Without
//! them the test fails rather than skips.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use containerd_client::services::v1::DeleteImageRequest;
use containerd_client::services::v1::snapshots::{Info, Kind, StatSnapshotRequest};
use sha2::{Digest as _, Sha256};
use wasmkube_node::containerd::{Containerd, SNAPSHOTTER};
use wasmkube_node::image;

const NAME: &str = "docker.io/library/busybox:latest";

fn socket() -> PathBuf {
    std::env::var_os("WASMKUBE_CONTAINERD_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/wasmkube/containerd.sock"))
}

fn archive() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/images/busybox.tar")
}

async fn connect() -> Containerd {
    let socket = socket();
    let containerd = Containerd::connect(&socket).await.unwrap_or_else(|error| {
        panic!("{error}: start containerd with scripts/containerd.sh (or set WASMKUBE_CONTAINERD_SOCKET)")
    });
    containerd.version().await.expect("containerd answers");
    containerd
}

async fn snapshot(containerd: &Containerd, key: &str) -> Option<Info> {
    let request = StatSnapshotRequest {
        snapshotter: SNAPSHOTTER.to_string(),
        key: key.to_string(),
    };
    match containerd
        .snapshots()
        .stat(containerd.request(request))
        .await
    {
        Ok(reply) => reply.into_inner().info,
        Err(status) if status.code() == tonic::Code::NotFound => None,
        Err(status) => panic!("snapshots stat {key}: {status}"),
    }
}

async fn committed(containerd: &Containerd, key: &str) -> bool {
    snapshot(containerd, key)
        .await
        .is_some_and(|info| info.kind == Kind::Committed as i32)
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// Every file of a tar, by path.
fn files(tar: &[u8]) -> HashMap<String, Vec<u8>> {
    let mut files = HashMap::new();
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().expect("tar") {
        let mut entry = entry.expect("tar entry");
        let path = entry.path().expect("path").to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("read entry");
        files.insert(path, data);
    }
    files
}

fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        builder
            .append_data(&mut header, path, *data)
            .expect("append");
    }
    builder.into_inner().expect("tar")
}

#[tokio::test]
async fn busybox_imports_resolves_and_reimports() {
    let containerd = connect().await;
    let archive = archive();
    assert!(
        archive.is_file(),
        "{} is missing: run scripts/build-images.sh",
        archive.display()
    );

    let names = image::import(&containerd, &archive).await.expect("import");
    // The same image as `:stable` too (scripts/build-images.sh).
    assert_eq!(names, [NAME, "docker.io/library/busybox:stable"]);

    let image = image::resolve(&containerd, "busybox")
        .await
        .expect("resolve")
        .expect("busybox is there after the import");
    assert_eq!(image.name, NAME);
    assert!(image.digest.starts_with("sha256:"), "{}", image.digest);
    assert_eq!(image.config.cmd, ["sh"]);
    assert!(image.config.entrypoint.is_empty());
    assert!(
        image.config.env.iter().any(|e| e.starts_with("PATH=")),
        "{:?}",
        image.config.env
    );
    assert!(image.chain_id.starts_with("sha256:"), "{}", image.chain_id);
    assert!(
        committed(&containerd, &image.chain_id).await,
        "snapshot {} is committed",
        image.chain_id
    );

    // Again: nothing changes.
    let names = image::import(&containerd, &archive)
        .await
        .expect("import again");
    assert_eq!(names, [NAME, "docker.io/library/busybox:stable"]);
    let again = image::resolve(&containerd, NAME)
        .await
        .expect("resolve again");
    assert_eq!(again.as_ref(), Some(&image));

    let images = image::list(&containerd).await.expect("list");
    let size = images
        .iter()
        .find(|(name, _)| name == NAME)
        .map(|(_, size)| *size)
        .expect("busybox is listed");
    assert!(size > 500_000, "busybox is {size} bytes");

    let absent = image::resolve(&containerd, "example.invalid/wasmkube/absent:0")
        .await
        .expect("resolve an absent image");
    assert_eq!(absent, None);
}

/// A `docker save` archive made from busybox plus an uncompressed second layer: imported,
/// converted to a manifest, and unpacked as a chain of two snapshots.
#[tokio::test]
async fn docker_save_archive_with_two_layers_unpacks_as_a_chain() {
    const TAGGED: &str = "wasmkube.test/two-layers:1";
    let containerd = connect().await;
    let busybox = std::fs::read(archive()).expect("run scripts/build-images.sh");
    let blobs = files(&busybox);
    let blob = |digest: &str| {
        let path = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
        blobs
            .get(&path)
            .unwrap_or_else(|| panic!("{path} in busybox.tar"))
            .clone()
    };
    let index: serde_json::Value = serde_json::from_slice(&blobs["index.json"]).expect("index");
    let manifest: serde_json::Value = serde_json::from_slice(&blob(
        index["manifests"][0]["digest"].as_str().expect("digest"),
    ))
    .expect("manifest");
    let base = blob(
        manifest["layers"][0]["digest"]
            .as_str()
            .expect("layer digest"),
    );
    let mut config: serde_json::Value = serde_json::from_slice(&blob(
        manifest["config"]["digest"]
            .as_str()
            .expect("config digest"),
    ))
    .expect("config");

    let extra = tar(&[("hello.txt", b"hello from the second layer\n")]);
    let base_diff_id = config["rootfs"]["diff_ids"][0]
        .as_str()
        .expect("diff id")
        .to_string();
    let extra_diff_id = sha256(&extra);
    config["rootfs"]["diff_ids"] = serde_json::json!([base_diff_id, extra_diff_id]);
    config["config"]["Cmd"] = serde_json::json!(["cat", "/hello.txt"]);
    let config = serde_json::to_vec(&config).expect("config");
    let saved = serde_json::json!([{
        "Config": "config.json",
        "RepoTags": [TAGGED],
        "Layers": ["base/layer.tar", "extra/layer.tar"],
    }]);
    let saved = serde_json::to_vec(&saved).expect("manifest.json");
    let archive = tar(&[
        ("config.json", &config),
        ("base/layer.tar", &base),
        ("extra/layer.tar", &extra),
        ("manifest.json", &saved),
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("two-layers.tar");
    std::fs::write(&path, &archive).expect("write archive");

    let names = image::import(&containerd, &path).await.expect("import");
    assert_eq!(names, [TAGGED]);
    let image = image::resolve(&containerd, TAGGED)
        .await
        .expect("resolve")
        .expect("imported");
    assert_eq!(image.config.cmd, ["cat", "/hello.txt"]);
    let chain_id = sha256(format!("{base_diff_id} {extra_diff_id}").as_bytes());
    assert_eq!(image.chain_id, chain_id);
    let top = snapshot(&containerd, &chain_id)
        .await
        .expect("top snapshot");
    assert_eq!(top.kind, Kind::Committed as i32);
    assert_eq!(top.parent, base_diff_id);
    assert!(committed(&containerd, &base_diff_id).await);

    let delete = DeleteImageRequest {
        name: TAGGED.to_string(),
        sync: false,
        target: None,
    };
    containerd
        .images()
        .delete(containerd.request(delete))
        .await
        .expect("delete the test image");
}
