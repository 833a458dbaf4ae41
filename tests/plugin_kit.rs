//! The plugin developer kit with real kubectl: a project from `wasmkube plugin new` outside the repository, its unit tests, `wasmkube plugin build`, and the controller installed and mirroring.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use wasmkube_e2e::{Cluster, binary, eventually, target_dir};

/// Runs `program args` in `cwd`, fails unless it succeeds, and returns its stdout. Every project
/// builds into one target directory beside the workspace's, so the crates.io dependencies are
/// compiled once; offline, because the workspace has fetched every crate a project locks.
fn run(program: impl Into<OsString>, args: &[&str], cwd: &Path) -> Result<String> {
    let program = program.into();
    let out = Command::new(&program)
        .args(args)
        .current_dir(cwd)
        .env("CARGO_TARGET_DIR", target_dir().join("plugin-projects"))
        .env("CARGO_NET_OFFLINE", "true")
        .output()
        .with_context(|| format!("running {}", program.to_string_lossy()))?;
    if !out.status.success() {
        bail!(
            "{} {} failed: {}{}",
            program.to_string_lossy(),
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// The stderr of `wasmkube args`, which must fail.
fn refused(args: &[&str]) -> Result<String> {
    let out = Command::new(binary()).args(args).output()?;
    if out.status.success() {
        bail!("wasmkube {} succeeded", args.join(" "));
    }
    Ok(String::from_utf8(out.stderr)?)
}

#[test]
fn a_new_project_tests_builds_installs_and_mirrors_configmaps() -> Result<()> {
    let tmp = tempfile::tempdir()?; // under the system's temporary directory, outside the repository
    let dir = tmp.path().join("mirror");
    let project = dir.display().to_string();

    let bad_name = refused(&["plugin", "new", &project, "--name", "My_Mirror"])?;
    assert!(bad_name.contains("DNS-1123 label"), "{bad_name}");
    assert!(!dir.exists(), "nothing is written for a bad name");
    let written = run(
        binary(),
        &["plugin", "new", &project, "--name", "mirror"],
        tmp.path(),
    )?;
    assert!(written.contains("files written"), "{written}");
    let not_empty = refused(&["plugin", "new", &project, "--name", "mirror"])?;
    assert!(not_empty.contains("not empty"), "{not_empty}");

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let tests = run(&cargo, &["test"], &dir)?;
    assert!(
        tests.contains("tests::creates_then_updates_the_copy ... ok"),
        "{tests}"
    );

    // A scheduling policy's project: the example policy's unit test, natively.
    let policy = tmp.path().join("policy");
    let policy_project = policy.display().to_string();
    let args = [
        "plugin",
        "new",
        &policy_project,
        "--name",
        "prefer-gold",
        "--kind",
        "scheduler",
    ];
    run(binary(), &args, tmp.path())?;
    let tests = run(&cargo, &["test"], &policy)?;
    assert!(
        tests.contains("tests::prefers_labelled_candidates ... ok"),
        "{tests}"
    );

    let built = run(binary(), &["plugin", "build", &project], tmp.path())?;
    let field = |key: &str| -> Result<String> {
        built
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_string())
            .with_context(|| format!("no {key} in {built}"))
    };
    let (wasm, digest) = (field("component:")?, field("digest:")?);
    assert!(
        wasm.ends_with("/wasm32-wasip2/release/mirror.wasm"),
        "{wasm}"
    );
    let len = std::fs::metadata(&wasm)?.len();
    assert_eq!(field("size:")?, format!("{len} bytes"));
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );

    let c = Cluster::start()?;
    let installed = c.wasmkube(&["plugin", "install", &wasm, "--name", "mirror", "--yes"])?;
    assert!(installed.contains(&digest), "{installed}");
    eventually(Duration::from_secs(30), || {
        let status = "jsonpath={.status.phase} {.status.activeDigest}";
        Ok(c.ok(&["get", "plugin", "mirror", "-o", status])? == format!("Running {digest}"))
    })?;

    c.ok(&["create", "configmap", "plain", "--from-literal=k=v"])?;
    c.ok(&["create", "configmap", "app", "--from-literal=k=v1"])?;
    c.ok(&["annotate", "configmap", "app", "example.com/mirror=true"])?;
    let copy = |path: &str| -> Result<Option<String>> {
        let out = c.kubectl(&["get", "configmap", "app-mirror", "-o", path])?;
        Ok(out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned()))
    };
    eventually(Duration::from_secs(30), || Ok(copy("name")?.is_some()))?;
    let uid = c.ok(&["get", "configmap", "app", "-o", "jsonpath={.metadata.uid}"])?;
    let owner = "jsonpath={.metadata.ownerReferences[0].kind} {.metadata.ownerReferences[0].uid} {.metadata.ownerReferences[0].controller} {.data.k}";
    assert_eq!(copy(owner)?, Some(format!("ConfigMap {uid} true v1")));
    assert!(
        !c.kubectl(&["get", "configmap", "plain-mirror"])?
            .status
            .success(),
        "a ConfigMap without the annotation gets no copy"
    );

    c.ok(&[
        "patch",
        "configmap",
        "app",
        "--type=merge",
        "-p",
        r#"{"data":{"k":"v2"}}"#,
    ])?;
    eventually(Duration::from_secs(30), || {
        Ok(copy("jsonpath={.data.k}")?.as_deref() == Some("v2"))
    })?;
    c.ok(&["delete", "configmap", "app"])?;
    eventually(Duration::from_secs(30), || Ok(copy("name")?.is_none()))?;
    Ok(())
}
