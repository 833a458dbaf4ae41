//! `wasmkube plugin logs` and `plugins/NAME/log` against a real server: a plugin's own lines labelled with its version, its start, traps, a swap and a rollback, `-f` following new lines, `--tail`, RBAC on `plugins/log`, 404 for an unknown plugin, 400 naming a bad parameter, and a deleted plugin's log gone.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use wasmkube_e2e::{Cluster, eventually};

const LOG: &str = "/apis/wasmkube.dev/v1alpha1/plugins";

/// `active@` and the first 12 hex digits of the module `wasmkube plugin install` printed.
fn label(installed: &str) -> Result<String> {
    let hex = installed
        .split_once("sha256:")
        .and_then(|(_, d)| d.get(..12))
        .with_context(|| format!("no digest in {installed:?}"))?;
    Ok(format!("active@{hex}"))
}

/// A ClusterRole `name` letting `get` (and `list`) `resource` of wasmkube.dev, bound to alice.
fn grant(name: &str, resource: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {name}}}
rules:
- {{apiGroups: [wasmkube.dev], resources: [\"{resource}\"], verbs: [get, list]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {name}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {name}}}
subjects:
- {{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}}
"
    )
}

/// `wasmkube plugin logs ARGS…` following, its stdout lines sent on a channel as they come.
struct Following {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Following {
    fn start(c: &Cluster, args: &[&str]) -> Result<Following> {
        let mut child = Command::new(wasmkube_e2e::binary())
            .args(["plugin", "logs"])
            .args(args)
            .env("KUBECONFIG", c.kubeconfig())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(Following { child, lines })
    }

    /// Waits for a line containing `needle`.
    fn wait_for(&self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Ok(line),
                Ok(_) => {}
                Err(_) => bail!("no line with {needle:?} within {timeout:?}"),
            }
        }
    }

    /// Waits for the command to end by itself.
    fn wait_end(&mut self, timeout: Duration) -> Result<()> {
        eventually(timeout, || Ok(self.child.try_wait()?.is_some()))
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn plugin_logs_show_labelled_lines_traps_and_follow_under_rbac() -> Result<()> {
    let c = Cluster::start()?;
    c.ok(&["create", "configmap", "poke"])?;
    let echo = label(&c.install_plugin("test_echo", "echo")?)?;
    let panic = label(&c.install_plugin("test_panic", "panic")?)?;

    // The guest's own lines, labelled with the version that wrote them.
    let wanted = format!("{echo} INFO reconciling default/poke");
    eventually(Duration::from_secs(30), || {
        Ok(c.wasmkube(&["plugin", "logs", "echo"])?.contains(&wanted))
    })?;
    // echo reads its config map again every 5 ms: a guest that logs in a loop, kept to the
    // last lines.
    let tail = c.wasmkube(&["plugin", "logs", "echo", "--tail", "3"])?;
    assert_eq!(tail.lines().count(), 3, "{tail}");
    let stamped = c.wasmkube(&["plugin", "logs", "echo", "--tail", "1", "--timestamps"])?;
    let (time, rest) = stamped.split_once(' ').context("a time first")?;
    assert!(time.ends_with('Z') && time.contains('T'), "{stamped}");
    assert!(rest.starts_with(&echo), "{stamped}");

    // A trap, with the guest's panic message, and the host's start line.
    eventually(Duration::from_secs(30), || {
        let log = c.wasmkube(&["plugin", "logs", "panic"])?;
        Ok(log.contains(&format!("{panic} Started running"))
            && log.lines().any(|l| {
                l.starts_with(&format!("{panic} Trapped "))
                    && l.contains("reconcile exploded on default/poke")
            }))
    })?;

    // -f prints lines written later.
    let following = Following::start(&c, &["echo", "-f", "--tail", "0"])?;
    std::thread::sleep(Duration::from_millis(500));
    c.ok(&["create", "configmap", "later"])?;
    let line = following.wait_for("reconciling default/later", Duration::from_secs(30))?;
    assert!(line.starts_with(&format!("{echo} INFO ")), "{line}");
    drop(following);

    // kubectl reads it too, bounded as pods/log is.
    let raw = c.ok(&["get", "--raw", &format!("{LOG}/echo/log?limitBytes=10")])?;
    assert_eq!(raw.len(), 10, "{raw:?}");
    let discovery = c.ok(&["get", "--raw", "/apis/wasmkube.dev/v1alpha1"])?;
    assert!(discovery.contains("\"plugins/log\""), "{discovery}");

    // Bad values are 400s naming the parameter; an unknown plugin is a 404.
    let bad = c.fails(&["get", "--raw", &format!("{LOG}/echo/log?tailLines=-1")])?;
    assert!(
        bad.contains("BadRequest") || bad.contains("tailLines"),
        "{bad}"
    );
    assert!(bad.contains("tailLines"), "{bad}");
    let missing = c.fails(&["get", "--raw", &format!("{LOG}/nosuch/log")])?;
    assert!(
        missing.contains("NotFound") || missing.contains("not found"),
        "{missing}"
    );
    let err = c
        .wasmkube(&["plugin", "logs", "nosuch"])
        .expect_err("no such plugin");
    assert!(err.to_string().contains("404"), "{err}");

    // RBAC decides, on the subresource: alice may get plugins, not their logs, until granted.
    c.apply(&grant("plugin-reader", "plugins"))?;
    c.ok(&["get", "plugin", "echo", "--as=alice"])?;
    let refused = c.fails(&["get", "--raw", &format!("{LOG}/echo/log"), "--as=alice"])?;
    assert!(
        refused.contains("Forbidden") || refused.contains("forbidden"),
        "{refused}"
    );
    c.apply(&grant("plugin-log-reader", "plugins/log"))?;
    eventually(Duration::from_secs(10), || {
        let out = c.kubectl(&["get", "--raw", &format!("{LOG}/echo/log"), "--as=alice"])?;
        Ok(out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&echo))
    })?;

    // A swap to a module that keeps trapping, and the rollback, each written by the version
    // in force then. echo needs other permissions than panic (it reads Secrets): the rollback
    // runs it again with its own.
    let good = label(&c.install_plugin("test_echo", "swap")?)?;
    eventually(Duration::from_secs(30), || {
        Ok(c.wasmkube(&["plugin", "logs", "swap"])?
            .contains(&format!("{good} Started running")))
    })?;
    c.install_plugin("test_panic", "swap")?;
    let (good_hex, panic_hex) = (&good["active@".len()..], &panic["active@".len()..]);
    eventually(Duration::from_secs(60), || {
        let log = c.wasmkube(&["plugin", "logs", "swap"])?;
        let has = |start: &str, needle: &str| {
            log.lines()
                .any(|l| l.starts_with(start) && l.contains(needle))
        };
        Ok(has(
            &format!("{panic} Swapped "),
            &format!("took over from sha256:{good_hex}"),
        ) && has(&format!("{panic} Trapped "), "reconcile exploded")
            && has(
                &format!("{good} RolledBack "),
                &format!("sha256:{panic_hex}"),
            ))
    })
    .map_err(|e| {
        let log = c.wasmkube(&["plugin", "logs", "swap"]).unwrap_or_default();
        anyhow::anyhow!("{e}; the log:\n{log}")
    })?;

    // A deleted plugin's log goes with it: a follower ends, and the log is a 404.
    let mut following = Following::start(&c, &["panic", "-f"])?;
    following.wait_for("Trapped", Duration::from_secs(30))?;
    c.ok(&["delete", "plugin", "panic"])?;
    following.wait_end(Duration::from_secs(30))?;
    eventually(Duration::from_secs(30), || {
        Ok(!c
            .kubectl(&["get", "--raw", &format!("{LOG}/panic/log")])?
            .status
            .success())
    })?;
    Ok(())
}
