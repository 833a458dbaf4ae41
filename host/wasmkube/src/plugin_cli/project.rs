//! `wasmkube plugin new`: a standalone cargo project for a controller or a scheduling policy, with the SDK written into it.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use wasmkube_model::validation::is_dns1123_label;

use super::Kind;
use super::vendor::{self, Workspace};

/// Where the vendored crates and WIT files go, inside the project.
const VENDOR_DIR: &str = "wasmkube";

const MANIFEST: &str = include_str!("../../templates/Cargo.toml");
const README: &str = include_str!("../../templates/README.md");
const GITIGNORE: &str = include_str!("../../templates/gitignore");
/// The SDK's example controller (tested in the SDK): the controller template.
const MIRROR: &str = include_str!("../../../../sdk/examples/mirror.rs");
/// The example scoring policy (tested in its crate): the scheduler template.
const PREFER_LABEL: &str = include_str!("../../../../plugins/examples/preferlabel/src/lib.rs");

/// Names a project may not take although they are DNS labels: Rust keywords and built-in crates
/// (cargo refuses them as crate names) and the crates the project depends on by path.
const RESERVED: &str = "\
    abstract alloc as async await become box break const continue core crate do dyn else enum \
    extern false final fn for gen if impl in let loop macro match mod move mut override priv \
    proc-macro pub ref return self static std struct super test trait true try type typeof \
    unsafe unsized use virtual where while yield wasmkube-sdk wasmkube-model";

/// What differs between the two kinds of project.
struct Template {
    source: &'static str,
    crate_type: &'static str,
    profile: &'static str,
    summary: &'static str,
    usage: &'static str,
    kind_flag: &'static str,
}

fn template(kind: Kind) -> Template {
    match kind {
        Kind::Controller => Template {
            source: MIRROR,
            crate_type: "# A Wasm component.\ncrate-type = [\"cdylib\"]",
            profile: "# Controllers ship small: reconciles wait on the API, not on the CPU.\nopt-level = \"s\"\ndebug = false\nstrip = true",
            summary: "A wasmkube controller: ConfigMaps annotated `example.com/mirror: \"true\"` get an owned\n`<name>-mirror` copy that follows their data (`src/lib.rs`, the SDK's mirror example).",
            usage: "Try it:\n\n```sh\nkubectl create configmap app --from-literal=greeting=hello\nkubectl annotate configmap app example.com/mirror=true\nkubectl get configmap app-mirror -o yaml   # owned by app: deleted with it\n```",
            kind_flag: "",
        },
        Kind::Scheduler => Template {
            source: PREFER_LABEL,
            crate_type: "# A Wasm component, and a native library: the same policy unit-tested and run in-process.\ncrate-type = [\"cdylib\", \"rlib\"]",
            profile: "# Scheduling policies are on the scheduler's hot path: fast beats small.\ndebug = false\nstrip = true",
            summary: "A wasmkube scheduling policy: the score plugin `PreferLabel` prefers nodes carrying the label\nits arguments name (`src/lib.rs`, the example policy `preferlabel`).",
            usage: "Then name it in a `SchedulerProfile`, after the default policy, which finds the feasible nodes:\n\n```sh\nkubectl apply -f - <<'YAML'\napiVersion: wasmkube.dev/v1alpha1\nkind: SchedulerProfile\nmetadata: {name: default-scheduler}\nspec:\n  policies:\n  - {plugin: default}\n  - {plugin: NAME, scores: [{name: PreferLabel, weight: 100, args: {key: tier, value: gold}}]}\nYAML\n```",
            kind_flag: " --kind scheduler",
        },
    }
}

/// Why `name` cannot name a project, if it cannot.
fn check_name(name: &str) -> anyhow::Result<()> {
    if !is_dns1123_label(name) {
        bail!(
            "--name {name:?}: a plugin's name must be a DNS-1123 label (at most 63 characters: \
             lower case letters, digits and '-', starting and ending with a letter or digit)"
        );
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        bail!("--name {name:?}: it is also the crate's name, which cannot start with a digit");
    }
    if RESERVED.split_whitespace().any(|reserved| reserved == name) {
        bail!("--name {name:?}: it is also the crate's name, and cargo or Rust reserve this one");
    }
    Ok(())
}

/// Writes the project for plugin `name` into `dir`, which must not exist or be empty, and
/// returns how many files it wrote.
pub fn create(dir: &Path, name: &str, kind: Kind) -> anyhow::Result<usize> {
    check_name(name)?;
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir)
            .with_context(|| format!("{} exists and is not a directory", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} exists and is not empty: `plugin new` writes into a new or empty directory",
                dir.display()
            );
        }
    }
    let files = files(name, kind)?;
    for (path, text) in &files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(files.len())
}

/// Every file of the project: its path in the project and its text.
fn files(name: &str, kind: Kind) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let workspace = Workspace::embedded()?;
    let t = template(kind);
    let manifest = MANIFEST
        .replace("{name}", name)
        .replace("{edition}", workspace.package("edition")?)
        .replace("{rust_version}", workspace.package("rust-version")?)
        .replace("{crate_type}", t.crate_type)
        .replace("{profile}", t.profile);
    let readme = README
        .replace("{summary}", t.summary)
        .replace("{usage}", &t.usage.replace("NAME", name))
        .replace("{kind_flag}", t.kind_flag)
        .replace("{version}", env!("CARGO_PKG_VERSION"))
        .replace("{crate}", &name.replace('-', "_"))
        .replace("{name}", name);
    let mut files = vec![
        (PathBuf::from("Cargo.toml"), manifest),
        (PathBuf::from("Cargo.lock"), vendor::LOCK.to_string()),
        (PathBuf::from("README.md"), readme),
        (PathBuf::from(".gitignore"), GITIGNORE.to_string()),
        (PathBuf::from("src/lib.rs"), t.source.to_string()),
    ];
    for (path, text) in vendor::files(&workspace)? {
        files.push((Path::new(VENDOR_DIR).join(path), text));
    }
    Ok(files)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn refuses_names_that_are_not_labels_or_not_crate_names() {
        for bad in [
            "",
            "My-Plugin",
            "-x",
            "x-",
            "a.b",
            "a_b",
            "9lives",
            "fn",
            "wasmkube-sdk",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        let long = "a".repeat(64);
        assert!(check_name(&long).is_err());
        for good in ["mirror", "my-controller", "a1"] {
            check_name(good).unwrap();
        }
    }

    #[test]
    fn refuses_a_directory_that_is_not_empty() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep"), "").unwrap();
        let err = create(dir.path(), "mirror", Kind::Controller).unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
        assert!(!dir.path().join("Cargo.toml").exists());
    }

    #[test]
    fn writes_a_standalone_project() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("p");
        create(&project, "my-policy", Kind::Scheduler).unwrap();
        let manifest = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"my-policy\""), "{manifest}");
        assert!(manifest.contains("edition = \"2024\""), "{manifest}");
        assert!(manifest.contains("\"cdylib\", \"rlib\""), "{manifest}");
        let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
        for placeholder in [
            "{name}",
            "{edition}",
            "{rust_version}",
            "{crate_type}",
            "{profile}",
        ] {
            assert!(!manifest.contains(placeholder), "{manifest}");
        }
        for placeholder in [
            "{name}",
            "{summary}",
            "{usage}",
            "{kind_flag}",
            "{version}",
            "{crate}",
        ] {
            assert!(!readme.contains(placeholder), "{readme}");
        }
        assert!(readme.contains("my_policy.wasm --name my-policy --kind scheduler"));
        assert!(readme.contains("{plugin: my-policy,"), "{readme}");
        let lib = std::fs::read_to_string(project.join("src/lib.rs")).unwrap();
        assert!(lib.contains("export_scheduler!"));
        // The SDK generates its bindings from `../wit`, relative to its own manifest.
        assert!(project.join("wasmkube/sdk/../wit/wasmkube.wit").is_file());
        assert!(project.join("wasmkube/host/model/src/lib.rs").is_file());
        assert!(project.join(".gitignore").is_file());
        assert!(project.join("Cargo.lock").is_file());
    }
}
