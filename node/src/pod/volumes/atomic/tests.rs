//! Tests of the atomic writer: its layout, the swap, what it removes, what it refuses, and a
//! reader racing it.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use super::*;

fn files(entries: &[(&str, &str)]) -> Files {
    entries
        .iter()
        .map(|(path, text)| (path.to_string(), (text.as_bytes().to_vec(), 0o644)))
        .collect()
}

/// The names in `dir`, sorted, each with what it links to (empty for a directory or file).
fn listing(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .expect("listed")
        .map(|e| {
            let e = e.expect("an entry");
            let target = std::fs::read_link(e.path())
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            (e.file_name().to_string_lossy().into_owned(), target)
        })
        .collect()
}

fn timestamped(listing: &BTreeMap<String, String>) -> Vec<String> {
    listing
        .keys()
        .filter(|n| n.starts_with("..") && *n != DATA)
        .cloned()
        .collect()
}

#[test]
fn files_live_in_a_timestamped_directory_behind_data_symlinks() {
    let root = tempfile::tempdir().expect("a temp dir");
    let dir = root.path();
    let mut payload = files(&[("a", "1"), ("d/b", "2")]);
    payload.insert("secret".into(), (vec![0x00, 0xff, 0x80], 0o400));
    assert!(changed(dir, &payload).expect("compared"));
    write(dir, &payload).expect("written");

    let listed = listing(dir);
    let stamped = timestamped(&listed);
    assert_eq!(stamped.len(), 1, "{listed:?}");
    let stamp = &stamped[0];
    // `..2006_01_02_15_04_05.NNNNNNNNN`, as the kubelet's.
    assert_eq!(stamp.len(), 31, "{stamp}");
    assert!(
        stamp[2..]
            .chars()
            .all(|c| c.is_ascii_digit() || c == '_' || c == '.')
    );
    let expected: BTreeMap<String, String> = [
        (DATA, stamp.as_str()),
        ("a", "..data/a"),
        ("d", "..data/d"),
        ("secret", "..data/secret"),
        (stamp.as_str(), ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(listed, expected);
    assert_eq!(std::fs::read(dir.join("d/b")).expect("read"), b"2");
    assert_eq!(
        std::fs::read(dir.join("secret")).expect("read"),
        [0x00, 0xff, 0x80]
    );
    let mode = |p: &str| {
        std::fs::metadata(dir.join(p))
            .map(|m| m.permissions().mode() & 0o777)
            .ok()
    };
    assert_eq!(mode("secret"), Some(0o400));
    assert_eq!(mode(stamp), Some(0o755));
    assert!(!changed(dir, &payload).expect("compared"));
    let mut other_mode = payload.clone();
    other_mode.insert("a".into(), (b"1".to_vec(), 0o600));
    assert!(changed(dir, &other_mode).expect("compared"));
}

#[test]
fn an_update_swaps_data_and_removes_the_old_set() {
    let root = tempfile::tempdir().expect("a temp dir");
    let dir = root.path();
    write(dir, &files(&[("a", "1"), ("d/b", "2")])).expect("written");
    let before = timestamped(&listing(dir));
    write(dir, &files(&[("a", "3"), ("c", "4")])).expect("rewritten");
    let listed = listing(dir);
    let after = timestamped(&listed);
    assert_eq!(after.len(), 1, "{listed:?}");
    assert_ne!(before, after, "a new directory");
    assert_eq!(listed.get(DATA), Some(&after[0]));
    assert!(!listed.contains_key("d"), "a name no longer shown goes");
    assert_eq!(std::fs::read(dir.join("a")).expect("read"), b"3");
    assert_eq!(std::fs::read(dir.join("c")).expect("read"), b"4");
    // Empty, as an optional source that is missing.
    write(dir, &Files::new()).expect("emptied");
    let listed = listing(dir);
    assert_eq!(listed.len(), 2, "..data and its directory: {listed:?}");
    assert!(!changed(dir, &Files::new()).expect("compared"));
}

/// Files of the layout before this writer (plain files in the volume), a stale `..data_tmp`
/// and an interrupted write's directory are replaced by the layout.
#[test]
fn leftovers_are_replaced() {
    let root = tempfile::tempdir().expect("a temp dir");
    let dir = root.path();
    std::fs::write(dir.join("a"), b"old").expect("a plain file");
    std::fs::create_dir(dir.join("d")).expect("a plain dir");
    std::fs::write(dir.join("gone"), b"old").expect("a plain file");
    std::fs::create_dir(dir.join("..2020_01_01_00_00_00.1")).expect("a stale dir");
    std::os::unix::fs::symlink("/", dir.join(DATA_TMP)).expect("a stale link");
    // `..data` pointing at itself (or anywhere but a timestamped directory) is no set.
    std::os::unix::fs::symlink(DATA, dir.join(DATA)).expect("a looping link");
    assert!(changed(dir, &Files::new()).expect("compared"));
    write(dir, &files(&[("a", "new"), ("d/b", "x")])).expect("written");
    let listed = listing(dir);
    assert_eq!(listed.len(), 4, "{listed:?}");
    assert_eq!(listed.get("a").map(String::as_str), Some("..data/a"));
    assert_eq!(std::fs::read(dir.join("d/b")).expect("read"), b"x");
}

/// Keys that would be the writer's own names or leave the volume are refused before anything
/// is written.
#[test]
fn hostile_paths_are_refused() {
    let root = tempfile::tempdir().expect("a temp dir");
    let dir = root.path();
    let long = "x".repeat(256);
    let too_long = "a/".repeat(2049);
    for path in [
        DATA,
        "..data/x",
        "..2020_01_01_00_00_00.1",
        "..",
        "../x",
        "a/../../x",
        "/etc/passwd",
        "",
        long.as_str(),
        too_long.as_str(),
    ] {
        let payload = files(&[(path, "x")]);
        let refused = write(dir, &payload);
        assert!(
            matches!(refused, Err(VolumeError::Path { .. })),
            "{path}: {refused:?}"
        );
        assert!(matches!(
            changed(dir, &payload),
            Err(VolumeError::Path { .. })
        ));
    }
    assert_eq!(listing(dir).len(), 0);
    // A dot in the middle of a name, or `..` not first, is a name like any other.
    write(dir, &files(&[("a..b", "1"), ("d/..x", "2")])).expect("written");
    assert_eq!(std::fs::read(dir.join("d/..x")).expect("read"), b"2");
}

/// A reader that opens `..data` once and reads every file through it sees one set, never half
/// of one and half of the next, however the writer races it.
#[test]
fn a_reader_never_sees_a_mix() {
    let root = tempfile::tempdir().expect("a temp dir");
    let dir = root.path().to_path_buf();
    let set = |n: usize| {
        let text = n.to_string();
        files(&[("a", &text), ("b", &text), ("d/c", &text)])
    };
    write(&dir, &set(0)).expect("written");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (dir, stop) = (dir.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut whole = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Resolved once; the directory stays readable while it is held open, or is
                // gone (removed after a swap) and then nothing is read from it.
                let Ok(data) = std::fs::File::open(dir.join(DATA)) else {
                    continue;
                };
                let read = |name: &str| {
                    let path = format!("/proc/self/fd/{}/{name}", data_fd(&data));
                    std::fs::read(path).ok()
                };
                let seen = [read("a"), read("b"), read("d/c")];
                if seen.iter().all(Option::is_some) {
                    assert!(seen.iter().all(|s| *s == seen[0]), "a mix: {seen:?}");
                    whole += 1;
                }
            }
            whole
        })
    };
    for n in 1..300 {
        write(&dir, &set(n)).expect("rewritten");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let whole = reader.join().expect("the reader");
    assert!(whole > 0, "the reader read whole sets");
    assert_eq!(timestamped(&listing(&dir)).len(), 1);
}

fn data_fd(file: &std::fs::File) -> i32 {
    std::os::fd::AsRawFd::as_raw_fd(file)
}
