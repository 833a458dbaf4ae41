//! The node agent with real containerd, runc and CNI: `wasmkube up` runs pods from the
//! project's busybox image, networked, restarted by policy, and adopted after a restart.
//! Needs root (CI runs as root); scripts/setup.sh starts containerd and builds the image.

use std::time::Duration;

use anyhow::{Result, bail};
use wasmkube_e2e::{Cluster, eventually};

const NODE: &str = "wk-e2e";

fn up() -> Result<Cluster> {
    let image = wasmkube_e2e::target_dir().join("images/busybox.tar");
    if !image.exists() {
        bail!("{} is missing: run scripts/build-images.sh", image.display());
    }
    let c = Cluster::up(&["--node-name", NODE, "--bridge", "wke2e0"])?;
    c.wasmkube(&["image", "import", &image.display().to_string()])?;
    eventually(Duration::from_secs(30), || {
        Ok(c.ok(&["get", "node", NODE, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"])? == "True")
    })?;
    Ok(c)
}

/// A field of a pod through kubectl's jsonpath.
fn field(c: &Cluster, pod: &str, path: &str) -> Result<String> {
    c.ok(&["get", "pod", pod, "-o", &format!("jsonpath={{{path}}}")])
}

fn phase_is(c: &Cluster, pod: &str, phase: &str, within: Duration) -> Result<()> {
    eventually(within, || Ok(field(c, pod, ".status.phase")? == phase)).map_err(|e| {
        let describe = c.ok(&["describe", "pod", pod]).unwrap_or_default();
        anyhow::anyhow!("pod {pod} not {phase}: {e}\n{describe}\n{}", c.log())
    })
}

/// A pod on the node running `script` in busybox with the given restart policy.
fn pod(name: &str, policy: &str, script: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {NODE}\n  restartPolicy: {policy}\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: main\n    image: busybox\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, {script:?}]\n{extra}"
    )
}

fn apply(c: &Cluster, manifest: &str) -> Result<()> {
    let out = c.kubectl_stdin(&["apply", "-f", "-"], Some(manifest))?;
    if !out.status.success() {
        bail!("kubectl apply failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

const WEB: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {app: web}\nspec:\n  nodeName: wk-e2e\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: httpd\n    image: busybox\n    imagePullPolicy: IfNotPresent\n    command: [httpd, -f, -p, '80', -h, /var/www]\n";

#[test]
fn pods_run_in_containerd_networked_and_restarted_by_policy() -> Result<()> {
    let mut c = up()?;
    let long = Duration::from_secs(60);

    // A web server, reached by its pod IP from another pod.
    apply(&c, WEB)?;
    phase_is(&c, "web", "Running", long)?;
    let ip = field(&c, "web", ".status.podIP")?;
    assert!(ip.starts_with("10.244."), "pod IP {ip:?}");
    assert_eq!(field(&c, "web", ".status.qosClass")?, "BestEffort");
    let fetch = format!("wget -qO- http://{ip}/ | grep -q wasmkube");
    apply(&c, &pod("client", "Never", &fetch, ""))?;
    phase_is(&c, "client", "Succeeded", long)?;

    // Exit codes: 0 is Succeeded, 3 is Failed with the code in the status.
    apply(&c, &pod("exit3", "Never", "exit 3", ""))?;
    phase_is(&c, "exit3", "Failed", long)?;
    assert_eq!(field(&c, "exit3", ".status.containerStatuses[0].state.terminated.exitCode")?, "3");

    // Init containers in order, then ConfigMap and Secret values in env and files.
    apply(&c, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  greeting: hello\n")?;
    apply(&c, "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  password: hunter2\n")?;
    let init = "  initContainers:\n  - name: one\n    image: busybox\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, 'echo 1 >> /work/order']\n    volumeMounts: [{name: work, mountPath: /work}]\n  - name: two\n    image: busybox\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, 'echo 2 >> /work/order']\n    volumeMounts: [{name: work, mountPath: /work}]\n";
    let main_extra = "    env:\n    - {name: GREETING, valueFrom: {configMapKeyRef: {name: settings, key: greeting}}}\n    - {name: PASSWORD, valueFrom: {secretKeyRef: {name: creds, key: password}}}\n    volumeMounts:\n    - {name: work, mountPath: /work}\n    - {name: config, mountPath: /config}\n    - {name: secret, mountPath: /secret}\n  volumes:\n  - {name: work, emptyDir: {}}\n  - {name: config, configMap: {name: settings}}\n  - {name: secret, secret: {secretName: creds}}\n";
    let check = "test \"$(cat /work/order)\" = \"$(printf '1\\n2')\" && test \"$GREETING\" = hello && test \"$PASSWORD\" = hunter2 && test \"$(cat /config/greeting)\" = hello && test \"$(cat /secret/password)\" = hunter2";
    let manifest = pod("configured", "Never", check, main_extra).replace("  containers:\n", &format!("{init}  containers:\n"));
    apply(&c, &manifest)?;
    phase_is(&c, "configured", "Succeeded", long)?;

    // A memory hog beyond its limit is OOMKilled.
    let limits = "    resources: {limits: {memory: 16Mi}}\n";
    apply(&c, &pod("hog", "Never", "dd if=/dev/zero of=/dev/null bs=64M count=1", limits))?;
    phase_is(&c, "hog", "Failed", long)?;
    assert_eq!(field(&c, "hog", ".status.containerStatuses[0].state.terminated.reason")?, "OOMKilled");

    // A crashing container restarts with growing back-off: CrashLoopBackOff.
    apply(&c, &pod("crash", "Always", "exit 1", ""))?;
    eventually(long, || Ok(field(&c, "crash", ".status.containerStatuses[0].restartCount")? == "1"))?;
    assert_eq!(field(&c, "crash", ".status.containerStatuses[0].state.waiting.reason")?, "CrashLoopBackOff");
    assert_eq!(field(&c, "crash", ".status.containerStatuses[0].lastState.terminated.exitCode")?, "1");

    // Restarting the agent keeps the web server running, adopted, not restarted.
    let before = field(&c, "web", ".status.containerStatuses[0].containerID")?;
    c.restart()?;
    eventually(long, || {
        Ok(field(&c, "web", ".status.containerStatuses[0].ready")? == "true")
    })?;
    assert_eq!(field(&c, "web", ".status.containerStatuses[0].containerID")?, before);
    assert_eq!(field(&c, "web", ".status.containerStatuses[0].restartCount")?, "0");
    apply(&c, &pod("client2", "Never", &fetch, ""))?;
    phase_is(&c, "client2", "Succeeded", long)?;

    // Deleting stops the containers and frees the network.
    let uid = field(&c, "web", ".metadata.uid")?;
    c.ok(&["delete", "pod", "--all", "--wait=true", "--timeout=60s"])?;
    eventually(long, || Ok(!std::path::Path::new(&format!("/run/netns/wk-{uid}")).exists()))?;
    Ok(())
}
