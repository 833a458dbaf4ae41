//! The SDK, the API model and the WIT files as this binary carries them, with manifests that no longer inherit from the workspace.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};

/// Every vendored file: its path in the repository and its text (listed by `build.rs`).
const FILES: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/vendor.rs"));
/// The workspace manifest the vendored crates inherit from.
const WORKSPACE_MANIFEST: &str = include_str!("../../../../Cargo.toml");
/// The workspace's lock file: a project that starts from it builds with the versions this
/// repository is tested with (cargo drops the entries the project does not use).
pub const LOCK: &str = include_str!("../../../../Cargo.lock");

/// What the vendored manifests take from the workspace manifest.
pub struct Workspace {
    /// `[workspace.package]`: key → TOML value.
    package: BTreeMap<String, String>,
    /// `[workspace.dependencies]`: name → TOML value.
    dependencies: BTreeMap<String, String>,
    /// `[workspace.lints.*]` as `[lints.*]` sections.
    lints: String,
}

impl Workspace {
    /// The workspace manifest this binary was built from.
    pub fn embedded() -> anyhow::Result<Workspace> {
        Workspace::parse(WORKSPACE_MANIFEST)
    }

    /// Reads the one-line `key = value` entries of `[workspace.package]` and
    /// `[workspace.dependencies]`, and the `[workspace.lints.*]` sections.
    fn parse(manifest: &str) -> anyhow::Result<Workspace> {
        let mut workspace = Workspace {
            package: BTreeMap::new(),
            dependencies: BTreeMap::new(),
            lints: String::new(),
        };
        let mut section = String::new();
        for line in manifest.lines() {
            let trimmed = line.trim();
            if let Some(header) = header(trimmed) {
                section = header.to_string();
                if let Some(lints) = section.strip_prefix("workspace.lints.") {
                    if !workspace.lints.is_empty() {
                        workspace.lints.push('\n');
                    }
                    workspace.lints.push_str(&format!("[lints.{lints}]\n"));
                }
                continue;
            }
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let table = match section.as_str() {
                "workspace.package" => &mut workspace.package,
                "workspace.dependencies" => &mut workspace.dependencies,
                s if s.starts_with("workspace.lints.") => {
                    workspace.lints.push_str(trimmed);
                    workspace.lints.push('\n');
                    continue;
                }
                _ => continue,
            };
            let (key, value) = entry(trimmed)
                .with_context(|| format!("[{section}]: `{trimmed}` is not a one-line entry"))?;
            table.insert(key.to_string(), value.to_string());
        }
        Ok(workspace)
    }

    /// A workspace package value (`edition`, `rust-version`, …).
    pub fn package(&self, key: &str) -> anyhow::Result<&str> {
        self.package
            .get(key)
            .map(String::as_str)
            .with_context(|| format!("the workspace manifest has no package.{key}"))
    }

    /// The manifest of the member crate in `dir` (`host/model`) with every `workspace = true`
    /// replaced by the workspace's value, path dependencies made relative to `dir`, and what a
    /// dependency needs no more (`[dev-dependencies]`, `[[example]]`) left out.
    pub fn standalone(&self, dir: &str, manifest: &str) -> anyhow::Result<String> {
        let up = "../".repeat(dir.split('/').count());
        let mut out = String::new();
        let mut section = String::new();
        for line in manifest.lines() {
            let trimmed = line.trim();
            if trimmed.starts_with('[') {
                section = header(trimmed).unwrap_or(trimmed).to_string();
                if section != "lints" && !skipped(&section) {
                    out.push_str(line);
                    out.push('\n');
                }
                continue;
            }
            if skipped(&section) {
                continue;
            }
            let Some((key, value)) = entry(trimmed) else {
                out.push_str(line);
                out.push('\n');
                continue;
            };
            if section == "lints" {
                if (key, value) != ("workspace", "true") {
                    bail!("{dir}/Cargo.toml: [lints] other than `workspace = true`");
                }
                out.push_str(&self.lints);
                continue;
            }
            let Some(name) = key.strip_suffix(".workspace") else {
                if value.replace(' ', "").contains("workspace=true") {
                    bail!("{dir}/Cargo.toml: `{trimmed}` inherits in a way not handled here");
                }
                out.push_str(line);
                out.push('\n');
                continue;
            };
            let inherited = match section.as_str() {
                "package" => self.package(name)?.to_string(),
                "dependencies" | "build-dependencies" => {
                    let value = self.dependencies.get(name).with_context(|| {
                        format!("{dir}/Cargo.toml: no workspace dependency {name}")
                    })?;
                    relative_path(value, &up)
                }
                _ => bail!("{dir}/Cargo.toml: `{trimmed}` in [{section}]"),
            };
            out.push_str(&format!("{name} = {inherited}\n"));
        }
        Ok(out)
    }
}

/// The sections of a member manifest that a vendored dependency does without.
fn skipped(section: &str) -> bool {
    section == "dev-dependencies" || section == "[example]"
}

/// `x.y` of a `[x.y]` line (`[example]` of `[[example]]`).
fn header(line: &str) -> Option<&str> {
    Some(line.strip_prefix('[')?.strip_suffix(']')?.trim())
}

/// `key` and `value` of a one-line `key = value`.
fn entry(line: &str) -> Option<(&str, &str)> {
    let (key, value) = line.split_once('=')?;
    let (key, value) = (key.trim(), value.trim());
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    (!key.is_empty() && key.chars().all(plain) && !value.is_empty()).then_some((key, value))
}

/// A dependency value with its `path = "…"` (relative to the workspace root) made relative to a
/// member `up` levels below it.
fn relative_path(value: &str, up: &str) -> String {
    value.replacen("path = \"", &format!("path = \"{up}"), 1)
}

/// The vendored files as a project gets them: `(path relative to the vendor directory, text)`,
/// manifests standalone.
pub fn files(workspace: &Workspace) -> anyhow::Result<Vec<(&'static str, String)>> {
    FILES
        .iter()
        .map(|(path, text)| match path.strip_suffix("/Cargo.toml") {
            Some(dir) => Ok((*path, workspace.standalone(dir, text)?)),
            None => Ok((*path, (*text).to_string())),
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_vendored_manifest_becomes_standalone() {
        let workspace = Workspace::embedded().unwrap();
        let files = files(&workspace).unwrap();
        let paths: Vec<&str> = files.iter().map(|(p, _)| *p).collect();
        for wanted in [
            "sdk/Cargo.toml",
            "sdk/src/lib.rs",
            "sdk/src/bindings/mod.rs",
            "host/model/Cargo.toml",
            "host/model/src/lib.rs",
            "wit/wasmkube.wit",
        ] {
            assert!(paths.contains(&wanted), "{wanted} not vendored");
        }
        assert!(!paths.iter().any(|p| p.starts_with("sdk/tests/")));
        let manifest = |path: &str| &files.iter().find(|(p, _)| *p == path).unwrap().1;
        let sdk = manifest("sdk/Cargo.toml");
        let inherits = |m: &str| m.contains(".workspace") || m.contains("workspace = true");
        assert!(!inherits(sdk), "{sdk}");
        assert!(sdk.contains("wasmkube-model = { path = \"../host/model\" }"));
        assert!(sdk.contains("version = \"0.1.0\""));
        assert!(!sdk.contains("[[example]]"), "{sdk}");
        let model = manifest("host/model/Cargo.toml");
        assert!(!inherits(model), "{model}");
        assert!(!model.contains("proptest"), "{model}");
        assert!(
            model.contains("[lints.rust]\nunsafe_code = \"forbid\""),
            "{model}"
        );
        assert!(model.contains("k8s-openapi = { version = "), "{model}");
    }

    #[test]
    fn refuses_inheritance_it_does_not_know() {
        let workspace =
            Workspace::parse("[workspace.dependencies]\nserde = \"1\"\n[workspace.package]\n")
                .unwrap();
        let with_features = "[dependencies]\nserde = { workspace = true, features = [\"rc\"] }\n";
        assert!(workspace.standalone("sdk", with_features).is_err());
        assert!(
            workspace
                .standalone("sdk", "[dependencies]\nrand.workspace = true\n")
                .is_err()
        );
        assert!(
            workspace
                .standalone("sdk", "[package]\nedition.workspace = true\n")
                .is_err()
        );
        assert_eq!(
            workspace
                .standalone("sdk", "[dependencies]\nserde.workspace = true\n")
                .unwrap(),
            "[dependencies]\nserde = \"1\"\n"
        );
        assert!(Workspace::parse("[workspace.dependencies]\nx = [\n\"a\",\n]\n").is_err());
    }
}
