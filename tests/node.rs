//! The node agent with real containerd, runc and CNI: `wasmkube up` runs pods from the
//! project's busybox image, networked, restarted by policy, and adopted after a restart.
//! Needs root (CI runs as root); scripts/setup.sh starts containerd and builds the image.

use std::time::Duration;

use anyhow::Result;
use wasmkube_e2e::hosts::{HOST_SIDE, TestHost};
use wasmkube_e2e::{Cluster, eventually, host_get};

const NODE: &str = "wk-e2e";

/// The label that lets a namespace's pods use the host (Pod Security level `privileged`).
const PRIVILEGED_NAMESPACE: &str = "pod-security.kubernetes.io/enforce=privileged";

fn up(extra: &[&str]) -> Result<Cluster> {
    Cluster::node(NODE, "wke2e0", "10.244.0.0/16", extra)
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

const WEB: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {app: web}\nspec:\n  nodeName: wk-e2e\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: httpd\n    image: busybox\n    imagePullPolicy: IfNotPresent\n    command: [httpd, -f, -p, '80', -h, /var/www]\n";

#[test]
fn pods_run_in_containerd_networked_and_restarted_by_policy() -> Result<()> {
    let mut c = up(&[])?;
    let long = Duration::from_secs(60);

    // A web server, reached by its pod IP from another pod.
    c.apply(WEB)?;
    phase_is(&c, "web", "Running", long)?;
    let ip = field(&c, "web", ".status.podIP")?;
    assert!(ip.starts_with("10.244."), "pod IP {ip:?}");
    assert_eq!(field(&c, "web", ".status.qosClass")?, "BestEffort");
    let fetch = format!("wget -qO- http://{ip}/ | grep -q wasmkube");
    c.apply(&pod("client", "Never", &fetch, ""))?;
    phase_is(&c, "client", "Succeeded", long)?;

    // Exit codes: 0 is Succeeded, 3 is Failed with the code in the status.
    c.apply(&pod("exit3", "Never", "exit 3", ""))?;
    phase_is(&c, "exit3", "Failed", long)?;
    assert_eq!(
        field(
            &c,
            "exit3",
            ".status.containerStatuses[0].state.terminated.exitCode"
        )?,
        "3"
    );

    // Init containers in order, then ConfigMap and Secret values in env and files.
    c.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  greeting: hello\n",
    )?;
    c.apply(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  password: hunter2\n",
    )?;
    let init = "  initContainers:\n  - name: one\n    image: busybox\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, 'echo 1 >> /work/order']\n    volumeMounts: [{name: work, mountPath: /work}]\n  - name: two\n    image: busybox\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, 'echo 2 >> /work/order']\n    volumeMounts: [{name: work, mountPath: /work}]\n";
    let main_extra = "    env:\n    - {name: GREETING, valueFrom: {configMapKeyRef: {name: settings, key: greeting}}}\n    - {name: PASSWORD, valueFrom: {secretKeyRef: {name: creds, key: password}}}\n    volumeMounts:\n    - {name: work, mountPath: /work}\n    - {name: config, mountPath: /config}\n    - {name: secret, mountPath: /secret}\n  volumes:\n  - {name: work, emptyDir: {}}\n  - {name: config, configMap: {name: settings}}\n  - {name: secret, secret: {secretName: creds}}\n";
    let check = "test \"$(cat /work/order)\" = \"$(printf '1\\n2')\" && test \"$GREETING\" = hello && test \"$PASSWORD\" = hunter2 && test \"$(cat /config/greeting)\" = hello && test \"$(cat /secret/password)\" = hunter2";
    let manifest = pod("configured", "Never", check, main_extra)
        .replace("  containers:\n", &format!("{init}  containers:\n"));
    c.apply(&manifest)?;
    phase_is(&c, "configured", "Succeeded", long)?;

    // A memory hog beyond its limit is OOMKilled.
    let limits = "    resources: {limits: {memory: 16Mi}}\n";
    c.apply(&pod(
        "hog",
        "Never",
        "dd if=/dev/zero of=/dev/null bs=64M count=1",
        limits,
    ))?;
    phase_is(&c, "hog", "Failed", long)?;
    assert_eq!(
        field(
            &c,
            "hog",
            ".status.containerStatuses[0].state.terminated.reason"
        )?,
        "OOMKilled"
    );

    // A crashing container restarts with growing back-off: CrashLoopBackOff.
    c.apply(&pod("crash", "Always", "exit 1", ""))?;
    eventually(long, || {
        Ok(field(&c, "crash", ".status.containerStatuses[0].restartCount")? == "1")
    })?;
    assert_eq!(
        field(
            &c,
            "crash",
            ".status.containerStatuses[0].state.waiting.reason"
        )?,
        "CrashLoopBackOff"
    );
    assert_eq!(
        field(
            &c,
            "crash",
            ".status.containerStatuses[0].lastState.terminated.exitCode"
        )?,
        "1"
    );

    // Probes: a failing liveness probe restarts the container; a failing readiness probe
    // turns the pod not Ready without a restart; httpGet and tcpSocket probes that pass.
    let liveness = "    livenessProbe: {exec: {command: [cat, /tmp/healthy]}, periodSeconds: 1, failureThreshold: 2}\n";
    c.apply(&pod(
        "sick",
        "Always",
        "touch /tmp/healthy; sleep 3; rm /tmp/healthy; sleep 600",
        liveness,
    ))?;
    eventually(long, || {
        Ok(field(&c, "sick", ".status.containerStatuses[0].restartCount")? == "1")
    })?;
    let readiness =
        "    readinessProbe: {exec: {command: [test, -f, /tmp/ready]}, periodSeconds: 1}\n";
    c.apply(&pod(
        "flaky",
        "Always",
        "touch /tmp/ready; sleep 4; rm /tmp/ready; sleep 600",
        readiness,
    ))?;
    let ready = |pod: &str| field(&c, pod, ".status.conditions[?(@.type==\"Ready\")].status");
    eventually(long, || Ok(ready("flaky")? == "True"))?;
    eventually(long, || Ok(ready("flaky")? == "False"))?;
    assert_eq!(
        field(&c, "flaky", ".status.containerStatuses[0].restartCount")?,
        "0"
    );
    let web_probes = "    ports: [{name: http, containerPort: 80}]\n    readinessProbe: {httpGet: {path: /index.html, port: http}, periodSeconds: 1}\n    livenessProbe: {tcpSocket: {port: 80}, periodSeconds: 1}\n";
    c.apply(&pod(
        "probed",
        "Always",
        "httpd -f -p 80 -h /var/www",
        web_probes,
    ))?;
    eventually(long, || Ok(ready("probed")? == "True"))?;
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        field(&c, "probed", ".status.containerStatuses[0].restartCount")?,
        "0"
    );

    // Restarting the agent keeps 20 running pods of a Deployment running: adopted, the same
    // containers, no restart counted.
    let sleepers = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: sleepers\nspec:\n  replicas: 20\n  selector:\n    matchLabels: {app: sleepers}\n  template:\n    metadata:\n      labels: {app: sleepers}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: sleep\n        image: busybox\n        imagePullPolicy: IfNotPresent\n        command: [sleep, '3600']\n";
    c.apply(sleepers)?;
    let containers = |c: &Cluster| -> Result<Vec<String>> {
        let out = c.ok(&["get", "pods", "-l", "app=sleepers", "-o", "jsonpath={range .items[*]}{.status.phase} {.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].containerID}{\"\\n\"}{end}"])?;
        let mut lines: Vec<String> = out.lines().map(str::to_string).collect();
        lines.sort();
        Ok(lines)
    };
    eventually(Duration::from_secs(120), || {
        Ok(containers(&c)?
            .iter()
            .filter(|l| l.starts_with("Running 0 containerd://"))
            .count()
            == 20)
    })?;
    let before = containers(&c)?;
    let web_before = field(&c, "web", ".status.containerStatuses[0].containerID")?;
    c.restart()?;
    eventually(long, || {
        Ok(field(&c, "web", ".status.containerStatuses[0].ready")? == "true")
    })?;
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(containers(&c)?, before);
    assert_eq!(
        field(&c, "web", ".status.containerStatuses[0].containerID")?,
        web_before
    );
    assert_eq!(
        field(&c, "web", ".status.containerStatuses[0].restartCount")?,
        "0"
    );
    c.ok(&["delete", "deployment", "sleepers"])?;
    c.apply(&pod("client2", "Never", &fetch, ""))?;
    phase_is(&c, "client2", "Succeeded", long)?;

    // A `hostNetwork` pod runs in the node's network and UTS namespaces: its IP is the node's,
    // its port is a real port of the node and its hostname is the node's. Pod Security's
    // baseline default refuses it unless the namespace is `privileged`.
    c.ok(&["label", "namespace", "default", PRIVILEGED_NAMESPACE])?;
    let hostnet = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: hostnet\nspec:\n  nodeName: {NODE}\n  hostNetwork: true\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: httpd\n    image: busybox\n    imagePullPolicy: IfNotPresent\n    command: [httpd, -f, -p, '127.0.0.1:38481', -h, /var/www]\n"
    );
    c.apply(&hostnet)?;
    phase_is(&c, "hostnet", "Running", long)?;
    assert_eq!(
        field(&c, "hostnet", ".status.podIP")?,
        field(&c, "hostnet", ".status.hostIP")?
    );
    let hostnet_uid = field(&c, "hostnet", ".metadata.uid")?;
    assert!(!std::path::Path::new(&format!("/run/netns/wk-{hostnet_uid}")).exists());
    eventually(Duration::from_secs(10), || {
        let page = std::process::Command::new("busybox")
            .args(["wget", "-qO-", "http://127.0.0.1:38481/"])
            .output()?;
        Ok(String::from_utf8_lossy(&page.stdout).contains("wasmkube"))
    })?;
    let node_hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
    assert_eq!(
        c.ok(&["exec", "hostnet", "--", "hostname"])?.trim(),
        node_hostname.trim()
    );

    // Deleting stops the containers and frees the network.
    let uid = field(&c, "web", ".metadata.uid")?;
    c.ok(&["delete", "pod", "--all", "--wait=true", "--timeout=60s"])?;
    eventually(long, || {
        Ok(!std::path::Path::new(&format!("/run/netns/wk-{uid}")).exists())
    })?;
    Ok(())
}

/// Runs a shell script, failing with its stderr.
fn sh(script: &str) -> Result<()> {
    let out = std::process::Command::new("sh")
        .args(["-ec", script])
        .output()?;
    if !out.status.success() {
        anyhow::bail!("{script}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Two nodes on two test hosts' networks (scripts/test-hosts.sh): the first in the host's
/// namespace at 172.31.0.1, the second in a test host at 172.31.0.2. Pod to pod, pod to Service
/// (by name and ClusterIP) and NodePort on both nodes' addresses, across the nodes.
#[test]
fn a_deployment_serves_pods_on_another_node_in_another_network_namespace() -> Result<()> {
    let mut machine = TestHost::add("e2e2", 2)?;
    let c = up(&["--node-ip", HOST_SIDE])?;
    let long = Duration::from_secs(60);

    // The second node's agent runs inside the test host's network namespace, sharing containerd.
    // The cluster's service range (tests/lib.rs) and its kube-dns address, as `up` gives its own agent.
    let services = wasmkube_e2e::service_cidr("10.244.0.0/16")?;
    let dns = services.replace(".0.0/16", ".0.10");
    machine.start_agent(
        &c,
        "wk-e2e-2",
        "wke2e1",
        &["--service-cidr", &services, "--cluster-dns", &dns],
    )?;
    let result = (|| -> Result<()> {
        // The second host joined with a bootstrap token: it is its own node, and nothing of
        // the admin's (token, certificate) is on it.
        let kubeconfig = machine.data_dir(&c).join("kubeconfig");
        let whoami = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args([
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username}",
            ])
            .output()?;
        assert_eq!(
            String::from_utf8_lossy(&whoami.stdout),
            "system:node:wk-e2e-2"
        );
        assert!(!machine.holds(&c, &c.token()?)? && !machine.holds(&c, &c.admin_certificate()?)?);
        // The first node joined too, with a token of `up`'s, deleted once used: the one left is
        // the second host's, from `wasmkube token create`.
        let tokens = c.ok(&[
            "get",
            "secrets",
            "-n",
            "kube-system",
            "--field-selector",
            "type=bootstrap.kubernetes.io/token",
            "-o",
            "name",
        ])?;
        assert_eq!(tokens.lines().count(), 1, "{tokens}");
        let first = c.ok(&["get", "csr", "-o", "jsonpath={.items[*].spec.username}"])?;
        assert_eq!(first.matches("system:bootstrap:").count(), 2, "{first}");

        // A Deployment of web servers, scheduled onto the first node.
        let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      nodeSelector: {kubernetes.io/hostname: wk-e2e}\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: httpd\n        image: busybox\n        imagePullPolicy: IfNotPresent\n        command: [httpd, -f, -p, '80', -h, /var/www]\n";
        c.apply(deployment)?;
        eventually(long, || {
            let phases = c.ok(&[
                "get",
                "pods",
                "-l",
                "app=web",
                "-o",
                "jsonpath={.items[*].status.phase}",
            ])?;
            Ok(phases == "Running Running")
        })?;
        let ips = c.ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].status.podIP}",
        ])?;
        let ips: Vec<&str> = ips.split_whitespace().collect();
        assert_eq!(ips.len(), 2, "{ips:?}");

        // A client on the second node fetches the page from both, across the nodes.
        let script = ips
            .iter()
            .map(|ip| format!("wget -qO- http://{ip}/ | grep -q wasmkube"))
            .collect::<Vec<_>>()
            .join(" && ");
        let client = pod("remote", "OnFailure", &script, "")
            .replace(&format!("nodeName: {NODE}"), "nodeName: wk-e2e-2");
        c.apply(&client)?;
        phase_is(&c, "remote", "Succeeded", long)?;
        assert!(field(&c, "remote", ".status.podIP")?.starts_with("10.244."));
        assert_ne!(
            field(&c, "remote", ".status.hostIP")?,
            field(
                &c,
                &c.ok(&[
                    "get",
                    "pods",
                    "-l",
                    "app=web",
                    "-o",
                    "jsonpath={.items[0].metadata.name}"
                ])?,
                ".status.hostIP"
            )?
        );

        // Pod to Service across the nodes: a client on the second node reaches the web pods on
        // the first by the Service's name (its own node's DNS server, through its own node's
        // proxy) and by its ClusterIP.
        c.ok(&["expose", "deployment", "web", "--port", "80"])?;
        let cluster_ip = c.ok(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"])?;
        let script = format!(
            "wget -O- http://web/ 2>&1 | grep -q wasmkube && wget -O- http://{cluster_ip}/ 2>&1 | grep -q wasmkube"
        );
        let by_name = pod("by-name", "OnFailure", &script, "")
            .replace(&format!("nodeName: {NODE}"), "nodeName: wk-e2e-2");
        c.apply(&by_name)?;
        phase_is(&c, "by-name", "Succeeded", long)?;

        // The Service as a NodePort: the page at every node's address, from this host and
        // from a pod on the second node (each node's proxy forwards to the pods on the first).
        c.ok(&[
            "patch",
            "service",
            "web",
            "-p",
            r#"{"spec":{"type":"NodePort"}}"#,
        ])?;
        let node_port = c.ok(&[
            "get",
            "service",
            "web",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}",
        ])?;
        let addresses = c.ok(&[
            "get",
            "nodes",
            "-o",
            r#"jsonpath={.items[*].status.addresses[?(@.type=="InternalIP")].address}"#,
        ])?;
        let addresses: Vec<String> = addresses
            .split_whitespace()
            .map(|ip| format!("{ip}:{node_port}"))
            .collect();
        assert_eq!(addresses.len(), 2, "{addresses:?}");
        for address in &addresses {
            let address = address.parse()?;
            eventually(long, || {
                Ok(host_get(address).is_ok_and(|page| page.contains("wasmkube")))
            })?;
        }
        let script = addresses
            .iter()
            .map(|a| format!("wget -O- http://{a}/ 2>&1 | grep -q wasmkube"))
            .collect::<Vec<_>>()
            .join(" && ");
        let by_node_port = pod("by-node-port", "OnFailure", &script, "")
            .replace(&format!("nodeName: {NODE}"), "nodeName: wk-e2e-2");
        c.apply(&by_node_port)?;
        phase_is(&c, "by-node-port", "Succeeded", long)?;
        c.ok(&["delete", "service", "web"])?;
        c.ok(&["delete", "deployment", "web"])?;
        c.ok(&["delete", "pod", "--all", "--wait=true", "--timeout=60s"])?;
        Ok(())
    })();
    drop(machine);
    result
}

#[test]
fn containers_of_a_pod_share_namespaces_and_run_lifecycle_hooks() -> Result<()> {
    let c = up(&[])?;
    let long = Duration::from_secs(60);
    let host_dir = c.dir.path().join("hooks");
    // The hostPath volume needs a `privileged` namespace (Pod Security's default is baseline).
    c.ok(&["label", "namespace", "default", PRIVILEGED_NAMESPACE])?;
    std::fs::create_dir_all(&host_dir)?;
    // Two containers: the first with hooks (postStart writes into the shared emptyDir; preStop
    // writes onto the host, where it outlives the pod).
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: pair
spec:
  nodeName: {NODE}
  terminationGracePeriodSeconds: 10
  containers:
  - name: a
    image: busybox
    imagePullPolicy: IfNotPresent
    command: [sleep, '3600']
    lifecycle:
      postStart: {{exec: {{command: [sh, -c, 'echo started > /shared/post-start']}}}}
      preStop: {{exec: {{command: [sh, -c, 'echo stopping > /host/pre-stop']}}}}
    volumeMounts: [{{name: shared, mountPath: /shared}}, {{name: host, mountPath: /host}}]
  - name: b
    image: busybox
    imagePullPolicy: IfNotPresent
    command: [sleep, '3600']
    volumeMounts: [{{name: shared, mountPath: /shared}}]
  volumes:
  - {{name: shared, emptyDir: {{}}}}
  - {{name: host, hostPath: {{path: {}}}}}
",
        host_dir.display()
    );
    c.apply(&manifest)?;
    phase_is(&c, "pair", "Running", long)?;

    // One network, IPC and UTS namespace for both containers; the hostname is the pod's.
    let ns = |container: &str, kind: &str| {
        c.ok(&[
            "exec",
            "pair",
            "-c",
            container,
            "--",
            "readlink",
            &format!("/proc/self/ns/{kind}"),
        ])
    };
    for kind in ["net", "ipc", "uts"] {
        assert_eq!(ns("a", kind)?, ns("b", kind)?, "{kind} namespace");
    }
    assert_ne!(ns("a", "pid")?, ns("b", "pid")?, "pid namespace");
    for container in ["a", "b"] {
        let hostname = c.ok(&["exec", "pair", "-c", container, "--", "hostname"])?;
        assert_eq!(hostname.trim(), "pair");
    }

    // postStart ran before the second container started; preStop runs at deletion.
    let shared = c.ok(&["exec", "pair", "-c", "b", "--", "cat", "/shared/post-start"])?;
    assert_eq!(shared.trim(), "started");
    c.ok(&["delete", "pod", "pair", "--wait", "--timeout=60s"])?;
    assert_eq!(
        std::fs::read_to_string(host_dir.join("pre-stop"))?.trim(),
        "stopping"
    );

    // A failing postStart hook kills the container: an Event says why and it restarts.
    let failing = "  containers:\n  - name: main\n    image: busybox\n    imagePullPolicy: IfNotPresent\n    command: [sleep, '3600']\n    lifecycle:\n      postStart: {exec: {command: [sh, -c, 'exit 7']}}\n";
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: badhook\nspec:\n  nodeName: {NODE}\n  terminationGracePeriodSeconds: 1\n{failing}"
    );
    c.apply(&manifest)?;
    eventually(long, || {
        let restarts = field(&c, "badhook", ".status.containerStatuses[0].restartCount")?;
        Ok(restarts.parse::<u32>().unwrap_or(0) >= 1)
    })?;
    let events = c.ok(&[
        "get",
        "events",
        "-o",
        "jsonpath={range .items[*]}{.involvedObject.name} {.reason}: {.message}{\"\\n\"}{end}",
    ])?;
    assert!(
        events.lines().any(
            |e| e.starts_with("badhook FailedPostStartHook: PostStartHook failed")
                && e.contains("exited with 7")
        ),
        "{events}"
    );
    Ok(())
}

#[test]
fn pods_keep_running_across_a_containerd_restart() -> Result<()> {
    let c = up(&[])?;
    let long = Duration::from_secs(60);
    c.apply(WEB)?;
    phase_is(&c, "web", "Running", long)?;
    let id = field(&c, "web", ".status.containerStatuses[0].containerID")?;

    // containerd stops and comes back (its shims, and so the containers, stay up meanwhile).
    sh("pkill -TERM -f '^containerd --config /etc/wasmkube/containerd.toml$'")?;
    eventually(Duration::from_secs(20), || {
        let out = std::process::Command::new("pgrep")
            .args(["-f", "^containerd --config /etc/wasmkube/containerd.toml$"])
            .output()?;
        Ok(!out.status.success())
    })?;
    let script = wasmkube_e2e::repo().join("scripts/containerd.sh");
    sh(&format!("bash {}", script.display()))?;

    // The same container runs on, no restart counted; exec reaches it; new pods start; a
    // deletion is finished.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(field(&c, "web", ".status.phase")?, "Running");
    assert_eq!(
        field(&c, "web", ".status.containerStatuses[0].containerID")?,
        id
    );
    assert_eq!(
        field(&c, "web", ".status.containerStatuses[0].restartCount")?,
        "0"
    );
    assert!(
        c.ok(&["exec", "web", "--", "cat", "/var/www/index.html"])?
            .contains("wasmkube")
    );
    c.apply(&pod("after", "Never", "exit 0", ""))?;
    phase_is(&c, "after", "Succeeded", long)?;
    let uid = field(&c, "web", ".metadata.uid")?;
    c.ok(&["delete", "pod", "web", "--wait", "--timeout=60s"])?;
    assert!(!std::path::Path::new(&format!("/run/netns/wk-{uid}")).exists());
    Ok(())
}

/// The Events about `pod`: (type, reason, message, count), from `kubectl get events`.
fn events_of(c: &Cluster, pod: &str) -> Result<Vec<(String, String, String, u64)>> {
    let selector = format!("involvedObject.name={pod}");
    let list: serde_json::Value = serde_json::from_str(&c.ok(&[
        "get",
        "events",
        "--field-selector",
        &selector,
        "-o",
        "json",
    ])?)?;
    let text = |e: &serde_json::Value, f: &str| e[f].as_str().unwrap_or_default().to_string();
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["involvedObject"]["name"] == pod)
        .map(|e| {
            let count = e["count"].as_u64().unwrap_or(0);
            (
                text(e, "type"),
                text(e, "reason"),
                text(e, "message"),
                count,
            )
        })
        .collect())
}

/// Waits until `pod` has an Event of `kind` and `reason` whose message contains `message`.
fn has_event(c: &Cluster, pod: &str, kind: &str, reason: &str, message: &str) -> Result<()> {
    eventually(Duration::from_secs(60), || {
        Ok(events_of(c, pod)?
            .iter()
            .any(|(t, r, m, _)| t == kind && r == reason && m.contains(message)))
    })
    .map_err(|e| {
        let describe = c.ok(&["describe", "pod", pod]).unwrap_or_default();
        anyhow::anyhow!("no {kind} {reason} {message:?} for {pod}: {e}\n{describe}")
    })
}

#[test]
fn the_agent_records_the_kubelets_events() -> Result<()> {
    let c = up(&[])?;
    c.apply(&pod("fine", "Always", "exec sleep 3600", ""))?;
    c.apply(&pod(
        "sick",
        "Always",
        "exec sleep 3600",
        "    livenessProbe:\n      exec: {command: [cat, /tmp/healthy]}\n      periodSeconds: 1\n      failureThreshold: 2\n",
    ))?;
    c.apply(&pod("crash", "Always", "exit 1", ""))?;
    c.apply(&pod("nocm", "Always", "exec sleep 3600",
        "    volumeMounts: [{name: cfg, mountPath: /cfg}]\n  volumes:\n  - name: cfg\n    configMap: {name: missing}\n"))?;
    c.apply(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: never\nspec:\n  nodeName: wk-e2e\n  containers:\n  - name: main\n    image: registry.invalid/absent:1\n    imagePullPolicy: Never\n",
    )?;

    let normal = "Normal";
    let warning = "Warning";
    has_event(
        &c,
        "fine",
        normal,
        "Pulled",
        "Container image \"busybox\" already present on machine",
    )?;
    has_event(&c, "fine", normal, "Created", "Created container: main")?;
    has_event(&c, "fine", normal, "Started", "Started container main")?;
    has_event(
        &c,
        "sick",
        warning,
        "Unhealthy",
        "Liveness probe failed: cat: can't open '/tmp/healthy'",
    )?;
    has_event(
        &c,
        "sick",
        normal,
        "Killing",
        "Container main failed liveness probe, will be restarted",
    )?;
    has_event(
        &c,
        "crash",
        warning,
        "BackOff",
        "Back-off restarting failed container main in pod crash_default(",
    )?;
    has_event(
        &c,
        "never",
        warning,
        "ErrImageNeverPull",
        "Container image \"registry.invalid/absent:1\" is not present with pull policy of Never",
    )?;
    has_event(&c, "never", warning, "Failed", "Error: ErrImageNeverPull")?;
    has_event(
        &c,
        "nocm",
        warning,
        "FailedMount",
        "MountVolume.SetUp failed for volume \"cfg\" : configmap \"missing\" not found",
    )?;

    // Repeats are counted on one Event, not written again: the crash loop's second back-off
    // (10 s after the first) and the probe's failures every second.
    eventually(Duration::from_secs(60), || {
        let back_offs: Vec<_> = events_of(&c, "crash")?
            .into_iter()
            .filter(|(_, reason, _, _)| reason == "BackOff")
            .collect();
        Ok(back_offs.len() == 1 && back_offs[0].3 >= 2)
    })?;
    let unhealthy = events_of(&c, "sick")?
        .into_iter()
        .filter(|(_, reason, _, _)| reason == "Unhealthy")
        .collect::<Vec<_>>();
    assert_eq!(unhealthy.len(), 1, "{unhealthy:?}");
    assert!(unhealthy[0].3 >= 2, "{unhealthy:?}");

    // kubectl describe shows why each pod is stuck.
    let describe = c.ok(&["describe", "pod", "nocm"])?;
    assert!(describe.contains("FailedMount"), "{describe}");
    let describe = c.ok(&["describe", "pod", "never"])?;
    assert!(describe.contains("ErrImageNeverPull"), "{describe}");
    let describe = c.ok(&["describe", "pod", "crash"])?;
    assert!(
        describe.contains("Back-off restarting failed container"),
        "{describe}"
    );

    // Deleting a running pod stops its container with a Killing Event.
    let stopping = c.kubectl(&["delete", "pod", "fine", "--wait=false"])?;
    assert!(stopping.status.success());
    has_event(&c, "fine", normal, "Killing", "Stopping container main")?;
    Ok(())
}
