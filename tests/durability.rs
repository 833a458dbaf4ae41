//! Crash safety: every write the server acknowledged survives a `kill -9` in the middle of a
//! burst; and a snapshot taken while the cluster serves restores it as it was.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use base64::Engine as _;
use wasmkube_e2e::Cluster;

/// Creates ConfigMaps through the HTTPS API with curl, one request at a time per writer,
/// remembering the names the server answered 201 for.
fn writer(
    port: u16,
    token: String,
    ca: std::path::PathBuf,
    id: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
) {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) && n < 5000 {
        let name = format!("burst-{id}-{n}");
        let body = format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}},"data":{{"n":"{n}"}}}}"#
        );
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
                "--cacert",
            ])
            .arg(&ca)
            .args([
                "-H",
                &format!("Authorization: Bearer {token}"),
                "-H",
                "Content-Type: application/json",
                "-d",
                &body,
            ])
            .arg(format!(
                "https://127.0.0.1:{port}/api/v1/namespaces/default/configmaps"
            ))
            .stderr(Stdio::null())
            .output();
        match out {
            Ok(o) if o.stdout == b"201" => acked.lock().expect("not poisoned").push(name),
            _ => break,
        }
        n += 1;
    }
}

#[test]
fn acknowledged_writes_survive_kill_9() -> Result<()> {
    let mut c = Cluster::start()?;
    let token = c.token()?;
    let ca = c.dir.path().join("pki/ca.crt");
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..4)
        .map(|id| {
            let (token, ca, stop, acked) = (token.clone(), ca.clone(), stop.clone(), acked.clone());
            let port = c.port;
            std::thread::spawn(move || writer(port, token, ca, id, stop, acked))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    c.kill();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.join();
    }
    let acked = acked.lock().expect("not poisoned").clone();
    assert!(
        acked.len() > 20,
        "the burst should have written something before the kill, got {}",
        acked.len()
    );

    c.restart()?;
    let names = c.ok(&["get", "configmaps", "-o", "name"])?;
    let stored: std::collections::HashSet<&str> = names
        .lines()
        .filter_map(|l| l.strip_prefix("configmap/"))
        .collect();
    let lost: Vec<&String> = acked
        .iter()
        .filter(|n| !stored.contains(n.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes were lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        lost.first()
    );
    Ok(())
}

/// `wasmkube snapshot restore FILE --data-dir DIR`.
fn restore(file: &std::path::Path, dir: &std::path::Path) -> Result<std::process::Output> {
    Ok(Command::new(wasmkube_e2e::binary())
        .args(["snapshot", "restore"])
        .arg(file)
        .arg("--data-dir")
        .arg(dir)
        .output()?)
}

/// `wasmkube snapshot save` through the API while the cluster serves, `snapshot restore` into the
/// data directory's store, and the cluster back as it was at the snapshot: objects with their
/// resourceVersions and bytes, nothing written after it; a damaged file restores nothing.
#[test]
fn a_snapshot_brings_the_cluster_back_as_it_was() -> Result<()> {
    let mut c = Cluster::start()?;
    let dir = tempfile::tempdir()?;
    let binary: Vec<u8> = (0..=255u8).collect();
    let binary_file = dir.path().join("blob");
    std::fs::write(&binary_file, &binary)?;
    c.ok(&[
        "create",
        "configmap",
        "kept",
        "--from-literal",
        "greeting=hello",
    ])?;
    c.ok(&[
        "create",
        "secret",
        "generic",
        "blob",
        &format!("--from-file=blob={}", binary_file.display()),
    ])?;
    let version = |c: &Cluster, what: &str| -> Result<String> {
        c.ok(&["get", what, "-o", "jsonpath={.metadata.resourceVersion}"])
    };
    let kept_version = version(&c, "configmap/kept")?;
    let plugins = c.ok(&["get", "plugins", "-o", "name"])?;

    let file = dir.path().join("cluster.snap");
    let saved = c.wasmkube(&["snapshot", "save", &file.display().to_string()])?;
    assert!(saved.starts_with("saved revision "), "{saved}");
    c.ok(&["create", "configmap", "after", "--from-literal", "x=y"])?;

    // A damaged copy restores nothing.
    let mut damaged = std::fs::read(&file)?;
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x40;
    let damaged_file = dir.path().join("damaged.snap");
    std::fs::write(&damaged_file, &damaged)?;
    let elsewhere = dir.path().join("elsewhere");
    let out = restore(&damaged_file, &elsewhere)?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("checksum"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!elsewhere.join("store.redb").exists());

    // The store replaced by the snapshot (the data directory keeps its pki).
    c.kill();
    let store = c.dir.path().join("store.redb");
    let out = restore(&file, c.dir.path())?;
    assert!(!out.status.success(), "a restore never overwrites a store");
    std::fs::remove_file(&store)?;
    let out = restore(&file, c.dir.path())?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.restart()?;

    assert_eq!(version(&c, "configmap/kept")?, kept_version);
    assert_eq!(
        c.ok(&[
            "get",
            "configmap",
            "kept",
            "-o",
            "jsonpath={.data.greeting}"
        ])?,
        "hello"
    );
    let blob = c.ok(&["get", "secret", "blob", "-o", "jsonpath={.data.blob}"])?;
    assert_eq!(
        base64::engine::general_purpose::STANDARD.decode(blob)?,
        binary
    );
    assert!(
        c.fails(&["get", "configmap", "after"])?
            .contains("NotFound")
    );
    assert_eq!(c.ok(&["get", "plugins", "-o", "name"])?, plugins);
    // New writes come after every version the snapshot held.
    c.ok(&["create", "configmap", "new", "--from-literal", "x=y"])?;
    let new: i64 = version(&c, "configmap/new")?.parse()?;
    assert!(new > kept_version.parse::<i64>()?);
    Ok(())
}

/// The pods of a Deployment on a real node, as `phase restarts containerID` lines, sorted.
fn running(c: &Cluster) -> Result<Vec<String>> {
    let out = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=kept",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].containerID}{\"\\n\"}{end}",
    ])?;
    let mut lines: Vec<String> = out.lines().map(str::to_string).collect();
    lines.sort();
    Ok(lines)
}

/// Stop everything (SIGTERM) and start it again, then restore a snapshot into a fresh data
/// directory (with the old `pki/`, and the node's own state where it was): the objects, the
/// plugins and the running pods are as they were, the same containers, none started again.
#[test]
fn a_stopped_or_restored_cluster_keeps_its_running_pods() -> Result<()> {
    let (node, bridge, network) = ("durable", "wkdur0", "10.232.0.0/16");
    let mut c = Cluster::node(node, bridge, network, &[])?;
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: kept\nspec:\n  replicas: 3\n  selector:\n    matchLabels: {app: kept}\n  template:\n    metadata:\n      labels: {app: kept}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: sleep\n        image: busybox\n        imagePullPolicy: IfNotPresent\n        command: [sleep, '3600']\n";
    c.apply(deployment)?;
    let all_running = |c: &Cluster| -> Result<bool> {
        let pods = running(c)?;
        Ok(pods.len() == 3 && pods.iter().all(|l| l.contains(" Running 0 containerd://")))
    };
    wasmkube_e2e::eventually(Duration::from_secs(120), || all_running(&c))?;
    let before = running(&c)?;
    let plugins = c.ok(&["get", "plugins", "-o", "name"])?;
    let replicasets = c.ok(&["get", "replicasets", "-l", "app=kept", "-o", "name"])?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("cluster.snap");
    c.wasmkube(&["snapshot", "save", &file.display().to_string()])?;

    // Stopped cleanly and started again: the same pods, the same containers.
    c.terminate()?;
    c.restart()?;
    let settled = |c: &Cluster| -> Result<bool> { Ok(all_running(c)? && running(c)? == before) };
    wasmkube_e2e::eventually(Duration::from_secs(60), || settled(&c))?;

    // Restored into a fresh data directory: the node's state stays the machine's.
    c.terminate()?;
    let fresh = tempfile::tempdir()?;
    let status = Command::new("cp")
        .arg("-a")
        .arg(c.dir.path().join("pki"))
        .arg(fresh.path())
        .status()?;
    anyhow::ensure!(status.success(), "copying the pki");
    let out = restore(&file, fresh.path())?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let node_dir = c.dir.path().join("node").display().to_string();
    let log_dir = c.dir.path().join("logs").display().to_string();
    let extra = [
        "--node-dir",
        node_dir.as_str(),
        "--log-dir",
        log_dir.as_str(),
    ];
    let r = Cluster::node_in(fresh, c.port, node, bridge, network, &extra)?;
    wasmkube_e2e::eventually(Duration::from_secs(60), || settled(&r))?;
    assert_eq!(r.ok(&["get", "plugins", "-o", "name"])?, plugins);
    assert_eq!(
        r.ok(&["get", "replicasets", "-l", "app=kept", "-o", "name"])?,
        replicasets
    );
    // Still running a while later: nothing replaced them.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(running(&r)?, before);
    // `c`, dropped after `r`, deletes the bridge they share.
    r.ok(&["delete", "deployment", "kept", "--wait=true"])?;
    Ok(())
}
