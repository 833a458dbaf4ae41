//! Builds the built-in plugins (every `plugins/*/` crate: the controllers and the default
//! scheduling policy) for `wasm32-wasip2` in release and embeds them, deflated, in the binary;
//! lists the SDK's sources, the model's and the WIT files for `wasmkube plugin new` to embed.
//!
//! The components are built by a nested cargo into `<target>/plugins`, a target directory of its
//! own: the outer build holds the lock on `<target>/release` (or `debug`), which a nested release
//! build in the same directory would wait for forever. `scripts/build-plugins.sh` builds into the
//! same directory, so the plugins are compiled once whichever comes first.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

const TARGET: &str = "wasm32-wasip2";

/// A built-in plugin crate: `plugins/<dir>/`.
struct Builtin {
    /// The package name (`wasmkube-plugin-replicaset`).
    package: String,
    /// The Plugin object's name (`replicaset`; `default` for the scheduling policy).
    name: String,
    /// `Controller`, or `Scheduler` for a policy (`wasmkube-policy-*`).
    kind: &'static str,
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest.join("../..");
    let builtins = builtins(&workspace.join("plugins"));
    for dir in ["plugins", "sdk", "wit", "host/model"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    for file in ["Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", workspace.join(file).display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("plugins");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(&workspace)
        .args(["build", "--release", "--target", TARGET])
        .arg("--target-dir")
        .arg(&target_dir);
    for b in &builtins {
        build.args(["-p", &b.package]);
    }
    // The outer build's flags are for the host, not for wasm.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
    ] {
        build.env_remove(var);
    }
    let status = build
        .status()
        .expect("running cargo for the built-in plugins");
    if !status.success() {
        panic!(
            "building the built-in plugins for {TARGET} failed; is the target installed? \
             (`rustup target add {TARGET}`, which scripts/setup.sh does)"
        );
    }

    // Each component is deflated into OUT_DIR and embedded from there, so the bytes and the
    // digest below come from one read: `<target>/plugins` is rebuilt by `scripts/build-plugins.sh`
    // with other packages (other feature unification, other bytes), and an `include_bytes!` of
    // that file would then embed bytes whose digest is not the one recorded here. Deflated, the
    // built-ins are a quarter of their size: what a first start reads of the binary to install
    // them stays resident as long as the process runs (docs/benchmarks.md, Memory).
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    let mut table = String::from("&[\n");
    for b in &builtins {
        let wasm = format!("{}.wasm", b.package.replace('-', "_"));
        let built = target_dir.join(TARGET).join("release").join(&wasm);
        let bytes = std::fs::read(&built).expect("reading a built plugin");
        let file = out_dir.join(format!("{wasm}.deflate"));
        let mut deflate =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        deflate.write_all(&bytes).expect("deflating a built plugin");
        let deflated = deflate.finish().expect("deflating a built plugin");
        std::fs::write(&file, deflated).expect("writing a deflated plugin into OUT_DIR");
        let digest: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        writeln!(
            table,
            "    Builtin {{ name: {:?}, kind: PluginKind::{}, deflated: include_bytes!({:?}), len: {}, digest: \"sha256:{digest}\" }},",
            b.name,
            b.kind,
            file.display().to_string(),
            bytes.len()
        )
        .expect("writing to a String");
    }
    table.push(']');
    std::fs::write(out_dir.join("builtins.rs"), table).expect("writing builtins.rs");
    vendor(&workspace, &out_dir);
}

/// What `wasmkube plugin new` writes into a project so that it builds without this repository:
/// the crates the SDK needs and the WIT package.
const VENDORED: [&str; 3] = ["sdk", "host/model", "wit"];

/// Writes `vendor.rs`: `(path in the repository, include_str!(file))` for each vendored crate's
/// `Cargo.toml`, `README.md` and `src/**/*.rs`, and the `.wit` files.
fn vendor(workspace: &Path, out_dir: &Path) {
    let mut files = Vec::new();
    for dir in VENDORED {
        let root = workspace.join(dir);
        for name in ["Cargo.toml", "README.md"] {
            if root.join(name).is_file() {
                files.push(format!("{dir}/{name}"));
            }
        }
        let mut stack = vec![String::new()];
        while let Some(sub) = stack.pop() {
            let entries = std::fs::read_dir(root.join(&sub)).expect("reading a vendored directory");
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = if sub.is_empty() {
                    name.clone()
                } else {
                    format!("{sub}/{name}")
                };
                if entry.path().is_dir() {
                    // A crate's sources are under src/; its tests and examples stay behind.
                    if dir == "wit" || !sub.is_empty() || name == "src" {
                        stack.push(path);
                    }
                } else if (!sub.is_empty() && name.ends_with(".rs")) || name.ends_with(".wit") {
                    files.push(format!("{dir}/{path}"));
                }
            }
        }
    }
    files.sort();
    let mut table = String::from("&[\n");
    for file in files {
        let absolute = workspace.join(&file).display().to_string();
        writeln!(table, "    ({file:?}, include_str!({absolute:?})),")
            .expect("writing to a String");
    }
    table.push(']');
    std::fs::write(out_dir.join("vendor.rs"), table).expect("writing vendor.rs");
}

/// The crates under `plugins/` (not `examples/` nor `tests/`) that build a component.
fn builtins(plugins: &Path) -> Vec<Builtin> {
    let mut found = Vec::new();
    let entries = std::fs::read_dir(plugins).expect("reading plugins/");
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("Cargo.toml")) else {
            continue;
        };
        if !text
            .lines()
            .any(|l| l.starts_with("crate-type") && l.contains("\"cdylib\""))
        {
            continue;
        }
        let Some(package) = text.lines().find_map(|l| {
            let value = l.strip_prefix("name")?.trim_start().strip_prefix('=')?;
            Some(value.trim().trim_matches('"').to_string())
        }) else {
            continue;
        };
        let (name, kind) = if let Some(policy) = package.strip_prefix("wasmkube-policy-") {
            (policy.to_string(), "Scheduler")
        } else {
            let name = package.strip_prefix("wasmkube-plugin-").unwrap_or(&package);
            (name.to_string(), "Controller")
        };
        found.push(Builtin {
            package,
            name,
            kind,
        });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}
