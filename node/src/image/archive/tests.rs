//! Tests of archive parsing against tiny archives built in a temporary directory.

use std::io::Write as _;

use super::*;
use crate::image::oci::{self, Manifest};

/// A tar entry: a file with bytes, or a symbolic link.
enum Item {
    File(String, Vec<u8>),
    Symlink(String, String),
}

fn file(path: &str, data: &[u8]) -> Item {
    Item::File(path.to_string(), data.to_vec())
}

fn tar(items: &[Item]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for item in items {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_mtime(0);
        match item {
            Item::File(path, data) => {
                header.set_size(data.len() as u64);
                builder
                    .append_data(&mut header, path.as_str(), data.as_slice())
                    .expect("append");
            }
            Item::Symlink(path, target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder
                    .append_link(&mut header, path.as_str(), target.as_str())
                    .expect("append link");
            }
        }
    }
    builder.into_inner().expect("tar")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("gzip");
    encoder.finish().expect("gzip")
}

fn blob(data: &[u8]) -> (String, String) {
    let digest = oci::sha256(data);
    let path = oci::blob_path(&digest).expect("digest");
    (digest, path)
}

/// A one-layer image: (layer.tar.gz, diff id, config, manifest) blobs.
struct Image {
    layer: Vec<u8>,
    config: Vec<u8>,
    manifest: Vec<u8>,
}

fn image() -> Image {
    let layer_tar = tar(&[file("hello", b"hello\n")]);
    let diff_id = oci::sha256(&layer_tar);
    let layer = gzip(&layer_tar);
    let config = serde_json::json!({
        "architecture": oci::host_architecture(),
        "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    })
    .to_string()
    .into_bytes();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": oci::MANIFEST,
        "config": {"mediaType": oci::CONFIG, "digest": oci::sha256(&config), "size": config.len()},
        "layers": [{"mediaType": oci::LAYER_GZIP, "digest": oci::sha256(&layer), "size": layer.len()}],
    })
    .to_string()
    .into_bytes();
    Image {
        layer,
        config,
        manifest,
    }
}

fn layout(image: &Image, index: serde_json::Value, extra: Vec<Item>) -> Vec<u8> {
    let mut items = vec![
        file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
        file("index.json", index.to_string().as_bytes()),
    ];
    for data in [&image.layer, &image.config, &image.manifest] {
        let (_, path) = blob(data);
        items.push(Item::File(path, data.clone()));
    }
    items.extend(extra);
    tar(&items)
}

fn annotated(image: &Image, annotations: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": oci::MANIFEST,
            "digest": oci::sha256(&image.manifest),
            "size": image.manifest.len(),
            "annotations": annotations,
        }],
    })
}

fn plan(bytes: &[u8]) -> Result<Plan, ArchiveError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("image.tar");
    std::fs::write(&path, bytes).expect("write archive");
    let archive = Archive::open(&path)?;
    let plan = archive.plan()?;
    // Every planned blob reads back as the bytes it claims to be.
    for blob in &plan.blobs {
        let data = match &blob.source {
            Source::Entry { offset } => archive.read_at(*offset, blob.descriptor.size as usize)?,
            Source::Bytes(bytes) => bytes.clone(),
        };
        assert_eq!(oci::sha256(&data), blob.descriptor.digest);
        assert_eq!(data.len() as u64, blob.descriptor.size);
    }
    Ok(plan)
}

fn names(plan: &Plan) -> Vec<&str> {
    plan.images.iter().map(|(name, _)| name.as_str()).collect()
}

#[test]
fn oci_layout_named_by_containerd() {
    let image = image();
    let index = annotated(
        &image,
        serde_json::json!({
            "io.containerd.image.name": "example.com/hello:1",
            "org.opencontainers.image.ref.name": "1",
        }),
    );
    let plan = plan(&layout(&image, index, vec![])).expect("plan");
    assert_eq!(names(&plan), ["example.com/hello:1"]);
    let (_, target) = &plan.images[0];
    assert_eq!(target.digest, oci::sha256(&image.manifest));
    assert_eq!(target.media_type, oci::MANIFEST);
    assert_eq!(plan.blobs.len(), 3);
    // Children before parents: the manifest last, labelled with its config and layer.
    let manifest = &plan.blobs[2];
    assert_eq!(manifest.descriptor.digest, oci::sha256(&image.manifest));
    assert_eq!(
        manifest.labels.get("containerd.io/gc.ref.content.config"),
        Some(&oci::sha256(&image.config))
    );
    assert_eq!(
        manifest.labels.get("containerd.io/gc.ref.content.l.0"),
        Some(&oci::sha256(&image.layer))
    );
}

#[test]
fn gzipped_oci_layout_named_by_ref_name() {
    let image = image();
    let index = annotated(
        &image,
        serde_json::json!({"org.opencontainers.image.ref.name": "busybox"}),
    );
    let plan = plan(&gzip(&layout(&image, index, vec![]))).expect("plan");
    assert_eq!(names(&plan), ["docker.io/library/busybox:latest"]);
}

#[test]
fn multi_platform_index_takes_what_is_there() {
    let image = image();
    let other = format!("sha256:{}", "0".repeat(64));
    let nested = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": oci::INDEX,
        "manifests": [
            {"mediaType": oci::MANIFEST, "digest": other, "size": 100,
             "platform": {"os": "linux", "architecture": "s390x"}},
            {"mediaType": oci::MANIFEST, "digest": oci::sha256(&image.manifest),
             "size": image.manifest.len(),
             "platform": {"os": "linux", "architecture": oci::host_architecture()}},
        ],
    })
    .to_string()
    .into_bytes();
    let (nested_digest, nested_path) = blob(&nested);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": oci::INDEX,
            "digest": nested_digest,
            "size": nested.len(),
            "annotations": {"io.containerd.image.name": "docker.io/library/multi:1"},
        }],
    });
    let extra = vec![Item::File(nested_path, nested)];
    let plan = plan(&layout(&image, index, extra)).expect("plan");
    assert_eq!(names(&plan), ["docker.io/library/multi:1"]);
    assert_eq!(plan.images[0].1.media_type, oci::INDEX);
    let index_blob = plan.blobs.last().expect("blobs");
    assert_eq!(index_blob.descriptor.digest, nested_digest);
    assert_eq!(
        index_blob.labels.get("containerd.io/gc.ref.content.m.0"),
        Some(&other)
    );
    assert_eq!(
        index_blob.labels.get("containerd.io/gc.ref.content.m.1"),
        Some(&oci::sha256(&image.manifest))
    );
    // The s390x manifest is not in the archive and is not needed here.
    assert_eq!(plan.blobs.len(), 4);
}

#[test]
fn index_without_this_platform_is_refused() {
    let image = image();
    let nested = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": oci::MANIFEST, "digest": oci::sha256(&image.manifest),
                       "size": image.manifest.len(),
                       "platform": {"os": "linux", "architecture": "s390x"}}],
    })
    .to_string()
    .into_bytes();
    let (nested_digest, nested_path) = blob(&nested);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": oci::INDEX, "digest": nested_digest, "size": nested.len(),
                       "annotations": {"io.containerd.image.name": "x:1"}}],
    });
    let extra = vec![Item::File(nested_path, nested)];
    let error = plan(&layout(&image, index, extra)).expect_err("no platform");
    assert!(matches!(error, ArchiveError::NoPlatform { .. }), "{error}");
}

#[test]
fn missing_blob_and_unnamed_images_are_errors() {
    let image = image();
    let index = annotated(
        &image,
        serde_json::json!({"io.containerd.image.name": "x:1"}),
    );
    let mut items = vec![file("index.json", index.to_string().as_bytes())];
    let (_, manifest_path) = blob(&image.manifest);
    items.push(Item::File(manifest_path, image.manifest.clone()));
    let error = plan(&tar(&items)).expect_err("missing layer");
    assert!(matches!(error, ArchiveError::Missing { .. }), "{error}");

    let index = annotated(&image, serde_json::json!({}));
    let error = plan(&layout(&image, index, vec![])).expect_err("unnamed");
    assert!(matches!(error, ArchiveError::Unnamed { .. }), "{error}");

    let error = plan(&tar(&[file("hello", b"hi")])).expect_err("not an image");
    assert!(matches!(error, ArchiveError::NotAnImage { .. }), "{error}");
}

#[test]
fn docker_save_archive_becomes_an_oci_manifest() {
    let image = image();
    let layer_tar = tar(&[file("hello", b"hello\n")]);
    let manifest = serde_json::json!([{
        "Config": "abc.json",
        "RepoTags": ["hello:2", "example.com/hello:2"],
        "Layers": ["l1/layer.tar", "l2/layer.tar"],
    }]);
    let bytes = tar(&[
        file("abc.json", &image.config),
        file("l1/layer.tar", &layer_tar),
        // Docker links a layer it already wrote.
        Item::Symlink("l2/layer.tar".into(), "../l1/layer.tar".into()),
        file("manifest.json", manifest.to_string().as_bytes()),
    ]);
    let plan = plan(&bytes).expect("plan");
    assert_eq!(
        names(&plan),
        ["docker.io/library/hello:2", "example.com/hello:2"]
    );
    // One layer (shared), the config, the generated manifest.
    assert_eq!(plan.blobs.len(), 3);
    let layer = &plan.blobs[0].descriptor;
    assert_eq!(layer.digest, oci::sha256(&layer_tar));
    assert_eq!(layer.media_type, oci::LAYER);
    let Source::Bytes(generated) = &plan.blobs[2].source else {
        panic!("the manifest is generated");
    };
    let generated: Manifest = serde_json::from_slice(generated).expect("manifest");
    assert_eq!(generated.config.digest, oci::sha256(&image.config));
    assert_eq!(generated.layers.len(), 2);
    assert_eq!(plan.images[0].1.digest, plan.blobs[2].descriptor.digest);
    assert_eq!(plan.images[0].1.media_type, oci::MANIFEST);
}

#[test]
fn gzipped_layers_in_docker_archives_are_recognised() {
    let image = image();
    let manifest =
        serde_json::json!([{"Config": "c.json", "RepoTags": ["z:1"], "Layers": ["l.tar.gz"]}]);
    let bytes = tar(&[
        file("./c.json", &image.config),
        file("./l.tar.gz", &image.layer),
        file("./manifest.json", manifest.to_string().as_bytes()),
    ]);
    let plan = plan(&bytes).expect("plan");
    assert_eq!(plan.blobs[0].descriptor.media_type, oci::LAYER_GZIP);
    assert_eq!(plan.blobs[0].descriptor.digest, oci::sha256(&image.layer));
}

#[test]
fn clean_paths() {
    assert_eq!(clean("./blobs/sha256/ab"), "blobs/sha256/ab");
    assert_eq!(clean("l2/../l1/layer.tar"), "l1/layer.tar");
    assert_eq!(clean("/x//y/"), "x/y");
}
