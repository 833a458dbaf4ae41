//! Tests of volumes: their directories, files and bind mounts.

use super::*;

#[test]
fn claims_mount_their_volume_directory_read_only_when_asked() {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p"},
        "spec": {
            "containers": [{"name": "c", "volumeMounts": [
                {"name": "rw", "mountPath": "/rw"},
                {"name": "ro", "mountPath": "/ro"},
            ]}],
            "volumes": [
                {"name": "rw", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "ro", "persistentVolumeClaim": {"claimName": "data", "readOnly": true}},
            ],
        },
    }))
    .expect("a pod");
    let container = &pod.spec.as_ref().expect("a spec").containers[0];
    let mut sources = Sources::default();
    let unresolved = binds(&pod, Path::new("/pod"), container, &sources);
    assert!(matches!(unresolved, Err(VolumeError::ClaimUnresolved(c)) if c == "data"));
    sources
        .claims
        .insert("data".into(), PathBuf::from("/storage/pvc-1"));
    let binds = binds(&pod, Path::new("/pod"), container, &sources).expect("binds");
    let got: Vec<(&str, &str, bool)> = binds
        .iter()
        .map(|b| {
            let source = b.source.to_str().unwrap_or_default();
            (source, b.destination.as_str(), b.read_only)
        })
        .collect();
    assert_eq!(
        got,
        [
            ("/storage/pvc-1", "/rw", false),
            ("/storage/pvc-1", "/ro", true)
        ]
    );
}

/// A Secret's value is base64-decoded once: `hunter22` (served as `aHVudGVyMjI=`) and bytes
/// that are not UTF-8 come out of the volume byte for byte, on a tmpfs sized to them, in
/// directories only root can enter; a change is written on the same tmpfs; taking the pod down
/// unmounts it. (Mounts: needs root, as the node agent.)
#[tokio::test]
async fn secret_volume_files_are_the_secret_bytes_on_a_tmpfs() {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [], "volumes": [{"name": "s", "secret": {"secretName": "creds"}}]},
    }))
    .expect("a pod");
    let secret = serde_json::json!({"data": {"pw": "aHVudGVyMjI=", "bin": "/wCAQQ=="}});
    let mut sources = Sources::default();
    let data = super::super::sources::secret_data(Some(secret)).expect("base64 values");
    sources.secrets.insert("creds".into(), data);
    let root = tempfile::tempdir().expect("a temp dir");
    let pod_dir = root.path().join("pod");
    prepare(&pod, &pod_dir, &sources).await.expect("prepared");
    let volume = pod_dir.join("volumes/s");
    let mounted = std::fs::read_to_string("/proc/self/mounts")
        .expect("mounts")
        .lines()
        .find(|l| l.split(' ').nth(1) == volume.to_str())
        .map(str::to_string);
    let prepared_again = prepare(&pod, &pod_dir, &sources).await;
    let read = |name: &str| std::fs::read(volume.join(name)).ok();
    let (pw, bin) = (read("pw"), read("bin"));
    // An update needs room for both sets on the tmpfs until the swap: it is resized.
    let mut changed = sources.clone();
    let data = BTreeMap::from([("pw".to_string(), b"hunter23".to_vec())]);
    changed.secrets.insert("creds".into(), Some(data));
    let updated = prepare(&pod, &pod_dir, &changed).await.map(|()| read("pw"));
    let mode = |path: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o777)
            .ok()
    };
    let modes = (
        mode(&pod_dir),
        mode(&pod_dir.join("volumes")),
        mode(&volume),
    );
    clean(&pod_dir).await;
    assert!(
        !is_mounted(&volume) && !pod_dir.exists(),
        "unmounted and removed"
    );
    let mounted = mounted.expect("a mount on the volume");
    assert!(mounted.starts_with("tmpfs "), "{mounted}");
    // 1 MiB of slack, a page per file and 12 bytes: 1036 KiB in whole pages.
    assert!(mounted.contains("size=1036k"), "{mounted}");
    prepared_again.expect("prepared again (unchanged)");
    assert_eq!(updated.expect("updated").as_deref(), Some(&b"hunter23"[..]));
    assert_eq!(pw.as_deref(), Some(&b"hunter22"[..]));
    assert_eq!(bin.as_deref(), Some(&[0xff, 0x00, 0x80, 0x41][..]));
    assert_eq!(modes, (Some(0o700), Some(0o700), Some(0o755)));
}

#[test]
fn secret_volumes_are_bounded() {
    let file = |len: usize| (vec![0u8; len], 0o644);
    let files: Files = BTreeMap::from([("a".to_string(), file(10)), ("b".to_string(), file(0))]);
    assert_eq!(
        secret_tmpfs_size(&files).ok(),
        Some(TMPFS_SLACK + 10 + 2 * 4096)
    );
    let huge: Files = (0..65).map(|i| (i.to_string(), file(1 << 20))).collect();
    assert!(matches!(
        secret_tmpfs_size(&huge),
        Err(VolumeError::TooLarge { .. })
    ));
}

/// A volume name that is not a DNS-1123 label never becomes a directory: not for a volume
/// of the pod, not for a container's mount of it.
#[tokio::test]
async fn volume_names_that_are_not_labels_are_refused() {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p"},
        "spec": {
            "containers": [{"name": "c", "volumeMounts": [{"name": "../../x", "mountPath": "/x"}]}],
            "volumes": [{"name": "../../x", "emptyDir": {}}],
        },
    }))
    .expect("a pod");
    let root = tempfile::tempdir().expect("a temp dir");
    let pod_dir = root.path().join("pods/uid");
    let prepared = prepare(&pod, &pod_dir, &Sources::default()).await;
    assert!(matches!(
        prepared,
        Err(VolumeError::SetUp { source, .. }) if matches!(*source, VolumeError::VolumeName(_))
    ));
    assert!(!root.path().join("pods/x").exists());
    let container = &pod.spec.as_ref().expect("a spec").containers[0];
    let bound = binds(&pod, &pod_dir, container, &Sources::default());
    assert!(matches!(bound, Err(VolumeError::VolumeName(n)) if n == "../../x"));
}

/// An init container's `escape -> /` in an emptyDir does not give a later container's
/// `subPath: escape` the host's root; a subPath that exists only as directories is made.
#[test]
fn sub_paths_do_not_follow_symlinks_planted_in_the_volume() {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p"},
        "spec": {
            "containers": [{"name": "c", "volumeMounts": [
                {"name": "scratch", "mountPath": "/x", "subPath": "escape"},
                {"name": "scratch", "mountPath": "/y", "subPath": "escape/etc"},
                {"name": "scratch", "mountPath": "/z", "subPath": "../../.."},
            ]}],
            "volumes": [{"name": "scratch", "emptyDir": {}}],
        },
    }))
    .expect("a pod");
    let root = tempfile::tempdir().expect("a temp dir");
    let scratch = root.path().join("volumes/scratch");
    std::fs::create_dir_all(&scratch).expect("the volume");
    std::os::unix::fs::symlink("/", scratch.join("escape")).expect("a symlink");
    let spec = pod.spec.as_ref().expect("a spec");
    for index in 0..3 {
        let mut container = spec.containers[0].clone();
        let mounts = container.volume_mounts.as_mut().expect("mounts");
        let mount = mounts.remove(index);
        *mounts = vec![mount];
        let bound = binds(&pod, root.path(), &container, &Sources::default());
        assert!(
            matches!(bound, Err(VolumeError::Path { .. })),
            "mount {index}: {bound:?}"
        );
    }
    let mut container = spec.containers[0].clone();
    container.volume_mounts = Some(vec![
        serde_json::from_value(serde_json::json!(
            {"name": "scratch", "mountPath": "/w", "subPath": "data/logs"}
        ))
        .expect("a mount"),
    ]);
    let bound = binds(&pod, root.path(), &container, &Sources::default()).expect("binds");
    let canonical = std::fs::canonicalize(&scratch).expect("canonical");
    assert_eq!(bound[0].source, canonical.join("data/logs"));
    assert!(bound[0].source.is_dir());
}

/// `items[].path` stays inside the volume, and files get the item's mode or `defaultMode`.
#[tokio::test]
async fn item_paths_stay_in_the_volume_with_their_modes() {
    use std::os::unix::fs::PermissionsExt;
    let pod = |items: serde_json::Value| -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [], "volumes": [
                {"name": "cfg", "configMap": {"name": "cm", "defaultMode": 0o600, "items": items}},
            ]},
        }))
        .expect("a pod")
    };
    let mut sources = Sources::default();
    let data = BTreeMap::from([("a".to_string(), "1".to_string())]);
    sources.config_maps.insert("cm".into(), Some(data));
    let root = tempfile::tempdir().expect("a temp dir");
    let pod_dir = root.path().join("pod");
    for path in ["../../evil", "/evil", ".."] {
        let hostile = pod(serde_json::json!([{"key": "a", "path": path}]));
        let prepared = prepare(&hostile, &pod_dir, &sources).await;
        assert!(
            matches!(&prepared, Err(VolumeError::SetUp { source, .. }) if matches!(**source, VolumeError::Path { .. })),
            "{path}: {prepared:?}"
        );
    }
    assert!(!root.path().join("evil").exists());
    let items = serde_json::json!([
        {"key": "a", "path": "plain"},
        {"key": "a", "path": "dir/own", "mode": 0o400},
    ]);
    prepare(&pod(items), &pod_dir, &sources)
        .await
        .expect("prepared");
    let mode = |p: &str| {
        let path = pod_dir.join("volumes/cfg").join(p);
        std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o777)
            .ok()
    };
    assert_eq!(mode("plain"), Some(0o600));
    assert_eq!(mode("dir/own"), Some(0o400));
}

fn config_pod(volumes: serde_json::Value, mounts: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "volumeMounts": mounts}], "volumes": volumes},
    }))
    .expect("a pod")
}

fn config_map(sources: &mut Sources, name: &str, data: &[(&str, &str)]) {
    let data = data
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    sources.config_maps.insert(name.into(), Some(data));
}

/// `optional: true` makes a missing ConfigMap or Secret, or a missing key of `items`, an empty
/// volume or a file left out; without it each is the kubelet's error.
#[tokio::test]
async fn optional_sources_may_be_missing() {
    let volume =
        |source: serde_json::Value| serde_json::json!([{"name": "v", "configMap": source}]);
    let mut sources = Sources::default();
    sources.config_maps.insert("absent".into(), None);
    config_map(&mut sources, "cm", &[("a", "1")]);
    let root = tempfile::tempdir().expect("a temp dir");
    let pod_dir = root.path().join("pod");
    let error = |source: serde_json::Value| {
        let pod = config_pod(volume(source), serde_json::json!([]));
        let sources = sources.clone();
        let pod_dir = pod_dir.clone();
        async move {
            prepare(&pod, &pod_dir, &sources)
                .await
                .err()
                .map(|e| e.to_string())
        }
    };
    assert_eq!(
        error(serde_json::json!({"name": "absent"}))
            .await
            .as_deref(),
        Some(r#"MountVolume.SetUp failed for volume "v" : configmap "absent" not found"#)
    );
    let missing_key = serde_json::json!({"name": "cm", "items": [{"key": "b", "path": "b"}]});
    assert_eq!(
        error(missing_key).await.as_deref(),
        Some(
            r#"MountVolume.SetUp failed for volume "v" : configmap references non-existent config key: b"#
        )
    );
    assert_eq!(
        error(serde_json::json!({"name": "absent", "optional": true})).await,
        None
    );
    let files = std::fs::read_dir(pod_dir.join("volumes/v")).expect("the volume");
    assert_eq!(files.count(), 2, "..data and its empty directory");
    let items = serde_json::json!([{"key": "b", "path": "b"}, {"key": "a", "path": "a"}]);
    let optional_key = serde_json::json!({"name": "cm", "optional": true, "items": items});
    assert_eq!(error(optional_key).await, None);
    assert_eq!(
        std::fs::read(pod_dir.join("volumes/v/a")).ok().as_deref(),
        Some(&b"1"[..])
    );
    assert!(!pod_dir.join("volumes/v/b").exists());
}

/// An update with a changed ConfigMap swaps the files; a subPath mount resolved before
/// keeps the file it had (it is not updated, as in Kubernetes), and one volume whose source
/// went missing keeps its files without holding up the others.
#[tokio::test]
async fn volumes_follow_their_sources_but_sub_paths_do_not() {
    let pod = config_pod(
        serde_json::json!([
            {"name": "cfg", "configMap": {"name": "cm"}},
            {"name": "gone", "configMap": {"name": "old"}},
            {"name": "info", "downwardAPI": {"items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            ]}},
        ]),
        serde_json::json!([{"name": "cfg", "mountPath": "/etc/key", "subPath": "key"}]),
    );
    let mut sources = Sources::default();
    config_map(&mut sources, "cm", &[("key", "one")]);
    config_map(&mut sources, "old", &[("k", "kept")]);
    let root = tempfile::tempdir().expect("a temp dir");
    let pod_dir = root.path().join("pod");
    prepare(&pod, &pod_dir, &sources).await.expect("prepared");
    let container = &pod.spec.as_ref().expect("a spec").containers[0];
    let bound = binds(&pod, &pod_dir, container, &sources).expect("binds");
    let sub_path = bound[0].source.clone();
    assert!(!sub_path.is_symlink(), "the file itself: {sub_path:?}");
    assert_eq!(std::fs::read(&sub_path).expect("read"), b"one");
    let held = std::fs::File::open(&sub_path).expect("opened, as a bind mount holds it");

    config_map(&mut sources, "cm", &[("key", "two")]);
    sources.config_maps.insert("old".into(), None);
    let mut relabelled = pod.clone();
    relabelled.metadata.labels = Some(BTreeMap::from([("tier".into(), "web".into())]));
    let again = update(&relabelled, &pod_dir, &sources).await;
    assert!(
        matches!(&again, Err(VolumeError::SetUp { volume, .. }) if volume == "gone"),
        "{again:?}"
    );
    let read = |p: &str| std::fs::read_to_string(pod_dir.join("volumes").join(p)).ok();
    assert_eq!(read("cfg/key").as_deref(), Some("two"));
    assert_eq!(read("gone/k").as_deref(), Some("kept"));
    assert_eq!(read("info/labels").as_deref(), Some("tier=\"web\"\n"));
    let mut old = String::new();
    std::io::Read::read_to_string(&mut &held, &mut old).expect("still readable");
    assert_eq!(old, "one");
    assert!(!sub_path.exists(), "the old set was removed");
}
