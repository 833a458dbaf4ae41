//! Hostile pods and images on a real node (containerd, runc, CNI): an image USER that names
//! nobody and runAsNonRoot with root are refused, exec probes run as the container's user,
//! RuntimeDefault seccomp filters, a subPath through a planted symlink is refused, Secret
//! volumes live on a tmpfs, /proc and /sys are masked, a foreign pod CIDR gets no route, and a
//! fork bomb is held by
//! the pids limit while the API server and the agent keep answering. Needs root (CI runs as
//! root); scripts/setup.sh starts containerd and builds the images.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use wasmkube_e2e::{Cluster, eventually, target_dir};

const NODE: &str = "wk-hostile";

fn up() -> Result<Cluster> {
    let c = Cluster::node(NODE, "wkhost0", "10.246.0.0/16", &[])?;
    let images = target_dir().join("images/busybox-users.tar");
    c.wasmkube(&["image", "import", &images.display().to_string()])
        .context("run scripts/build-images.sh")?;
    Ok(c)
}

/// A pod on the node running `script` in `image`, never restarted; `extra` is YAML indented
/// as the container's fields, `pod_extra` as the pod spec's.
fn pod(name: &str, image: &str, script: &str, extra: &str, pod_extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {NODE}\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 0\n{pod_extra}  containers:\n  - name: main\n    image: {image}\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, {script:?}]\n{extra}"
    )
}

/// A field of a pod through kubectl's jsonpath.
fn field(c: &Cluster, pod: &str, path: &str) -> Result<String> {
    c.ok(&["get", "pod", pod, "-o", &format!("jsonpath={{{path}}}")])
}

fn phase_is(c: &Cluster, pod: &str, phase: &str) -> Result<()> {
    eventually(Duration::from_secs(60), || {
        Ok(field(c, pod, ".status.phase")? == phase)
    })
    .map_err(|e| {
        let describe = c.ok(&["describe", "pod", pod]).unwrap_or_default();
        anyhow::anyhow!("pod {pod} not {phase}: {e}\n{describe}\n{}", c.log())
    })
}

/// Waits for the container of `pod` to wait with CreateContainerConfigError and a message
/// containing `needle`, and for the kubelet's `Failed` Event saying so.
fn refused(c: &Cluster, pod: &str, needle: &str) -> Result<()> {
    let reason = "CreateContainerConfigError";
    let waiting = ".status.containerStatuses[0].state.waiting";
    eventually(Duration::from_secs(60), || {
        Ok(field(c, pod, &format!("{waiting}.reason"))? == reason)
    })
    .map_err(|e| anyhow::anyhow!("{pod} not {reason}: {e}\n{}", c.log()))?;
    let message = field(c, pod, &format!("{waiting}.message"))?;
    assert!(message.contains(needle), "{pod}: {message:?}");
    let selector = format!("involvedObject.name={pod}");
    eventually(Duration::from_secs(30), || {
        let events = c.ok(&[
            "get",
            "events",
            "--field-selector",
            &selector,
            "-o",
            "jsonpath={.items[*].message}",
        ])?;
        Ok(events.contains(&format!("Error: {needle}")))
    })
}

/// The server serves and the agent answers (a new pod runs to its end and its log is read).
fn still_serving(c: &Cluster, name: &str) -> Result<()> {
    c.ok(&["get", "--raw", "/readyz"])?;
    c.apply(&pod(name, "busybox", "echo alive", "", ""))?;
    phase_is(c, name, "Succeeded")?;
    assert_eq!(c.ok(&["logs", name])?.trim(), "alive");
    Ok(())
}

#[test]
fn users_seccomp_and_secret_volumes_hold() -> Result<()> {
    let c = up()?;

    // Each refused as the kubelet refuses it: CreateContainerConfigError and a Failed Event.
    // An image USER in no /etc/passwd of the image (never run as root instead); runAsNonRoot
    // with root from the image or from runAsUser 0; a Localhost seccomp profile.
    let non_root = "  securityContext: {runAsNonRoot: true}\n";
    let user0 = "    securityContext: {runAsUser: 0}\n";
    let localhost =
        "  securityContext: {seccompProfile: {type: Localhost, localhostProfile: x.json}}\n";
    let refusals = [
        (
            "unknown",
            "busybox:nosuchuser",
            "",
            "",
            "unable to find user nosuchuser: no matching entries in passwd file",
        ),
        (
            "rootimage",
            "busybox",
            "",
            non_root,
            "container has runAsNonRoot and image will run as root (pod: \"rootimage_default(",
        ),
        (
            "runas0",
            "busybox:nobody",
            user0,
            non_root,
            "container's runAsUser breaks non-root policy",
        ),
        (
            "localhost",
            "busybox",
            "",
            localhost,
            "seccomp profile type Localhost is not supported",
        ),
    ];
    for (name, image, extra, pod_extra, _) in refusals {
        c.apply(&pod(name, image, "id -u", extra, pod_extra))?;
    }
    for (name, _, _, _, message) in refusals {
        refused(&c, name, message)?;
    }

    // USER nobody resolves through the image's files; the exec probe runs as that user too,
    // with no new privileges (NoNewPrivs: 1 in its status).
    let probe = "    readinessProbe:\n      exec: {command: [sh, -c, 'test \"$(id -u):$(id -g)\" = 65534:65534 && grep -q \"NoNewPrivs:.1\" /proc/self/status']}\n      periodSeconds: 1\n";
    c.apply(&pod(
        "nobody",
        "busybox:nobody",
        "id -u; id -G; sleep 3600",
        probe,
        non_root,
    ))?;
    eventually(Duration::from_secs(60), || {
        Ok(field(&c, "nobody", ".status.containerStatuses[0].ready")? == "true")
    })
    .map_err(|e| anyhow::anyhow!("nobody never ready: {e}\n{}", c.log()))?;
    assert_eq!(c.ok(&["logs", "nobody"])?, "65534\n65534\n");

    // RuntimeDefault seccomp: the process is filtered and a user namespace (which needs no
    // capability) cannot be made; without a profile both are as before.
    let check = "grep Seccomp: /proc/self/status; unshare -U true 2>/dev/null && echo unshared || echo refused";
    let seccomp = "  securityContext: {seccompProfile: {type: RuntimeDefault}}\n";
    c.apply(&pod("filtered", "busybox", check, "", seccomp))?;
    c.apply(&pod("unfiltered", "busybox", check, "", ""))?;
    phase_is(&c, "filtered", "Succeeded")?;
    phase_is(&c, "unfiltered", "Succeeded")?;
    let filtered = c.ok(&["logs", "filtered"])?;
    assert_eq!(filtered, "Seccomp:\t2\nrefused\n");
    assert!(
        c.ok(&["logs", "unfiltered"])?.starts_with("Seccomp:\t0\n"),
        "unfiltered"
    );

    // An init container plants `escape -> /` in an emptyDir; the next container's subPath
    // through it is refused, never the host's root.
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: escape\nspec:\n  nodeName: {NODE}\n  restartPolicy: Never\n  volumes: [{{name: data, emptyDir: {{}}}}]\n  initContainers:\n  - name: plant\n    image: busybox\n    imagePullPolicy: IfNotPresent\n    command: [ln, -s, /, /data/escape]\n    volumeMounts: [{{name: data, mountPath: /data}}]\n  containers:\n  - name: main\n    image: busybox\n    imagePullPolicy: IfNotPresent\n    command: [ls, /host]\n    volumeMounts: [{{name: data, mountPath: /host, subPath: escape}}]\n"
    ))?;
    refused(&c, "escape", "path \"escape\" crosses a symlink")?;

    // A subPath that stays inside its volume is pinned: the runtime mounts a private bind
    // mount of what the agent opened (kubelet's volume-subpaths), gone with the pod.
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: pinned\nspec:\n  nodeName: {NODE}\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 0\n  volumes: [{{name: data, emptyDir: {{}}}}]\n  initContainers:\n  - name: plant\n    image: busybox\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, 'mkdir /data/sub && echo inside > /data/sub/f']\n    volumeMounts: [{{name: data, mountPath: /data}}]\n  containers:\n  - name: main\n    image: busybox\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, 'cat /host/f; sleep 3600']\n    volumeMounts: [{{name: data, mountPath: /host, subPath: sub}}]\n"
    ))?;
    phase_is(&c, "pinned", "Running")?;
    let pinned_uid = field(&c, "pinned", ".metadata.uid")?;
    let pin = format!("/pods/{pinned_uid}/volume-subpaths/data/main/0 ");
    let pinned = || std::fs::read_to_string("/proc/self/mounts").is_ok_and(|m| m.contains(&pin));
    assert!(pinned(), "no pinned mount {pin}");
    eventually(Duration::from_secs(10), || {
        Ok(c.ok(&["logs", "pinned"])?.contains("inside"))
    })?;
    c.ok(&["delete", "pod", "pinned", "--wait=true", "--timeout=30s"])?;
    eventually(Duration::from_secs(30), || Ok(!pinned()))?;

    // A Secret volume is a tmpfs: in the container and on the host, where it is gone with
    // the pod.
    c.apply(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  password: hunter2\n",
    )?;
    let mounts = "    volumeMounts: [{name: secret, mountPath: /secret}]\n";
    let volumes = "  volumes: [{name: secret, secret: {secretName: creds}}]\n";
    let script = "grep ' /secret ' /proc/mounts; cat /secret/password; echo; sleep 3600";
    c.apply(&pod("secret", "busybox", script, mounts, volumes))?;
    phase_is(&c, "secret", "Running")?;
    eventually(Duration::from_secs(10), || {
        Ok(c.ok(&["logs", "secret"])?.contains("hunter2"))
    })?;
    let logs = c.ok(&["logs", "secret"])?;
    assert!(logs.starts_with("tmpfs /secret tmpfs ro,"), "{logs:?}");
    let uid = field(&c, "secret", ".metadata.uid")?;
    let host_mounts = || std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let on_host = |mounts: &str| {
        mounts
            .lines()
            .any(|l| l.starts_with("tmpfs ") && l.contains(&format!("/pods/{uid}/volumes/secret ")))
    };
    assert!(
        on_host(&host_mounts()),
        "no tmpfs for the secret volume on the host"
    );
    c.ok(&["delete", "pod", "secret", "--wait=true", "--timeout=30s"])?;
    eventually(Duration::from_secs(30), || Ok(!on_host(&host_mounts())))?;

    // containerd's masked and read-only paths: host data in /proc and /sys reads empty, and
    // /proc/sys and /proc/sysrq-trigger cannot be written (root in the container included).
    // (Of the masked paths, these exist and have content on the host, in CI too.)
    let script = "echo keys=$(wc -c < /proc/keys) timers=$(wc -c < /proc/timer_list) firmware=$(ls /sys/firmware | wc -l); \
        (echo 1 > /proc/sys/kernel/domainname) 2>/dev/null && echo wrote-sys; \
        (echo h > /proc/sysrq-trigger) 2>/dev/null && echo wrote-sysrq; echo done";
    c.apply(&pod("masked", "busybox", script, "", ""))?;
    phase_is(&c, "masked", "Succeeded")?;
    assert_eq!(
        c.ok(&["logs", "masked"])?.trim(),
        "keys=0 timers=0 firmware=0\ndone"
    );

    // A Node whose pod CIDR lies outside the cluster's pod network gets no route on this node,
    // and a Warning Event says why (it could otherwise take over any subnet of the machine).
    c.apply(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: rogue\nspec:\n  podCIDR: 10.99.0.0/24\n",
    )?;
    c.ok(&[
        "patch",
        "node",
        "rogue",
        "--subresource",
        "status",
        "--type",
        "merge",
        "-p",
        r#"{"status":{"addresses":[{"type":"InternalIP","address":"172.31.255.9"}]}}"#,
    ])?;
    eventually(Duration::from_secs(30), || {
        let events = c.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.kind=Node,involvedObject.name=rogue,reason=InvalidPodCIDR",
            "-o",
            "name",
        ])?;
        Ok(!events.is_empty())
    })?;
    assert!(
        c.ok(&["describe", "node", "rogue"])?
            .contains("InvalidPodCIDR")
    );
    let routes = std::process::Command::new("ip")
        .args(["route", "show", "10.99.0.0/24"])
        .output()?;
    assert!(
        routes.stdout.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&routes.stdout)
    );
    c.ok(&["delete", "node", "rogue"])?;

    still_serving(&c, "after-users")
}

/// The pids cgroup files of a container (cgroup v1 or v2), when they exist.
fn pids_file(uid: &str, container_id: &str, file: &str) -> Option<String> {
    let relative = format!("wasmkube/pod{uid}/{container_id}/{file}").replace("//", "/");
    ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"]
        .iter()
        .find_map(|root| std::fs::read_to_string(format!("{root}/{relative}")).ok())
}

#[test]
fn a_fork_bomb_is_held_by_the_pids_limit() -> Result<()> {
    let c = up()?;
    let began = Instant::now();
    // CPU- and memory-limited so that its processes cannot take the machine's CPU or memory
    // either (a Guaranteed pod: its oom_score_adj of -997 is raised to what the agent may set).
    // The shell becomes a sleep (no fork): the container stays while the bomb runs out.
    let bomb = "b() { b | b & }; b; exec sleep 3600";
    let limits = "    resources: {limits: {cpu: \"1\", memory: 1Gi}}\n";
    c.apply(&pod("bomb", "busybox", bomb, limits, ""))?;
    assert_eq!(field(&c, "bomb", ".status.qosClass")?, "Guaranteed");
    let uid = field(&c, "bomb", ".metadata.uid")?;
    let id = format!("{uid}-main-0");
    eventually(Duration::from_secs(30), || {
        let refused = pids_file(&uid, &id, "pids.events")
            .and_then(|e| e.strip_prefix("max ").map(|n| n.trim().to_string()))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        Ok(refused > 0)
    })
    .map_err(|e| anyhow::anyhow!("the bomb never reached its limit: {e}\n{}", c.log()))?;
    assert_eq!(
        pids_file(&uid, &id, "pids.max").as_deref().map(str::trim),
        Some("4096")
    );
    // The pod's cgroup holds the same cap over all its containers, as the kubelet's
    // --pod-max-pids.
    assert_eq!(
        pids_file(&uid, "", "pids.max").as_deref().map(str::trim),
        Some("4096")
    );
    let current: u64 = pids_file(&uid, &id, "pids.current")
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(u64::MAX);
    assert!(current <= 4096, "{current} processes");

    // While it runs: the API and the agent (a new pod, its log) still answer.
    still_serving(&c, "during-bomb")?;
    c.ok(&["delete", "pod", "bomb", "--wait=true", "--timeout=30s"])?;
    eventually(Duration::from_secs(15), || {
        Ok(pids_file(&uid, &id, "pids.current").is_none())
    })
    .map_err(|_| anyhow::anyhow!("the bomb's cgroup outlived its pod"))?;
    assert!(
        began.elapsed() < Duration::from_secs(90),
        "{:?}",
        began.elapsed()
    );
    still_serving(&c, "after-bomb")
}
