//! The end-to-end harness: a real `wasmkube server` process in a temporary directory, driven by the real kubectl.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

#[path = "harness/control_plane.rs"]
pub mod control_plane;
#[path = "harness/etcd.rs"]
pub mod etcd;
#[path = "harness/hosts.rs"]
pub mod hosts;

/// The workspace's target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// Where `scripts/build-plugins.sh` (and the binary's build) put the plugin components.
pub fn plugin_dir() -> PathBuf {
    target_dir().join("plugins/wasm32-wasip2/release")
}

/// The `wasmkube` binary built by `cargo build -p wasmkube` (or `$WASMKUBE_BIN`).
pub fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("WASMKUBE_BIN") {
        return bin.into();
    }
    target_dir().join("debug/wasmkube")
}

/// The repository root, for manifests.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `manifests/demo`, as a path for kubectl.
pub fn demo_dir() -> String {
    repo().join("manifests/demo").display().to_string()
}

/// How many lines of `text` contain `needle`.
pub fn lines_with(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

/// A running server with its data directory.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
    /// `server`, or `up` for the control plane with a real node agent.
    command: &'static str,
    extra_args: Vec<String>,
    /// The pod bridge of a [`Cluster::node`], deleted with its service proxy's nftables table
    /// when it is dropped (left, its subnet's route would shadow the next cluster's).
    bridge: Option<String>,
}

impl Cluster {
    /// Starts a server on the embedded store and waits until it answers.
    pub fn start() -> Result<Cluster> {
        Self::start_with(&[])
    }

    /// Starts a server with extra `wasmkube server` arguments (e.g. `--store etcd://…`), with the
    /// built-in plugins the binary carries.
    pub fn start_with(extra: &[&str]) -> Result<Cluster> {
        Self::boot_new("server", extra)
    }

    /// Starts a server in `dir`, a data directory prepared beforehand (say, with another
    /// host's `pki/`, as a second control-plane host needs).
    pub fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Result<Cluster> {
        Self::boot_in(dir, 0, "server", extra)
    }

    /// Starts `wasmkube join --control-plane` with `extra` (the server's URL, the token, the
    /// CA pin, the certificate key, `--store`…): a further control-plane host of a cluster.
    pub fn join_control_plane(extra: &[&str]) -> Result<Cluster> {
        Self::boot_new("join", extra)
    }

    /// Starts `wasmkube up`: the control plane with every built-in plugin and a real node agent
    /// (containerd, CNI) keeping its state and logs in the cluster's directory.
    pub fn up(extra: &[&str]) -> Result<Cluster> {
        Self::boot_new("up", extra)
    }

    /// `up` with a node agent named `node` on a bridge and pod network of its own (so that
    /// test binaries never share routes), the project's busybox image imported and the Node
    /// Ready. Needs root, containerd and `target/images/busybox.tar` (scripts/setup.sh).
    pub fn node(node: &str, bridge: &str, pod_network: &str, extra: &[&str]) -> Result<Cluster> {
        Self::node_in(tempfile::tempdir()?, 0, node, bridge, pod_network, extra)
    }

    /// [`Cluster::node`] in `dir`, a data directory prepared beforehand (say, a restored store
    /// and the old one's `pki/`), on `port` (0: any free one).
    pub fn node_in(
        dir: tempfile::TempDir,
        port: u16,
        node: &str,
        bridge: &str,
        pod_network: &str,
        extra: &[&str],
    ) -> Result<Cluster> {
        let image = target_dir().join("images/busybox.tar");
        if !image.exists() {
            bail!(
                "{} is missing: run scripts/build-images.sh",
                image.display()
            );
        }
        // A bridge left by an earlier run would hold the same pod subnet, its proxy table the
        // same Services' rules.
        remove_bridge(bridge);
        let service_cidr = service_cidr(pod_network)?;
        let mut args = vec![
            "--node-name",
            node,
            "--bridge",
            bridge,
            "--cluster-cidr",
            pod_network,
            "--pod-network",
            pod_network,
            "--service-cidr",
            &service_cidr,
        ];
        args.extend(extra);
        let mut c = Self::boot_in(dir, port, "up", &args)?;
        c.bridge = Some(bridge.to_string());
        c.wasmkube(&["image", "import", &image.display().to_string()])?;
        eventually(Duration::from_secs(30), || {
            let ready = "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}";
            Ok(c.ok(&["get", "node", node, "-o", ready])? == "True")
        })?;
        Ok(c)
    }

    fn boot_new(command: &'static str, extra: &[&str]) -> Result<Cluster> {
        Self::boot_in(tempfile::tempdir()?, 0, command, extra)
    }

    fn boot_in(
        dir: tempfile::TempDir,
        port: u16,
        command: &'static str,
        extra: &[&str],
    ) -> Result<Cluster> {
        // One compilation cache for every test's cluster (scripts/test.sh fills it first).
        let cache = target_dir().join("plugin-cache");
        let mut extra_args = vec!["--plugin-cache".to_string(), cache.display().to_string()];
        extra_args.extend(extra.iter().map(|s| s.to_string()));
        if command == "up" {
            // Unless given: a node's own state may outlive a data directory (a restore).
            let given = |flag: &str| extra.contains(&flag);
            for (flag, sub) in [("--node-dir", "node"), ("--log-dir", "logs")] {
                if given(flag) {
                    continue;
                }
                extra_args.extend([flag.to_string(), dir.path().join(sub).display().to_string()]);
            }
        }
        let mut cluster = Cluster {
            dir,
            port,
            child: None,
            command,
            extra_args,
            bridge: None,
        };
        cluster.boot()?;
        Ok(cluster)
    }

    fn boot(&mut self) -> Result<()> {
        let bin = binary();
        if !bin.exists() {
            bail!(
                "{} is missing: run `cargo build -p wasmkube` first (scripts/test.sh does)",
                bin.display()
            );
        }
        let kubeconfig = self.kubeconfig();
        let _ = std::fs::remove_file(&kubeconfig);
        let port = if self.port == 0 {
            "0".to_string()
        } else {
            self.port.to_string()
        };
        let log = std::fs::File::create(self.dir.path().join("server.log"))?;
        let child = Command::new(bin)
            .args([self.command, "--data-dir"])
            .arg(self.dir.path())
            .args(["--port", &port])
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting wasmkube server")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(text) = std::fs::read_to_string(&kubeconfig)
                && let Some(p) = text
                    .split("https://127.0.0.1:")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
            {
                self.port = p.parse()?;
                if self
                    .kubectl(&["get", "--raw", "/readyz"])
                    .map(|o| o.status.success())
                    .unwrap_or(false)
                {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("server did not become ready; log:\n{}", self.log())
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// The admin kubeconfig's client certificate (base64 PEM, as written in it): what no node
    /// may hold.
    pub fn admin_certificate(&self) -> Result<String> {
        let admin = std::fs::read_to_string(self.kubeconfig())?;
        admin
            .lines()
            .find_map(|l| l.trim().strip_prefix("client-certificate-data: "))
            .map(str::to_string)
            .context("the admin's certificate")
    }

    pub fn token(&self) -> Result<String> {
        Ok(std::fs::read_to_string(self.dir.path().join("pki/token"))?
            .trim()
            .to_string())
    }

    /// Runs `wasmkube token create --upload-certs` on this (control-plane) host and returns the
    /// arguments of the `wasmkube join --control-plane` line it prints (the URL, the token, the
    /// CA pin, `--control-plane --certificate-key KEY`). Checks that the Secret it uploaded
    /// holds no PEM in the clear.
    pub fn upload_certs(&self) -> Result<Vec<String>> {
        let dir = self.dir.path().display().to_string();
        let out = self.wasmkube(&["token", "create", "--upload-certs", "--data-dir", &dir])?;
        let line = out
            .lines()
            .find(|l| l.contains("--control-plane"))
            .with_context(|| format!("no control-plane join line in {out}"))?;
        let decoded = "go-template={{range .data}}{{. | base64decode}}{{end}}";
        let secret = self.kubectl(&[
            "get",
            "secret",
            "-n",
            "kube-system",
            "wasmkube-certs",
            "-o",
            decoded,
        ])?;
        anyhow::ensure!(secret.status.success(), "reading the Secret: {secret:?}");
        anyhow::ensure!(
            secret.stdout.len() > 100 && !secret.stdout.windows(5).any(|w| w == b"BEGIN"),
            "the uploaded Secret holds plain PEM"
        );
        Ok(line
            .split_whitespace()
            .skip(2)
            .map(str::to_string)
            .collect())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Runs kubectl against this cluster.
    pub fn kubectl(&self, args: &[&str]) -> Result<Output> {
        self.kubectl_stdin(args, None)
    }

    /// `kubectl apply -f -` of `manifest`; its stderr as the error.
    pub fn apply(&self, manifest: &str) -> Result<()> {
        let out = self.kubectl_stdin(&["apply", "-f", "-"], Some(manifest))?;
        if !out.status.success() {
            bail!(
                "kubectl apply failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Result<Output> {
        kubectl_at(&self.kubeconfig(), args, stdin)
    }

    /// Runs the `wasmkube` binary against this cluster (e.g. `plugin install FILE --name N`),
    /// fails unless it succeeds, and returns its stdout.
    pub fn wasmkube(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(binary())
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .output()?;
        if !out.status.success() {
            bail!(
                "wasmkube {} failed: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// The flags of the `wasmkube join` line a new bootstrap token (`wasmkube token create`,
    /// valid for an hour) comes with: `--token T --discovery-token-ca-cert-hash sha256:…`.
    pub fn join_flags(&self) -> Result<Vec<String>> {
        let created = self.wasmkube(&["token", "create", "--ttl", "1h"])?;
        Ok(created
            .lines()
            .nth(1)
            .context("a join line")?
            .split_whitespace()
            .skip(3)
            .map(str::to_string)
            .collect())
    }

    /// Installs the test plugin `crate_name` (e.g. `test_sleep`, built by
    /// `scripts/build-plugins.sh`) as the Plugin `name` with `wasmkube plugin install --yes`.
    pub fn install_plugin(&self, crate_name: &str, name: &str) -> Result<String> {
        let file = plugin_dir().join(format!("{crate_name}.wasm"));
        if !file.exists() {
            bail!(
                "{} is missing: run scripts/build-plugins.sh",
                file.display()
            );
        }
        let file = file.display().to_string();
        self.wasmkube(&["plugin", "install", &file, "--name", name, "--yes"])
    }

    /// Runs kubectl, fails unless it succeeds, and returns its stdout.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.kubectl(args)?;
        if !out.status.success() {
            bail!(
                "kubectl {} failed: {}{}\nserver log:\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Runs kubectl, fails unless it fails, and returns its stderr.
    pub fn fails(&self, args: &[&str]) -> Result<String> {
        let out = self.kubectl(args)?;
        if out.status.success() {
            bail!(
                "kubectl {} succeeded but should have failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout)
            );
        }
        Ok(String::from_utf8(out.stderr)?)
    }

    /// Kills the server with SIGKILL (no chance to flush anything).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server with SIGTERM (it may clean up: release its leader lease) and waits
    /// for it to exit.
    pub fn terminate(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            let status = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()?;
            anyhow::ensure!(status.success(), "kill -TERM failed");
            child.wait()?;
        }
        Ok(())
    }

    /// Starts the server again on the same data directory and port.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.boot()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill();
        // A stopped agent keeps its rules and bridge (as kube-proxy and CNI do); a test's are of
        // no further use.
        if let Some(bridge) = &self.bridge {
            remove_bridge(bridge);
        }
    }
}

/// Deletes a node agent's pod bridge and its service proxy's nftables table (`wasmkube-BRIDGE`),
/// if they exist: left by an earlier run, the bridge's subnet route would shadow the next
/// cluster's and the table would hold its Services' rules.
pub fn remove_bridge(bridge: &str) {
    let table = format!("wasmkube-{bridge}");
    let _ = Command::new("nft")
        .args(["delete", "table", "ip", &table])
        .output();
    let _ = Command::new("ip").args(["link", "delete", bridge]).output();
}

/// The service range of a test cluster on the pod network `10.X.0.0/16`: `10.(X-100).0.0/16`,
/// its own, so that the node's traffic to a cluster IP is only ever one cluster's (every test
/// binary's cluster shares the machine's network namespace).
pub fn service_cidr(pod_network: &str) -> Result<String> {
    let second = pod_network
        .strip_prefix("10.")
        .and_then(|rest| rest.split('.').next())
        .and_then(|octet| octet.parse::<u8>().ok())
        .filter(|octet| (200..=255).contains(octet))
        .with_context(|| format!("test pod networks are 10.2XX.0.0/16, not {pod_network}"))?;
    Ok(format!("10.{}.0.0/16", second - 100))
}

/// A plain HTTP GET of `/` from this host, within 3 s.
pub fn host_get(address: std::net::SocketAddr) -> Result<String> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(3))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

/// Polls `check` every 50 ms until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if check()? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("condition not met within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs kubectl against `kubeconfig`, `stdin` piped in when given.
pub fn kubectl_at(
    kubeconfig: &std::path::Path,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<Output> {
    let mut cmd = Command::new("kubectl");
    cmd.args(args)
        .env("KUBECONFIG", kubeconfig)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("running kubectl (is it on PATH?)")?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write as _;
        pipe.write_all(input.as_bytes())?;
    }
    Ok(child.wait_with_output()?)
}

/// The Node a [`SimulatedNode`] registers: room for a thousand small pods.
const SIMULATED_NODE: &str = "apiVersion: v1\nkind: Node\nmetadata:\n  name: simulated\n  labels: {kubernetes.io/hostname: simulated}\nstatus:\n  capacity: {cpu: '64', memory: 256Gi, pods: '1000'}\n  allocatable: {cpu: '64', memory: 256Gi, pods: '1000'}\n";

/// Acts as the nodes until dropped, through the API as node agents would: a pending pod bound to
/// a node whose `restartPolicy` is `Always` (the default) is reported Running and Ready; one that
/// runs to completion (`Never`, `OnFailure`) is reported Succeeded, as if its containers exited
/// 0; a pod being deleted is deleted with a grace period of 0, as if its containers had
/// stopped; and every Node's Lease is renewed every 5 s, so the nodes stay Ready.
pub struct SimulatedNode {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How often the simulated node renews the Leases.
const LEASE_RENEWAL: Duration = Duration::from_secs(5);

/// Now as a Kubernetes MicroTime (`2024-05-01T12:00:00.123456Z`).
fn micro_time_now() -> String {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    // The civil date of a day count (Howard Hinnant's `civil_from_days`).
    let z = i64::try_from(secs / 86_400).unwrap_or(0) + 719_468;
    let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60,
        since.subsec_micros()
    )
}

/// The Leases of `nodes` renewed now, as a YAML list for `kubectl apply`.
fn leases(nodes: &str) -> String {
    let now = micro_time_now();
    nodes
        .split_whitespace()
        .map(|node| {
            format!(
                "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {{name: {node}, namespace: kube-node-lease}}\nspec: {{holderIdentity: {node}, leaseDurationSeconds: 40, renewTime: '{now}'}}\n---\n"
            )
        })
        .collect()
}

impl SimulatedNode {
    pub fn start(kubeconfig: std::path::PathBuf) -> SimulatedNode {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let kubectl = |args: &[&str]| {
                std::process::Command::new("kubectl")
                    .args(args)
                    .env("KUBECONFIG", &kubeconfig)
                    .output()
            };
            let stdout = |args: &[&str]| {
                kubectl(args)
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default()
            };
            let _ = kubectl_at(&kubeconfig, &["apply", "-f", "-"], Some(SIMULATED_NODE));
            let mut renewed: Option<Instant> = None;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                if renewed.is_none_or(|at| at.elapsed() >= LEASE_RENEWAL) {
                    let nodes =
                        stdout(&["get", "nodes", "-o", "jsonpath={.items[*].metadata.name}"]);
                    if !nodes.trim().is_empty() {
                        let _ =
                            kubectl_at(&kubeconfig, &["apply", "-f", "-"], Some(&leases(&nodes)));
                    }
                    renewed = Some(Instant::now());
                }
                let listed = stdout(&[
                    "get",
                    "pods",
                    "--all-namespaces",
                    "-o",
                    "jsonpath={range .items[*]}{.metadata.namespace} {.metadata.name} {.spec.nodeName} {.status.phase} {.spec.restartPolicy} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
                ]);
                // Only pods bound to a node run; the scheduler binds the others first.
                let bound = listed.lines().filter_map(|l| {
                    let fields: Vec<&str> = l.split(' ').collect();
                    match fields.as_slice() {
                        [ns, name, node, phase, policy, deleting] if !node.is_empty() => {
                            Some((*ns, *name, *phase, *policy, !deleting.is_empty()))
                        }
                        _ => None,
                    }
                });
                for (ns, name, phase, policy, deleting) in bound {
                    if deleting {
                        let _ = kubectl(&[
                            "delete",
                            "pod",
                            name,
                            "-n",
                            ns,
                            "--grace-period=0",
                            "--force",
                            "--wait=false",
                        ]);
                        continue;
                    }
                    if phase != "Pending" {
                        continue;
                    }
                    let status = match policy {
                        "Never" | "OnFailure" => r#"{"status":{"phase":"Succeeded"}}"#,
                        _ => {
                            r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}"#
                        }
                    };
                    let _ = kubectl(&[
                        "patch",
                        "pod",
                        name,
                        "-n",
                        ns,
                        "--subresource=status",
                        "--type=merge",
                        "-p",
                        status,
                    ]);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        SimulatedNode {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SimulatedNode {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
