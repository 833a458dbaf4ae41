//! Crash safety: every write the server acknowledged survives a `kill -9` in the middle of a burst.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
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
