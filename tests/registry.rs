//! Pulling from a registry with real containerd: a local Docker distribution registry (Debian's
//! `docker-registry`) serves an image pushed with skopeo; pods by `imagePullPolicy` run it, back
//! off when it is missing, or refuse to pull. Needs root, containerd, `docker-registry` and
//! `skopeo` (scripts/containerd.sh installs them) and the busybox image (scripts/build-images.sh).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use wasmkube_e2e::{Cluster, eventually};

const NODE: &str = "wk-registry";
const CONTAINERD: &str = "/run/wasmkube/containerd.sock";

/// A registry on 127.0.0.1 with its storage in a temporary directory, killed when dropped.
struct Registry {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Registry {
    fn start(dir: &Path) -> Result<Registry> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.join("storage").display()
            ),
        )?;
        let log = dir.join("registry.log");
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting /usr/bin/docker-registry (apt install docker-registry)")?;
        let registry = Registry { child, port, log };
        eventually(Duration::from_secs(10), || {
            Ok(TcpStream::connect(("127.0.0.1", port)).is_ok())
        })
        .with_context(|| format!("the registry did not listen:\n{}", registry.log()))?;
        Ok(registry)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many requests the registry answered for URIs containing `needle`, by its log.
    fn requests(&self, method: &str, needle: &str) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("response completed"))
            .filter(|l| l.contains(&format!("http.request.method={method}")))
            .filter(|l| l.contains(needle))
            .count()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program).args(args).output()?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Writes `data` as a blob of the OCI layout `layout`; returns its descriptor's digest and size.
fn add_blob(layout: &Path, data: &[u8]) -> Result<(String, usize)> {
    let staged = layout.join("staged");
    std::fs::write(&staged, data)?;
    let sum = run("sha256sum", &[&staged.display().to_string()])?;
    let hex = sum
        .split_whitespace()
        .next()
        .context("sha256sum printed nothing")?;
    std::fs::rename(&staged, layout.join("blobs/sha256").join(hex))?;
    Ok((format!("sha256:{hex}"), data.len()))
}

fn read_blob(layout: &Path, digest: &Value) -> Result<Value> {
    let digest = digest.as_str().context("a digest")?;
    let hex = digest.strip_prefix("sha256:").context("a sha256 digest")?;
    Ok(serde_json::from_slice(&std::fs::read(
        layout.join("blobs/sha256").join(hex),
    )?)?)
}

/// The project's busybox image with one more layer holding `/stamp` = `stamp`, as an OCI layout
/// (tag `latest`): its config and that layer are new to the node, whatever it imported before.
fn stamped_image(dir: &Path, stamp: &str) -> Result<PathBuf> {
    let archive = wasmkube_e2e::target_dir().join("images/busybox.tar");
    let layout = dir.join("layout");
    std::fs::create_dir_all(&layout)?;
    run(
        "tar",
        &[
            "-C",
            &layout.display().to_string(),
            "-xf",
            &archive.display().to_string(),
        ],
    )?;
    let files = dir.join("files");
    std::fs::create_dir_all(&files)?;
    std::fs::write(files.join("stamp"), format!("{stamp}\n"))?;
    let layer = dir.join("layer.tar");
    run(
        "tar",
        &[
            "-C",
            &files.display().to_string(),
            "-cf",
            &layer.display().to_string(),
            "stamp",
        ],
    )?;
    let (layer_digest, layer_size) = add_blob(&layout, &std::fs::read(&layer)?)?;

    let mut index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
    let mut manifest = read_blob(&layout, &index["manifests"][0]["digest"])?;
    let mut config = read_blob(&layout, &manifest["config"]["digest"])?;
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .context("diff_ids")?
        .push(json!(layer_digest));
    let (config_digest, config_size) = add_blob(&layout, &serde_json::to_vec(&config)?)?;
    manifest["config"]["digest"] = json!(config_digest);
    manifest["config"]["size"] = json!(config_size);
    manifest["layers"]
        .as_array_mut()
        .context("layers")?
        .push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}));
    let (manifest_digest, manifest_size) = add_blob(&layout, &serde_json::to_vec(&manifest)?)?;
    index["manifests"][0]["digest"] = json!(manifest_digest);
    index["manifests"][0]["size"] = json!(manifest_size);
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&index)?)?;
    Ok(layout)
}

fn pod(name: &str, image: &str, policy: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {NODE}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {image}\n    imagePullPolicy: {policy}\n    command: [sh, -c, 'cat /stamp; exec sleep 3600']\n"
    )
}

fn field(c: &Cluster, pod: &str, path: &str) -> Result<String> {
    c.ok(&["get", "pod", pod, "-o", &format!("jsonpath={{{path}}}")])
}

fn waiting_reason(c: &Cluster, pod: &str) -> Result<String> {
    field(c, pod, ".status.containerStatuses[0].state.waiting.reason")
}

/// Waits for the pod's container to wait with `reason`; returns its message.
fn waits_with(c: &Cluster, pod: &str, reason: &str) -> Result<String> {
    eventually(Duration::from_secs(30), || {
        Ok(waiting_reason(c, pod)? == reason)
    })
    .map_err(|e| {
        let describe = c.ok(&["describe", "pod", pod]).unwrap_or_default();
        anyhow::anyhow!(
            "pod {pod} never waited with {reason}: {e}\n{describe}\n{}",
            c.log()
        )
    })?;
    field(c, pod, ".status.containerStatuses[0].state.waiting.message")
}

fn running(c: &Cluster, pod: &str) -> Result<()> {
    eventually(Duration::from_secs(60), || {
        Ok(field(c, pod, ".status.phase")? == "Running")
    })
    .map_err(|e| {
        let statuses = field(c, pod, ".status.containerStatuses").unwrap_or_default();
        anyhow::anyhow!("pod {pod} not running: {e}\n{statuses}\n{}", c.log())
    })
}

/// Deletes the pods, then the images this test pulled, when dropped (pass or fail), so no
/// network or image record of theirs outlives the test.
struct Cleanup<'a> {
    cluster: &'a Cluster,
    images: Vec<String>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self
            .cluster
            .kubectl(&["delete", "pod", "--all", "--wait=true", "--timeout=60s"]);
        for image in &self.images {
            let _ = Command::new("ctr")
                .args([
                    "-a", CONTAINERD, "-n", "wasmkube", "images", "rm", "--sync", image,
                ])
                .output();
        }
    }
}

#[test]
fn pods_pull_from_a_registry_by_their_pull_policy() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let registry = Registry::start(dir.path())?;
    let stamp = format!("pulled-{}", registry.port);
    let layout = stamped_image(dir.path(), &stamp)?;
    let repository = format!("127.0.0.1:{}/demo/busybox", registry.port);
    let image = format!("{repository}:1");
    run(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:latest", layout.display()),
            &format!("docker://{image}"),
        ],
    )?;

    let c = Cluster::node(NODE, "wkreg0", "10.247.0.0/16", &[])?;
    let _cleanup = Cleanup {
        cluster: &c,
        images: vec![image.clone()],
    };

    // IfNotPresent on a node without it: pulled, unpacked, run (its own layer is there).
    c.apply(&pod("fresh", &image, "IfNotPresent"))?;
    running(&c, "fresh")?;
    eventually(Duration::from_secs(10), || {
        Ok(c.ok(&["logs", "fresh"])?.contains(&stamp))
    })?;
    let blobs = registry.requests("GET", "/v2/demo/busybox/blobs/");
    assert!(
        blobs >= 2,
        "the new config and layer were downloaded ({blobs} blob GETs)"
    );

    // Always: the manifest is resolved again, nothing already on the node is downloaded.
    let resolved = registry.requests("HEAD", "/v2/demo/busybox/manifests/1");
    c.apply(&pod("always", &image, "Always"))?;
    running(&c, "always")?;
    assert!(registry.requests("HEAD", "/v2/demo/busybox/manifests/1") > resolved);
    assert_eq!(registry.requests("GET", "/v2/demo/busybox/blobs/"), blobs);

    // A tag the registry does not have: the registry's answer, then the back-off.
    let missing = format!("{repository}:2");
    c.apply(&pod("missing", &missing, "IfNotPresent"))?;
    let message = waits_with(&c, "missing", "ErrImagePull")?;
    assert!(
        message.contains(&missing) && message.contains("404"),
        "ErrImagePull says what the registry answered: {message}"
    );
    let message = waits_with(&c, "missing", "ImagePullBackOff")?;
    assert_eq!(message, format!("Back-off pulling image \"{missing}\""));

    // Never, for an image the node does not have.
    let absent = format!("{repository}:3");
    c.apply(&pod("never", &absent, "Never"))?;
    let message = waits_with(&c, "never", "ErrImageNeverPull")?;
    assert!(message.contains(&absent), "{message}");
    assert_eq!(
        registry.requests("HEAD", "/v2/demo/busybox/manifests/3"),
        0,
        "Never does not ask the registry"
    );

    // A hostile registry whose token endpoint and manifests never end: the agent reads a
    // bounded prefix of each, refuses the pull with what went wrong, and hangs up.
    let hostile = Hostile::start()?;
    let image = format!("127.0.0.1:{}/evil/app:1", hostile.port);
    c.apply(&pod("endless-token", &image, "Always"))?;
    let message = waits_with(&c, "endless-token", "ErrImagePull")?;
    assert!(
        message.contains("answered no token of at most 65536 bytes"),
        "{message}"
    );
    let sent = hostile.sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        sent < 8 << 20,
        "the agent read {sent} bytes of an endless token"
    );
    Ok(())
}

/// A registry that asks for a bearer token and answers its token endpoint with a body that
/// never ends, counting what it managed to send before the client hung up.
struct Hostile {
    port: u16,
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Hostile {
    fn start() -> Result<Hostile> {
        use std::io::{BufRead, BufReader, Write};
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = sent.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let mut line = String::new();
                    let mut reader = BufReader::new(&stream);
                    let _ = reader.read_line(&mut line);
                    // The rest of the request's head.
                    let mut header = String::new();
                    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                        header.clear();
                    }
                    let mut out = &stream;
                    // Each answer closes its connection (said so in the 401), so the client
                    // asks for the token on a new one rather than on this closed one.
                    if !line.contains("/token") {
                        let challenge = format!(
                            "Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"evil\""
                        );
                        let _ = write!(
                            out,
                            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: {challenge}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        );
                        return;
                    }
                    let _ = write!(
                        out,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{{\"token\":\""
                    );
                    let chunk = [b'a'; 64 * 1024];
                    while out.write_all(&chunk).is_ok() {
                        counter.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::SeqCst);
                    }
                });
            }
        });
        Ok(Hostile { port, sent })
    }
}
