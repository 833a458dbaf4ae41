//! `docs/tutorial-controller.md`, run as written: its `sh` blocks in order (each must succeed), and the commands of its `console` blocks (each must print what follows it), against `wasmkube up` with real kubectl.

use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use wasmkube_e2e::{Cluster, binary, eventually, target_dir};

const TUTORIAL: &str = include_str!("../docs/tutorial-controller.md");

/// A fenced block of the tutorial.
#[derive(Debug, PartialEq)]
enum Block {
    /// A script that must succeed.
    Script(String),
    /// Commands, each with the output it must print (stdout and stderr, trimmed).
    Console(Vec<(String, String)>),
}

/// The `sh` and `console` blocks of `markdown`, in order; other blocks are prose.
fn blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<(&str, Vec<&str>)> = None;
    for line in markdown.lines() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => open = Some((info.trim(), Vec::new())),
            (Some((info, lines)), Some("")) => {
                match *info {
                    "sh" => blocks.push(Block::Script(lines.join("\n"))),
                    "console" => blocks.push(Block::Console(console(lines))),
                    _ => {}
                }
                open = None;
            }
            (Some((_, lines)), _) => lines.push(line),
            (None, None) => {}
        }
    }
    blocks
}

/// `$ command` lines, each followed by its output lines.
fn console(lines: &[&str]) -> Vec<(String, String)> {
    let mut commands: Vec<(String, String)> = Vec::new();
    for line in lines {
        match (line.strip_prefix("$ "), commands.last_mut()) {
            (Some(command), _) => commands.push((command.to_string(), String::new())),
            (None, Some((_, output))) => {
                output.push_str(line);
                output.push('\n');
            }
            (None, None) => {}
        }
    }
    commands
}

/// Where the tutorial's commands run: a directory outside the repository, the cluster's admin
/// kubeconfig, the `wasmkube` under test first on the PATH, and the plugin projects' shared
/// target directory (offline: the workspace has fetched every crate a project locks).
struct Reader<'a> {
    cluster: &'a Cluster,
    /// The directory the last script ended in (`cd` carries over, as in one shell).
    cwd_file: std::path::PathBuf,
}

impl Reader<'_> {
    fn bash(&self, script: &str) -> Result<Output> {
        let bin_dir = binary()
            .parent()
            .context("the binary's directory")?
            .to_owned();
        let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )))?;
        let cwd = std::fs::read_to_string(&self.cwd_file)?;
        // Each block bounded: its waits have timeouts of their own, its builds do not.
        Command::new("timeout")
            .args(["600", "bash", "-c", script])
            .current_dir(cwd.trim())
            .env("PATH", path)
            .env("KUBECONFIG", self.cluster.kubeconfig())
            .env("CARGO_TARGET_DIR", target_dir().join("plugin-projects"))
            .env("CARGO_NET_OFFLINE", "true")
            .env("TUTORIAL_CWD_FILE", &self.cwd_file)
            .output()
            .context("running bash")
    }

    fn run(&self, block: &Block) -> Result<()> {
        match block {
            Block::Script(script) => {
                let wrapped =
                    format!("set -euo pipefail\n{script}\npwd > \"$TUTORIAL_CWD_FILE\"\n");
                let out = self.bash(&wrapped)?;
                if !out.status.success() {
                    bail!(
                        "this block failed ({}):\n{script}\nstdout:\n{}\nstderr:\n{}\nserver log:\n{}",
                        out.status,
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr),
                        self.cluster.log()
                    );
                }
                eprintln!("ran:\n{script}\n{}", String::from_utf8_lossy(&out.stdout));
            }
            Block::Console(commands) => {
                for (command, expected) in commands {
                    let out = self.bash(&format!("{command} 2>&1"))?;
                    let printed = String::from_utf8_lossy(&out.stdout);
                    if printed.trim() != expected.trim() {
                        bail!(
                            "`{command}` printed:\n{printed}\nthe tutorial says:\n{expected}\nserver log:\n{}",
                            self.cluster.log()
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

#[test]
fn the_tutorial_blocks_are_read_as_written() {
    let markdown =
        "text\n```sh\na\ncd b\n```\n```yaml\nk: v\n```\n```console\n$ x\none\ntwo\n$ y\n```\n";
    assert_eq!(
        blocks(markdown),
        [
            Block::Script("a\ncd b".into()),
            Block::Console(vec![
                ("x".into(), "one\ntwo\n".into()),
                ("y".into(), String::new())
            ]),
        ]
    );
}

#[test]
fn the_controller_tutorial_runs_as_written() -> Result<()> {
    let c = Cluster::node("wk-tutorial", "wktut0", "10.234.0.0/16", &[])?;
    let home = tempfile::tempdir()?; // under the system's temporary directory, outside the repository
    let reader = Reader {
        cluster: &c,
        cwd_file: home.path().join(".cwd"),
    };
    std::fs::write(&reader.cwd_file, home.path().display().to_string())?;
    let blocks = blocks(TUTORIAL);
    assert!(blocks.len() >= 10, "{blocks:?}");
    for block in &blocks {
        reader.run(block)?;
    }
    // What the last sections leave: version 3 named, version 2 running, v2's copies everywhere.
    let status = "jsonpath={.status.phase} {.status.activeDigest}";
    let (phase, active) = c
        .ok(&["get", "plugin", "copier", "-o", status])?
        .split_once(' ')
        .map(|(p, a)| (p.to_string(), a.to_string()))
        .context("phase and digest")?;
    assert_eq!(phase, "RolledBack");
    let spec = c.ok(&[
        "get",
        "plugin",
        "copier",
        "-o",
        "jsonpath={.spec.module.digest}",
    ])?;
    assert_ne!(spec, active, "version 3 is named but not running");
    for name in [
        "app-copy",
        "second-copy",
        "empty-copy",
        "app-mirror",
        "second-mirror",
    ] {
        c.ok(&["get", "configmap", name])?;
    }

    // The broken version 3 in shadow beside version 2: its traps are its own, and `discard`
    // drops it.
    let v3 = target_dir().join("plugin-projects/wasm32-wasip2/release/copier.wasm");
    c.wasmkube(&[
        "plugin",
        "install",
        &v3.display().to_string(),
        "--name",
        "copier",
        "--shadow",
    ])?;
    c.ok(&["annotate", "configmap", "empty", "touched=1"])?;
    let shadow = "jsonpath={.status.shadow.digest} {.status.shadow.traps} {.status.traps}";
    eventually(Duration::from_secs(60), || {
        let status = c.ok(&["get", "plugin", "copier", "-o", shadow])?;
        let fields: Vec<&str> = status.split(' ').collect();
        Ok(matches!(fields[..], [digest, traps, "0"] if digest == spec && traps != "0"))
    })?;
    c.ok(&["get", "configmap", "empty-copy"])?;
    c.wasmkube(&["plugin", "discard", "copier"])?;
    eventually(Duration::from_secs(30), || {
        let shadow = "jsonpath={.spec.shadow}{.status.shadow}";
        Ok(c.ok(&["get", "plugin", "copier", "-o", shadow])?.is_empty())
    })?;
    let out = Command::new(binary())
        .args(["plugin", "discard", "copier"])
        .env("KUBECONFIG", c.kubeconfig())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("plugin copier has no shadow version"),
        "{stderr}"
    );
    Ok(())
}
