//! `wasmkube plugin build`: a plugin project built into a `wasm32-wasip2` component in release, with its size and digest.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};
use serde_json::Value;
use wasmkube_controller::module;

/// The target plugins are built for.
const TARGET: &str = "wasm32-wasip2";

/// A built component.
pub struct Component {
    pub path: PathBuf,
    pub len: usize,
    /// `sha256:<hex>`, as `plugin install` and the Plugin's status show it.
    pub digest: String,
}

/// Builds the project in `dir` (its `cargo build --release --target wasm32-wasip2`, cargo's
/// progress and diagnostics on stderr), adding the target first when rustup lacks it.
pub fn build(dir: &Path) -> anyhow::Result<Component> {
    if !dir.join("Cargo.toml").is_file() {
        bail!(
            "{} has no Cargo.toml (`wasmkube plugin new` makes a project)",
            dir.display()
        );
    }
    add_target(dir)?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(dir)
        .args(["build", "--release", "--target", TARGET])
        .arg("--message-format=json-render-diagnostics")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo")?;
    if !out.status.success() {
        bail!("cargo build failed ({})", out.status);
    }
    let path = artifact(&String::from_utf8_lossy(&out.stdout))?;
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Component {
        digest: module::digest(&bytes),
        len: bytes.len(),
        path,
    })
}

/// `rustup target add wasm32-wasip2` for the project's toolchain when it is not installed.
/// Without rustup, cargo says whether the toolchain has the target.
fn add_target(dir: &Path) -> anyhow::Result<()> {
    let Ok(listed) = Command::new("rustup")
        .current_dir(dir)
        .args(["target", "list", "--installed"])
        .stderr(Stdio::inherit())
        .output()
    else {
        return Ok(());
    };
    let installed = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .any(|l| l.trim() == TARGET);
    if !listed.status.success() || installed {
        return Ok(());
    }
    eprintln!("rustup target add {TARGET}");
    let status = Command::new("rustup")
        .current_dir(dir)
        .args(["target", "add", TARGET])
        .status()
        .context("running rustup")?;
    if !status.success() {
        bail!("rustup target add {TARGET} failed ({status})");
    }
    Ok(())
}

/// The `.wasm` among cargo's JSON messages: the file built for the `cdylib` target.
fn artifact(messages: &str) -> anyhow::Result<PathBuf> {
    let wasm: Vec<PathBuf> = messages
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"))
        })
        .flat_map(|m| m["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| {
            f.as_str()
                .filter(|f| f.ends_with(".wasm"))
                .map(PathBuf::from)
        })
        .collect();
    match wasm.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("cargo built no .wasm: the crate's lib needs crate-type \"cdylib\""),
        _ => bail!("cargo built several .wasm files: {wasm:?}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_component_among_cargo_messages() {
        let messages = r#"{"reason":"compiler-artifact","target":{"kind":["lib"]},"filenames":["/t/libserde.rlib"]}
{"reason":"compiler-artifact","target":{"kind":["cdylib","rlib"]},"filenames":["/t/my_policy.wasm","/t/libmy_policy.rlib"]}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            artifact(messages).unwrap(),
            PathBuf::from("/t/my_policy.wasm")
        );
        assert!(artifact(r#"{"reason":"build-finished","success":true}"#).is_err());
    }
}
