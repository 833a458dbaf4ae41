//! A thousand pod create/delete cycles on a real node agent (containerd, runc, CNI) leave
//! nothing behind: no container, snapshot, network namespace, pod IP, mount, iptables rule or
//! pod directory. Needs root (CI runs as root); scripts/setup.sh starts containerd.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};
use wasmkube_e2e::{Cluster, eventually};

const NODE: &str = "wk-leak";
/// 50 rounds of 20 pods at once: 1000 cycles.
const ROUNDS: usize = 50;
const PODS: usize = 20;

/// A command's output lines.
fn lines(program: &str, args: &[&str]) -> Result<Vec<String>> {
    let out = Command::new(program).args(args).output()?;
    if !out.status.success() {
        bail!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

/// What the test's pods left on the node: each entry a trace naming one of their uids.
fn traces(c: &Cluster, uids: &HashSet<String>) -> Result<Vec<String>> {
    let ctr = |args: &[&str]| {
        let mut all = vec!["-a", "/run/wasmkube/containerd.sock", "-n", "wasmkube"];
        all.extend(args);
        lines("ctr", &all)
    };
    let node_dir = c.dir.path().join("node");
    let mut found = Vec::new();
    let mut look = |what: &str, items: Vec<String>| {
        for item in items {
            if uids.iter().any(|uid| item.contains(uid.as_str())) {
                found.push(format!("{what}: {item}"));
            }
        }
    };
    look("container", ctr(&["containers", "ls", "-q"])?);
    look(
        "snapshot",
        ctr(&["snapshots", "--snapshotter", "overlayfs", "ls"])?,
    );
    look("task", ctr(&["tasks", "ls"])?);
    look("netns", names(Path::new("/run/netns")));
    look("namespaces", names(Path::new("/run/wasmkube/namespaces")));
    // cgroup v2 (`/sys/fs/cgroup/wasmkube`) or each v1 controller's hierarchy.
    look("cgroup", names(Path::new("/sys/fs/cgroup/wasmkube")));
    for controller in names(Path::new("/sys/fs/cgroup")) {
        let dir = Path::new("/sys/fs/cgroup")
            .join(&controller)
            .join("wasmkube");
        look(&format!("cgroup {controller}"), names(&dir));
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    look("mount", mountinfo.lines().map(str::to_string).collect());
    look("iptables", lines("iptables-save", &["-t", "nat"])?);
    // Everything under the node's directory belonged to these pods alone.
    for dir in ["pods", "fifo", "cni/results"] {
        for name in names(&node_dir.join(dir)) {
            found.push(format!("{dir}: {name}"));
        }
    }
    for name in names(&node_dir.join("cni/networks/wasmkube")) {
        if name.parse::<std::net::IpAddr>().is_ok() {
            found.push(format!("pod IP: {name}"));
        }
    }
    Ok(found)
}

fn names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `PODS` pods of round `round`: a shell that exits on SIGTERM, with a memory-backed emptyDir
/// and a ConfigMap volume (mounts), the first with a hostPort (iptables rules).
fn round(round: usize) -> String {
    (0..PODS)
        .map(|i| {
            let ports = if i == 0 {
                "\n    ports: [{containerPort: 80, hostPort: 18080}]"
            } else {
                ""
            };
            format!(
                "apiVersion: v1
kind: Pod
metadata:
  name: leak-{round}-{i}
  labels: {{round: \"{round}\"}}
spec:
  nodeName: {NODE}
  terminationGracePeriodSeconds: 5
  containers:
  - name: main
    image: busybox
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'trap \"exit 0\" TERM; sleep 3600 & wait']{ports}
    volumeMounts: [{{name: scratch, mountPath: /scratch}}, {{name: config, mountPath: /config}}]
  volumes:
  - name: scratch
    emptyDir: {{medium: Memory}}
  - name: config
    configMap: {{name: leak}}
---
"
            )
        })
        .collect()
}

#[test]
fn a_thousand_pod_lifecycles_leave_nothing_behind() -> Result<()> {
    let c = Cluster::node(NODE, "wkleak0", "10.249.0.0/16", &[])?;
    c.ok(&["create", "configmap", "leak", "--from-literal=key=value"])?;
    // The hostPort pod needs a `privileged` namespace (Pod Security's default is baseline).
    let privileged = "pod-security.kubernetes.io/enforce=privileged";
    c.ok(&["label", "namespace", "default", privileged])?;
    let mut uids = HashSet::new();
    for r in 0..ROUNDS {
        let began = std::time::Instant::now();
        let out = c.kubectl_stdin(&["apply", "-f", "-"], Some(&round(r)))?;
        if !out.status.success() {
            bail!("apply: {}", String::from_utf8_lossy(&out.stderr));
        }
        let selector = format!("round={r}");
        let waited = c.kubectl(&[
            "wait",
            "--for=condition=Ready",
            "pod",
            "-l",
            &selector,
            "--timeout=120s",
        ])?;
        if !waited.status.success() {
            let pods = c.ok(&["get", "pods", "-o", "wide"]).unwrap_or_default();
            bail!(
                "round {r}: pods not Ready: {}\n{pods}\n{}",
                String::from_utf8_lossy(&waited.stderr),
                c.log()
            );
        }
        let listed = c.ok(&[
            "get",
            "pods",
            "-l",
            &selector,
            "-o",
            "jsonpath={.items[*].metadata.uid}",
        ])?;
        uids.extend(listed.split_whitespace().map(str::to_string));
        let ready = began.elapsed();
        c.ok(&[
            "delete",
            "pods",
            "-l",
            &selector,
            "--wait",
            "--timeout=120s",
        ])?;
        eprintln!(
            "round {r}: Ready after {ready:?}, deleted after {:?}",
            began.elapsed() - ready
        );
    }
    assert_eq!(uids.len(), ROUNDS * PODS);
    let mut left = Vec::new();
    let settled = eventually(Duration::from_secs(60), || {
        left = traces(&c, &uids)?;
        Ok(left.is_empty())
    });
    if settled.is_err() {
        bail!(
            "after {} pods, {} traces are left:\n{}\n{}",
            uids.len(),
            left.len(),
            left.join("\n"),
            c.log()
        );
    }
    Ok(())
}
