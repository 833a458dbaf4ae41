//! Config that reaches pods, on a real node (containerd, runc, CNI) with the real kubectl: a
//! pod created before its ConfigMap waits with a `FailedMount` Event (one reading it as an env
//! var with `CreateContainerConfigError`) and starts once the ConfigMap exists; a changed value
//! reaches the mounted file within 90 s (a changed Secret and label theirs) while the env var
//! and a subPath mount keep the old one; Secret values arrive byte for byte; `optional: true`
//! sources may be missing. One cluster for the file. Needs root (CI runs as root);
//! scripts/setup.sh starts containerd and builds the image.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use wasmkube_e2e::{Cluster, eventually};

const NODE: &str = "wk-config";

/// The kubelet's sync period with its jitter is at most 80 s here; 90 s is the promise.
const UPDATE_WITHIN: Duration = Duration::from_secs(90);

/// A busybox pod on the node that sleeps; `volumes` and `container` are YAML indented as the
/// pod spec's and the container's fields.
fn pod(name: &str, volumes: &str, container: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeName: {NODE}
  terminationGracePeriodSeconds: 0
{volumes}  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: Never
    command: [sleep, '3600']
{container}"
    )
}

/// The Secret `creds`: `pw` as given in base64, `bin` bytes that are not text.
fn secret(pw: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\ndata:\n  pw: {pw}\n  bin: AP+AQQoA/g==\n"
    )
}

fn config_map(greeting: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  greeting: {greeting}\n"
    )
}

/// Waits for the pod's first container to wait with `reason`.
fn waiting(c: &Cluster, pod: &str, reason: &str) -> Result<String> {
    let path = "jsonpath={.status.containerStatuses[0].state.waiting}";
    let mut seen = String::new();
    eventually(Duration::from_secs(60), || {
        seen = c.ok(&["get", "pod", pod, "-o", path])?;
        Ok(seen.contains(reason))
    })
    .map_err(|e| anyhow!("{pod} not waiting with {reason}: {e}; saw {seen}"))?;
    Ok(seen)
}

fn running(c: &Cluster, pod: &str, within: Duration) -> Result<()> {
    eventually(within, || {
        let phase = c.ok(&["get", "pod", pod, "-o", "jsonpath={.status.phase}"])?;
        Ok(phase == "Running")
    })
    .map_err(|e| {
        let describe = c.ok(&["describe", "pod", pod]).unwrap_or_default();
        anyhow!("{pod} not Running: {e}\n{describe}\n{}", c.log())
    })
}

/// The messages of the Events about `pod` with `reason`.
fn events(c: &Cluster, pod: &str, reason: &str) -> Result<String> {
    let selector = format!("involvedObject.name={pod},reason={reason}");
    let path = "jsonpath={range .items[*]}{.type} {.message}{'\\n'}{end}";
    c.ok(&["get", "events", "--field-selector", &selector, "-o", path])
}

/// What `command` prints in the pod.
fn exec(c: &Cluster, pod: &str, command: &[&str]) -> Result<String> {
    let mut args = vec!["exec", pod, "--"];
    args.extend(command);
    c.ok(&args)
}

#[test]
fn config_reaches_pods() -> Result<()> {
    let c = Cluster::node(NODE, "wkcfg0", "10.241.0.0/16", &["--agent-port", "0"])?;

    // `hunter22` and bytes that are not text, as base64 in the Secret.
    c.apply(&secret("aHVudGVyMjI="))?;
    c.apply(&pod(
        "secret-reader",
        "  volumes:\n  - name: s\n    secret: {secretName: creds, defaultMode: 0400}\n",
        "    volumeMounts: [{name: s, mountPath: /s}]\n",
    ))?;
    // Every kind of optional reference to objects that do not exist.
    c.apply(&pod(
        "optional",
        "  volumes:\n  - name: v\n    configMap: {name: nothere, optional: true}\n  - name: p\n    projected:\n      sources:\n      - secret: {name: nosecret, optional: true}\n      - configMap: {name: nothere, optional: true, items: [{key: k, path: k}]}\n",
        "    envFrom: [{secretRef: {name: nosecret, optional: true}}]
    env:
    - {name: A, valueFrom: {configMapKeyRef: {name: nothere, key: k, optional: true}}}
    - {name: B, valueFrom: {secretKeyRef: {name: creds, key: nokey, optional: true}}}
    volumeMounts: [{name: v, mountPath: /v}, {name: p, mountPath: /p}]
",
    ))?;
    // Before their ConfigMap: one mounts it (and a key of it by subPath), one reads it as an
    // env var only.
    c.apply(&pod(
        "early",
        "  volumes:
  - name: cfg
    configMap: {name: app}
  - name: info
    downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}
",
        "    env: [{name: GREETING, valueFrom: {configMapKeyRef: {name: app, key: greeting}}}]
    volumeMounts:
    - {name: cfg, mountPath: /cfg}
    - {name: info, mountPath: /info}
    - {name: cfg, mountPath: /etc/greeting, subPath: greeting}
",
    ))?;
    c.apply(&pod(
        "early-env",
        "",
        "    env: [{name: GREETING, valueFrom: {configMapKeyRef: {name: app, key: greeting}}}]\n",
    ))?;

    // Missing optional sources are no error: empty volumes, no variables.
    running(&c, "optional", Duration::from_secs(60))?;
    assert_eq!(
        exec(&c, "optional", &["find", "/v", "/p", "-type", "f"])?,
        ""
    );
    let vars = exec(&c, "optional", &["sh", "-c", "echo ${A-unset} ${B-unset}"])?;
    assert_eq!(vars.trim(), "unset unset");

    // Secret values byte for byte, with their mode.
    running(&c, "secret-reader", Duration::from_secs(60))?;
    assert_eq!(exec(&c, "secret-reader", &["cat", "/s/pw"])?, "hunter22");
    let bytes = exec(&c, "secret-reader", &["od", "-An", "-tx1", "-v", "/s/bin"])?;
    let bytes: Vec<&str> = bytes.split_whitespace().collect();
    assert_eq!(bytes, ["00", "ff", "80", "41", "0a", "00", "fe"]);
    let mode = exec(&c, "secret-reader", &["stat", "-L", "-c", "%a", "/s/pw"])?;
    assert_eq!(mode.trim(), "400");

    // Waiting for the ConfigMap: a FailedMount Event in the kubelet's words, the env reader
    // refused with CreateContainerConfigError.
    let failed_mount =
        r#"Warning MountVolume.SetUp failed for volume "cfg" : configmap "app" not found"#;
    eventually(Duration::from_secs(60), || {
        Ok(events(&c, "early", "FailedMount")?.contains(failed_mount))
    })
    .map_err(|e| anyhow!("no FailedMount Event on early: {e}\n{}", c.log()))?;
    let refused = waiting(&c, "early-env", "CreateContainerConfigError")?;
    assert!(
        refused.contains(r#"configmap \"app\" not found"#),
        "{refused}"
    );
    let phase = c.ok(&["get", "pod", "early", "-o", "jsonpath={.status.phase}"])?;
    assert_eq!(phase, "Pending");

    // The ConfigMap comes: both start (retried within 10 s).
    c.apply(&config_map("hello"))?;
    running(&c, "early", Duration::from_secs(30))?;
    running(&c, "early-env", Duration::from_secs(30))?;
    let read = |pod: &str, command: &[&str]| -> Result<String> {
        Ok(exec(&c, pod, command)?.trim().to_string())
    };
    let env = ["sh", "-c", "echo $GREETING"];
    assert_eq!(read("early", &["cat", "/cfg/greeting"])?, "hello");
    assert_eq!(read("early", &["cat", "/etc/greeting"])?, "hello");
    assert_eq!(read("early", &env)?, "hello");
    assert_eq!(read("early-env", &env)?, "hello");
    // The kubelet's layout: the key a symlink through `..data`.
    assert_eq!(
        read("early", &["readlink", "/cfg/greeting"])?,
        "..data/greeting"
    );

    // A changed value reaches the mounted file (and a changed Secret and label theirs); the
    // env var and the subPath do not change.
    c.apply(&config_map("changed"))?;
    c.apply(&secret("aHVudGVyMjM="))?;
    c.ok(&["label", "pod", "early", "tier=web"])?;
    let changed = Instant::now();
    let mut seen = Vec::new();
    let wanted = ["changed", "hunter23", "tier=\"web\""];
    eventually(UPDATE_WITHIN, || {
        seen = vec![
            read("early", &["cat", "/cfg/greeting"])?,
            read("secret-reader", &["cat", "/s/pw"])?,
            read("early", &["cat", "/info/labels"])?,
        ];
        if seen != wanted {
            std::thread::sleep(Duration::from_secs(1));
        }
        Ok(seen == wanted)
    })
    .map_err(|e| anyhow!("the mounted files still say {seen:?}: {e}\n{}", c.log()))?;
    eprintln!(
        "the changes were in the files after {:?}",
        changed.elapsed()
    );
    assert_eq!(read("early", &["cat", "/etc/greeting"])?, "hello");
    assert_eq!(read("early", &env)?, "hello");
    // Only one set of files in the volume: the old one was removed.
    let sets = read(
        "early",
        &["sh", "-c", "ls -d /cfg/..?* | grep -cv '/..data$'"],
    )?;
    assert_eq!(sets, "1");
    Ok(())
}
