//! kubectl logs, exec, cp and port-forward with real containerd: the apiserver hands them to
//! the node agent's API, which reads the CRI log files, execs in containerd and forwards to the
//! pod's IP. Needs root (CI runs as root); scripts/setup.sh starts containerd and builds the
//! image. Runs alone with the node tests (they share the machine's network).

use std::io::{BufRead, BufReader, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use wasmkube_e2e::{Cluster, eventually};

const NODE: &str = "wk-streams";

/// Two containers: `main` says hello, complains on stderr, ticks every 100 ms and exits 7 on
/// SIGTERM (a shell as PID 1 ignores it otherwise); `side` says its name.
const TALKER: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: talker
spec:
  nodeName: wk-streams
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'trap "exit 7" TERM; echo hello; echo oops >&2; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.1; done']
  - name: side
    image: busybox
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'echo side; exec sleep 3600']
"#;

const WEB: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  nodeName: wk-streams\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: httpd\n    image: busybox\n    imagePullPolicy: IfNotPresent\n    command: [httpd, -f, -p, '80', -h, /var/www]\n";

fn up() -> Result<Cluster> {
    // Port 0: the agent takes a free port and publishes it in the Node's status.
    Cluster::node(NODE, "wkst0", "10.245.0.0/16", &["--agent-port", "0"])
}

fn running(c: &Cluster, pod: &str) -> Result<()> {
    eventually(Duration::from_secs(60), || {
        Ok(c.ok(&["get", "pod", pod, "-o", "jsonpath={.status.phase}"])? == "Running")
    })
    .map_err(|e| anyhow::anyhow!("pod {pod} not running: {e}\n{}", c.log()))
}

/// kubectl in the background, its stdout piped, its stderr to `kubectl.log` in the cluster's
/// directory.
fn spawn(c: &Cluster, args: &[&str], env: &[(&str, &str)]) -> Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(c.dir.path().join("kubectl.log"))?;
    Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", c.kubeconfig())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .context("running kubectl")
}

/// Kills a background kubectl when dropped.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `kubectl port-forward` to the web pod: fetches its page through a local port.
fn fetch_through_port_forward(c: &Cluster, env: &[(&str, &str)]) -> Result<String> {
    let mut forward = Background(spawn(c, &["port-forward", "pod/web", ":80"], env)?);
    let stdout = forward.0.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    // "Forwarding from 127.0.0.1:PORT -> 80"
    let port = lines
        .find_map(|line| {
            let line = line.ok()?;
            let rest = line.strip_prefix("Forwarding from 127.0.0.1:")?;
            rest.split_whitespace().next().map(str::to_string)
        })
        .context("port-forward printed no local port")?;
    let out = Command::new("wget")
        .args(["-T", "10", "-qO-", &format!("http://127.0.0.1:{port}/")])
        .output()?;
    if !out.status.success() {
        let log = std::fs::read_to_string(c.dir.path().join("kubectl.log")).unwrap_or_default();
        bail!(
            "wget through port-forward failed: {}\nkubectl: {log}\n{}",
            String::from_utf8_lossy(&out.stderr),
            c.log()
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Runs kubectl `command` on a terminal (through `script`), types `echo $((40+2)); exit` after
/// `wait` seconds, and returns the screen.
fn through_terminal(c: &Cluster, command: &str, wait: u64) -> Result<String> {
    let mut terminal = Command::new("timeout")
        .args(["90", "script", "-qc", command, "/dev/null"])
        .env("KUBECONFIG", c.kubeconfig())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut keys = terminal.stdin.take().context("stdin")?;
    std::thread::sleep(Duration::from_secs(wait));
    keys.write_all(b"echo $((40+2)); exit\n")?;
    let out = terminal.wait_with_output()?;
    drop(keys);
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Deletes the pods when dropped (before the cluster), pass or fail, so no network of theirs
/// outlives the test.
struct DeletePods<'a>(&'a Cluster);

impl Drop for DeletePods<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .kubectl(&["delete", "pod", "--all", "--wait=true", "--timeout=60s"]);
    }
}

#[test]
fn logs_exec_cp_and_port_forward_reach_the_pods() -> Result<()> {
    let c = up()?;
    let _cleanup = DeletePods(&c);
    c.apply(TALKER)?;
    c.apply(WEB)?;
    running(&c, "talker")?;
    running(&c, "web")?;

    // Logs: both streams, the last line, timestamps, another container.
    eventually(Duration::from_secs(10), || {
        Ok(c.ok(&["logs", "talker", "-c", "main"])?
            .contains("tick 3\n"))
    })?;
    let logs = c.ok(&["logs", "talker", "-c", "main"])?;
    // stdout and stderr interleave as their writes were read.
    let first: Vec<&str> = logs.lines().take(3).collect();
    assert!(
        ["hello", "oops", "tick 1"]
            .iter()
            .all(|l| first.contains(l)),
        "{logs}"
    );
    let last = c.ok(&["logs", "talker", "-c", "main", "--tail=1"])?;
    assert!(
        last.starts_with("tick ") && last.lines().count() == 1,
        "{last:?}"
    );
    let stamped = c.ok(&["logs", "talker", "-c", "main", "--timestamps", "--tail=2"])?;
    for line in stamped.lines() {
        let (stamp, text) = line.split_once(' ').context("no timestamp")?;
        assert!(
            stamp.contains('T') && stamp.ends_with('Z') && text.starts_with("tick"),
            "{line}"
        );
    }
    assert_eq!(c.ok(&["logs", "talker", "-c", "side"])?, "side\n");
    agent_serves_only_the_apiserver(&c)?;
    let ambiguous = c.fails(&["get", "--raw", "/api/v1/namespaces/default/pods/talker/log"])?;
    assert!(
        ambiguous.contains(
            "a container name must be specified for pod talker, choose one of: [main side]"
        ),
        "{ambiguous}"
    );

    // Following: two new lines arrive, then we stop.
    let mut follow = Background(spawn(
        &c,
        &["logs", "-f", "talker", "-c", "main", "--tail=1"],
        &[],
    )?);
    let mut lines = BufReader::new(follow.0.stdout.take().context("stdout")?).lines();
    let first = lines.next().context("no first line")??;
    let second = lines.next().context("no second line")??;
    assert!(first.starts_with("tick ") && second.starts_with("tick ") && first != second);
    drop(follow);

    // Exec: output, exit code, standard input, a terminal.
    let out = c.kubectl(&[
        "exec",
        "talker",
        "-c",
        "main",
        "--",
        "sh",
        "-c",
        "echo hi; exit 3",
    ])?;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = c.kubectl_stdin(
        &["exec", "-i", "talker", "-c", "main", "--", "cat"],
        Some("piped in\nand more\n"),
    )?;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped in\nand more\n");
    let screen = through_terminal(&c, "kubectl exec -it talker -c main -- sh", 2)?;
    assert!(screen.lines().any(|l| l.trim() == "42"), "{screen}");

    // cp both ways (tar in the container, over exec's standard streams).
    let local = c.dir.path().join("note.txt");
    std::fs::write(&local, "a small file\n")?;
    c.ok(&[
        "cp",
        &local.display().to_string(),
        "talker:/tmp/note.txt",
        "-c",
        "main",
    ])?;
    assert_eq!(
        c.ok(&["exec", "talker", "-c", "main", "--", "cat", "/tmp/note.txt"])?,
        "a small file\n"
    );
    let back = c.dir.path().join("back.txt");
    c.ok(&[
        "cp",
        "talker:/tmp/note.txt",
        &back.display().to_string(),
        "-c",
        "main",
    ])?;
    assert_eq!(std::fs::read_to_string(&back)?, "a small file\n");

    // Port-forward, tunnelled in a WebSocket (kubectl's default) and over plain SPDY.
    assert!(fetch_through_port_forward(&c, &[])?.contains("wasmkube"));
    let spdy = [("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")];
    assert!(fetch_through_port_forward(&c, &spdy)?.contains("wasmkube"));

    // Killing PID 1 from an exec restarts the container; a follower of its log is let go, and
    // the previous attempt's log stays readable.
    let mut follower = Background(spawn(
        &c,
        &["logs", "-f", "talker", "-c", "main", "--tail=0"],
        &[],
    )?);
    c.ok(&["exec", "talker", "-c", "main", "--", "sh", "-c", "kill 1"])?;
    let restarts = "jsonpath={.status.containerStatuses[?(@.name==\"main\")].restartCount}";
    eventually(Duration::from_secs(60), || {
        Ok(c.ok(&["get", "pod", "talker", "-o", restarts])? == "1")
    })?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while follower.0.try_wait()?.is_none() {
        if Instant::now() > deadline {
            bail!("kubectl logs -f still follows a container that exited");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let previous = c.ok(&["logs", "talker", "-c", "main", "--previous"])?;
    assert!(
        previous.contains("hello\n") && previous.contains("oops\n"),
        "{previous}"
    );
    Ok(())
}

/// The agent's API, which just served the apiserver, refuses everyone else: no client
/// certificate, the admin's (the cluster CA's, another subject), and a self-signed one with the
/// apiserver's subject. Each gets no HTTP answer at all.
fn agent_serves_only_the_apiserver(c: &Cluster) -> Result<()> {
    use base64::Engine as _;
    let port = c.ok(&[
        "get",
        "node",
        NODE,
        "-o",
        "jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}",
    ])?;
    let url = format!("https://127.0.0.1:{port}/containerLogs/default/talker/main");
    let dir = c.dir.path();
    for (field, file) in [
        ("client-certificate-data", "admin.crt"),
        ("client-key-data", "admin.key"),
    ] {
        let path = format!("jsonpath={{.users[0].user.{field}}}");
        let data = c.ok(&["config", "view", "--raw", "-o", &path])?;
        std::fs::write(
            dir.join(file),
            base64::engine::general_purpose::STANDARD.decode(data.trim())?,
        )?;
    }
    let forged = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=kube-apiserver-kubelet-client",
        ])
        .arg("-keyout")
        .arg(dir.join("forged.key"))
        .arg("-out")
        .arg(dir.join("forged.crt"))
        .output()?;
    assert!(forged.status.success(), "{forged:?}");
    let curl = |cert: Option<&str>| -> Result<std::process::Output> {
        let mut command = Command::new("curl");
        command.args(["-sSk", "--max-time", "10", &url]);
        if let Some(name) = cert {
            command
                .arg("--cert")
                .arg(dir.join(format!("{name}.crt")))
                .arg("--key")
                .arg(dir.join(format!("{name}.key")));
        }
        Ok(command.output()?)
    };
    for cert in [None, Some("admin"), Some("forged")] {
        let out = curl(cert)?;
        assert!(
            !out.status.success() && out.stdout.is_empty(),
            "{cert:?} was served: {out:?}"
        );
    }
    Ok(())
}

/// A shell whose stdin stays open across attaches (no stdinOnce) and a ticker.
const ATTACHABLE: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: holder
spec:
  nodeName: wk-streams
  terminationGracePeriodSeconds: 1
  containers:
  - name: shell
    image: busybox
    imagePullPolicy: IfNotPresent
    command: [sh]
    stdin: true
  - name: ticker
    image: busybox
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done']
"#;

/// kubectl with a time limit (for attaches that last as long as their container): its output.
fn kubectl_for(c: &Cluster, seconds: &str, args: &[&str], stdin: &str) -> Result<String> {
    let mut child = Command::new("timeout")
        .arg(seconds)
        .arg("kubectl")
        .args(args)
        .env("KUBECONFIG", c.kubeconfig())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut input = child.stdin.take().context("stdin")?;
    input.write_all(stdin.as_bytes())?;
    drop(input);
    let out = child.wait_with_output()?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

#[test]
fn run_and_attach_reach_a_containers_own_streams() -> Result<()> {
    let c = up()?;
    let _cleanup = DeletePods(&c);
    let run = |name: &str, flags: &str| {
        format!(
            "run --rm {name} --image=busybox --image-pull-policy=IfNotPresent --restart=Never {flags} -- sh"
        )
    };

    // kubectl run -i: the shell reads the piped input (stdinOnce: its end closes the shell's
    // stdin), its output comes back, and --rm deletes the pod.
    let args = run("asker", "-i");
    let args: Vec<&str> = args.split(' ').collect();
    let out = c.kubectl_stdin(&args, Some("echo hello-attach\nexit 0\n"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("hello-attach"),
        "{stdout}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.log()
    );
    assert!(stdout.contains("pod \"asker\" deleted"), "{stdout}");
    eventually(Duration::from_secs(30), || {
        Ok(!c.kubectl(&["get", "pod", "asker"])?.status.success())
    })?;

    // kubectl run -it, driven through a terminal.
    let command = format!("kubectl {}", run("talky", "-it"));
    let screen = through_terminal(&c, &command, 8)?;
    assert!(
        screen.lines().any(|l| l.trim() == "42"),
        "{screen}\n{}",
        c.log()
    );
    eventually(Duration::from_secs(30), || {
        Ok(!c.kubectl(&["get", "pod", "talky"])?.status.success())
    })?;

    // kubectl attach to running containers: output only, and input to a stdin that stays open.
    c.apply(ATTACHABLE)?;
    running(&c, "holder")?;
    let ticks = kubectl_for(&c, "4", &["attach", "holder", "-c", "ticker"], "")?;
    assert!(ticks.contains("tick "), "{ticks}");
    for word in ["first", "second"] {
        let said = kubectl_for(
            &c,
            "6",
            &["attach", "-i", "holder", "-c", "shell"],
            &format!("echo said-{word}\n"),
        )?;
        assert!(said.contains(&format!("said-{word}")), "{said}");
    }
    assert_eq!(
        c.ok(&[
            "get",
            "pod",
            "holder",
            "-o",
            "jsonpath={.status.containerStatuses[?(@.name==\"shell\")].restartCount}"
        ])?,
        "0"
    );
    Ok(())
}

const JOINED: &str = "wk-joined";
const JOINED_BRIDGE: &str = "wkjn0";
const JOINED_NETWORK: &str = "10.236.0.0/16";

/// A node agent on this machine (its own bridge and pod network) named [`JOINED`], killed when
/// dropped, its bridge and proxy table deleted.
struct JoinedAgent {
    child: Option<Child>,
    args: Vec<String>,
    log: std::path::PathBuf,
}

impl JoinedAgent {
    /// Joins the cluster of `c` with a new bootstrap token, its state in `dir`.
    fn join(c: &Cluster, dir: &std::path::Path) -> Result<JoinedAgent> {
        let created = c.wasmkube(&["token", "create", "--ttl", "1h"])?;
        let line = created.lines().nth(1).context("a join line")?;
        let mut args: Vec<String> = line.split_whitespace().skip(1).map(String::from).collect();
        args.extend([
            "--data-dir".to_string(),
            dir.join("join").display().to_string(),
        ]);
        Self::run(args, dir)
    }

    /// `wasmkube node` with the admin's kubeconfig of `c` (not a node identity), its state in
    /// `dir`.
    fn admin(c: &Cluster, dir: &std::path::Path) -> Result<JoinedAgent> {
        let args = [
            "node",
            "--kubeconfig",
            &c.kubeconfig().display().to_string(),
        ];
        Self::run(args.map(String::from).to_vec(), dir)
    }

    /// Runs `wasmkube ARGS` with the agent flags of [`JOINED`] and its state in `dir`.
    fn run(mut args: Vec<String>, dir: &std::path::Path) -> Result<JoinedAgent> {
        wasmkube_e2e::remove_bridge(JOINED_BRIDGE);
        let service_cidr = wasmkube_e2e::service_cidr(JOINED_NETWORK)?;
        let dir = |sub: &str| dir.join(sub).display().to_string();
        args.extend(
            [
                "--node-name",
                JOINED,
                "--bridge",
                JOINED_BRIDGE,
                "--pod-network",
                JOINED_NETWORK,
                "--service-cidr",
                &service_cidr,
                "--agent-port",
                "0",
            ]
            .map(String::from),
        );
        for (flag, sub) in [("--node-dir", "node"), ("--log-dir", "logs")] {
            args.extend([flag.to_string(), dir(sub)]);
        }
        let mut agent = JoinedAgent {
            child: None,
            args,
            log: std::path::PathBuf::from(dir("agent.log")),
        };
        agent.start()?;
        Ok(agent)
    }

    fn start(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        self.child = Some(
            Command::new(wasmkube_e2e::binary())
                .args(&self.args)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?,
        );
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for JoinedAgent {
    fn drop(&mut self) {
        self.stop();
        wasmkube_e2e::remove_bridge(JOINED_BRIDGE);
    }
}

/// The `kubelet-serving` requests of the cluster: requester, conditions and whether issued.
fn serving_requests(c: &Cluster) -> Result<Vec<(String, Vec<String>, bool)>> {
    let list: serde_json::Value = serde_json::from_str(&c.ok(&["get", "csr", "-o", "json"])?)?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|csr| csr["spec"]["signerName"] == "kubernetes.io/kubelet-serving")
        .map(|csr| {
            let conditions = csr["status"]["conditions"].as_array().into_iter().flatten();
            (
                csr["spec"]["username"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                conditions
                    .filter_map(|c| c["type"].as_str().map(String::from))
                    .collect(),
                csr["status"]["certificate"]
                    .as_str()
                    .is_some_and(|c| !c.is_empty()),
            )
        })
        .collect())
}

const JOINED_POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: greeter\nspec:\n  nodeName: wk-joined\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: busybox\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, 'echo hello from the joined node; exec sleep 3600']\n";

/// A server for the [`JOINED`] node's pod network, the busybox image in containerd.
fn joined_cluster() -> Result<Cluster> {
    let c = Cluster::start_with(&[
        "--cluster-cidr",
        JOINED_NETWORK,
        "--service-cidr",
        &wasmkube_e2e::service_cidr(JOINED_NETWORK)?,
    ])?;
    let image = wasmkube_e2e::target_dir().join("images/busybox.tar");
    c.wasmkube(&["image", "import", &image.display().to_string()])?;
    Ok(c)
}

fn node_ready(c: &Cluster, agent: &JoinedAgent) -> Result<()> {
    let ready = "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}";
    // The Node is registered a moment after the join: until then `get` fails, and is retried.
    eventually(Duration::from_secs(60), || {
        let out = c.kubectl(&["get", "node", JOINED, "-o", ready])?;
        Ok(out.status.success() && out.stdout == b"True")
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", agent.log()))
}

/// Whether `kubectl logs` and `exec` reach the greeter pod.
fn greeter_reached(c: &Cluster) -> Result<bool> {
    let logs = c.kubectl(&["logs", "greeter"])?;
    let exec = c.kubectl(&["exec", "greeter", "--", "sh", "-c", "echo $((40+2))"])?;
    Ok(
        String::from_utf8_lossy(&logs.stdout).contains("hello from the joined node")
            && String::from_utf8_lossy(&exec.stdout) == "42\n",
    )
}

/// A node that joined with a bootstrap token asks for its serving certificate as itself; the
/// request is approved and issued on its own, and `kubectl logs` and `exec` reach the node's
/// pod through TLS the apiserver verified. Restarted, the agent serves the certificate it kept
/// (0600 in its node directory) and asks for no other.
#[test]
fn a_joined_nodes_serving_certificate_is_approved_on_its_own_and_verified() -> Result<()> {
    let c = joined_cluster()?;
    let dir = tempfile::tempdir()?;
    let mut agent = JoinedAgent::join(&c, dir.path())?;
    let _cleanup = DeletePods(&c);
    node_ready(&c, &agent)?;
    eventually(Duration::from_secs(30), || {
        Ok(serving_requests(&c)?.iter().any(|(_, _, issued)| *issued))
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", agent.log()))?;
    let requests = serving_requests(&c)?;
    assert_eq!(
        requests,
        [(
            format!("system:node:{JOINED}"),
            vec!["Approved".to_string()],
            true
        )],
        "{}",
        agent.log()
    );
    let kept = dir.path().join("node/pki/kubelet-server-current.pem");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&kept)?.permissions().mode() & 0o777,
        0o600
    );

    c.apply(JOINED_POD)?;
    running(&c, "greeter").map_err(|e| anyhow::anyhow!("{e}\n{}", agent.log()))?;
    let reached = || greeter_reached(&c);
    eventually(Duration::from_secs(20), reached)?;

    agent.stop();
    agent.start()?;
    // The restarted agent listens on a new port and publishes it: reached again.
    eventually(Duration::from_secs(60), reached)
        .map_err(|e| anyhow::anyhow!("{e}\n{}", agent.log()))?;
    assert_eq!(serving_requests(&c)?.len(), 1, "{}", agent.log());
    Ok(())
}

/// An agent with the admin's credentials (not a node identity) still asks for its serving
/// certificate, but nothing approves the request: until `kubectl certificate approve`, every
/// handshake with it fails and `kubectl logs` says so; then it serves.
#[test]
fn an_agent_that_is_not_a_node_identity_waits_for_kubectl_certificate_approve() -> Result<()> {
    let c = joined_cluster()?;
    let dir = tempfile::tempdir()?;
    let agent = JoinedAgent::admin(&c, dir.path())?;
    let _cleanup = DeletePods(&c);
    node_ready(&c, &agent)?;
    c.apply(JOINED_POD)?;
    running(&c, "greeter").map_err(|e| anyhow::anyhow!("{e}\n{}", agent.log()))?;
    let requests = serving_requests(&c)?;
    assert_eq!(
        requests,
        [("kubernetes-admin".to_string(), Vec::new(), false)],
        "{}",
        agent.log()
    );
    let out = c.kubectl(&["logs", "greeter"])?;
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && said.contains(&format!(
                "the handshake with the agent of node {JOINED} failed"
            ))
            && said.contains("until its serving certificate is issued"),
        "{said}"
    );
    let name = c.ok(&[
        "get",
        "csr",
        "-o",
        "jsonpath={.items[?(@.spec.signerName==\"kubernetes.io/kubelet-serving\")].metadata.name}",
    ])?;
    c.ok(&["certificate", "approve", name.trim()])?;
    // The agent reads its request again every 2 s.
    eventually(Duration::from_secs(30), || greeter_reached(&c))
        .map_err(|e| anyhow::anyhow!("{e}\n{}", agent.log()))?;
    assert_eq!(
        serving_requests(&c)?,
        [(
            "kubernetes-admin".to_string(),
            vec!["Approved".to_string()],
            true
        )]
    );
    Ok(())
}
