//! `wasmkube plugin new|build|install|promote|discard|list|logs|builtins`: start and build a plugin project, upload a `.wasm` as a Plugin through the API (or as a controller's shadow version, then promoted or discarded), show the plugins with their health and their log lines, and those built into the binary; `plugin compile`, hidden, is the server's child compiler.

mod component;
mod grant;
mod logs;
mod project;
mod shadow;
mod vendor;

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use wasmkube_controller::module;

use crate::client::{Api, Cluster};
use crate::server::BUILTINS;

#[derive(clap::Subcommand)]
pub enum PluginCommand {
    /// Write a standalone cargo project for a plugin into DIR (new or empty): a controller (the
    /// SDK's ConfigMap mirror) or a scheduling policy, its unit tests, and the SDK and WIT files.
    New {
        dir: PathBuf,
        /// The plugin's name (a DNS-1123 label), also the crate's.
        #[arg(long)]
        name: String,
        /// A controller, or a scheduling policy (`scheduler`).
        #[arg(long, value_enum, default_value = "controller")]
        kind: Kind,
    },
    /// Build the project in DIR into a component (wasm32-wasip2, release) and print its path,
    /// size and digest.
    Build {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Upload a component and run it (or replace the running version of `--name`), as the
    /// ServiceAccount kube-system/plugin-NAME holding what the component names: shown first, and
    /// asked for on a terminal.
    Install {
        /// The `.wasm` component.
        file: PathBuf,
        /// The Plugin's name.
        #[arg(long)]
        name: String,
        /// What the component is: a controller, or a scheduling policy (`scheduler`).
        #[arg(long, value_enum, default_value = "controller")]
        kind: Kind,
        /// Grant the permissions shown without asking (for scripts).
        #[arg(long, short = 'y')]
        yes: bool,
        /// Run the component beside the installed controller's active version instead of
        /// replacing it: on the same keys, with the plugin's permissions, its writes dry runs
        /// compared with the active version's (`status.shadow`). Nothing is granted.
        #[arg(long)]
        shadow: bool,
        #[command(flatten)]
        cluster: Cluster,
    },
    /// Make a controller's shadow version the active one (the running version hands over its
    /// work queue), granting the permissions the shadow names: shown first, and asked for on a
    /// terminal.
    Promote {
        /// The Plugin's name.
        name: String,
        /// Grant the permissions shown without asking (for scripts).
        #[arg(long, short = 'y')]
        yes: bool,
        #[command(flatten)]
        cluster: Cluster,
    },
    /// Stop a controller's shadow version; the active one runs on.
    Discard {
        /// The Plugin's name.
        name: String,
        #[command(flatten)]
        cluster: Cluster,
    },
    /// The installed plugins, their modules and health.
    List {
        #[command(flatten)]
        cluster: Cluster,
    },
    /// A plugin's recent log lines (at most the last 1000 the host keeps): its own, labelled
    /// with the version (role and module digest) that wrote them, and the host's about it
    /// (Started, Swapped, Trapped, RolledBack, RollbackFailed).
    Logs {
        /// The Plugin's name.
        name: String,
        /// Keep printing lines as they are written, until the plugin or the connection goes.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Only the last N lines.
        #[arg(long, value_name = "N")]
        tail: Option<u64>,
        /// Start each line with the time it was written (RFC 3339).
        #[arg(long)]
        timestamps: bool,
        #[command(flatten)]
        cluster: Cluster,
    },
    /// The plugins built into this binary, which `wasmkube server` and `up` install.
    Builtins,
    /// Compiles the built-in plugins into a plugin cache, so that a first start does not wait
    /// for the compiler (`wasmkube server --plugin-cache DIR`).
    Precompile {
        #[arg(long, value_name = "DIR")]
        plugin_cache: PathBuf,
    },
    /// Compiles the component on stdin into the plugin cache DIR: the server's compiler, run as
    /// a child process so that the compiler's memory is never the server's.
    #[command(hide = true)]
    Compile { plugin_cache: PathBuf },
}

/// `--kind`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Kind {
    Controller,
    Scheduler,
}

const PLUGINS: &str = "/apis/wasmkube.dev/v1alpha1/plugins";
const MODULES: &str = "/apis/wasmkube.dev/v1alpha1/pluginmodules";

fn fail(what: &str, code: u16, status: &Value) -> anyhow::Error {
    anyhow::anyhow!(
        "{what}: {code} {}",
        status["message"].as_str().unwrap_or_default()
    )
}

pub async fn run(command: PluginCommand) -> anyhow::Result<()> {
    match command {
        PluginCommand::New { dir, name, kind } => {
            let files = project::create(&dir, &name, kind)?;
            println!(
                "{}: {files} files written; next: `cargo test` there, then `wasmkube plugin build {}`",
                dir.display(),
                dir.display()
            );
            Ok(())
        }
        PluginCommand::Build { dir } => {
            let built = component::build(&dir)?;
            println!("component: {}", built.path.display());
            println!("size: {} bytes", built.len);
            println!("digest: {}", built.digest);
            Ok(())
        }
        PluginCommand::Install {
            file,
            name,
            kind,
            yes,
            shadow,
            cluster,
        } => {
            let kind = match kind {
                Kind::Controller => module::PluginKind::Controller,
                Kind::Scheduler => module::PluginKind::Scheduler,
            };
            let api = Api::connect(&cluster)?;
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            if shadow {
                return shadow::install(&api, &name, &bytes).await;
            }
            let permissions = grant::permissions(kind, &bytes).await?;
            grant::confirm(&grant::describe(&name, &permissions), yes)?;
            upload(&api, &bytes).await?;
            let mut plugin = module::plugin(&name, kind, &bytes);
            plugin["spec"]["permissions"] = permissions;
            let url = format!("{}{PLUGINS}/{name}", api.server);
            let (code, status) = match api.send(api.client.get(&url)).await?.0 {
                404 => {
                    api.send(
                        api.client
                            .post(format!("{}{PLUGINS}", api.server))
                            .json(&plugin),
                    )
                    .await?
                }
                _ => {
                    let patch = json!({
                        "metadata": {"annotations": plugin["metadata"]["annotations"]},
                        "spec": {
                            "module": plugin["spec"]["module"],
                            "permissions": plugin["spec"]["permissions"],
                        },
                    });
                    api.send(
                        api.client
                            .patch(&url)
                            .header("Content-Type", "application/merge-patch+json")
                            .body(patch.to_string()),
                    )
                    .await?
                }
            };
            if !(200..300).contains(&code) {
                return Err(fail("writing the Plugin", code, &status));
            }
            println!(
                "plugin.wasmkube.dev/{name} installed: {} ({} bytes)",
                module::digest(&bytes),
                bytes.len()
            );
            Ok(())
        }
        PluginCommand::Promote { name, yes, cluster } => {
            shadow::promote(&Api::connect(&cluster)?, &name, yes).await
        }
        PluginCommand::Discard { name, cluster } => {
            shadow::discard(&Api::connect(&cluster)?, &name).await
        }
        PluginCommand::List { cluster } => {
            let api = Api::connect(&cluster)?;
            let (code, list) = api
                .send(api.client.get(format!("{}{PLUGINS}", api.server)))
                .await?;
            if code != 200 {
                bail!(fail("listing plugins", code, &list));
            }
            println!(
                "{:<16} {:<10} {:<14} {:<10} {:<11} {:>10} {:>6} {:<14} {:>11}  MESSAGE",
                "NAME",
                "KIND",
                "DIGEST",
                "MANAGED-BY",
                "PHASE",
                "RECONCILES",
                "TRAPS",
                "SHADOW",
                "DIVERGENCES"
            );
            for p in list["items"].as_array().into_iter().flatten() {
                let s = &p["status"];
                let digest = s["activeDigest"]
                    .as_str()
                    .or(p["spec"]["module"]["digest"].as_str())
                    .unwrap_or_default();
                let managed_by = if module::is_builtin(p) {
                    "built-in"
                } else {
                    "user"
                };
                let text = |v: &Value| v.as_str().unwrap_or("-").to_string();
                // The shadow version the spec names, and how often it disagreed so far.
                let (shadow, divergences) = match p["spec"]["shadow"]["module"]["digest"].as_str() {
                    Some(d) => (
                        short(d),
                        s["shadow"]["divergences"].as_u64().unwrap_or(0).to_string(),
                    ),
                    None => ("-", "-".to_string()),
                };
                println!(
                    "{:<16} {:<10} {:<14} {:<10} {:<11} {:>10} {:>6} {:<14} {:>11}  {}",
                    text(&p["metadata"]["name"]),
                    text(&p["spec"]["kind"]),
                    short(digest),
                    managed_by,
                    text(&s["phase"]),
                    s["reconciles"].as_u64().unwrap_or(0),
                    s["traps"].as_u64().unwrap_or(0),
                    shadow,
                    divergences,
                    s["message"].as_str().unwrap_or("")
                );
            }
            Ok(())
        }
        PluginCommand::Logs {
            name,
            follow,
            tail,
            timestamps,
            cluster,
        } => {
            let api = Api::connect(&cluster)?;
            let options = logs::Options {
                follow,
                tail,
                timestamps,
            };
            logs::show(&api, &name, &options).await
        }
        PluginCommand::Precompile { plugin_cache } => {
            let runtime = wasmkube_runtime::Runtime::new(&plugin_cache)?;
            for b in BUILTINS {
                let began = std::time::Instant::now();
                runtime
                    .load(&b.module()?)
                    .with_context(|| format!("compiling {}", b.name))?;
                println!("{:<16} {:>6} ms", b.name, began.elapsed().as_millis());
            }
            Ok(())
        }
        PluginCommand::Compile { plugin_cache } => {
            // No larger than a Plugin's module may be stored.
            let limit = wasmkube_model::validation::MAX_MODULE_CHUNKS
                .saturating_mul(module::CHUNK_BYTES as u64);
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(
                &mut std::io::Read::take(std::io::stdin(), limit.saturating_add(1)),
                &mut bytes,
            )
            .context("reading the component from stdin")?;
            if bytes.len() as u64 > limit {
                bail!("the component on stdin is over {limit} bytes");
            }
            wasmkube_runtime::Runtime::new(&plugin_cache)?.load(&bytes)?;
            Ok(())
        }
        PluginCommand::Builtins => {
            println!(
                "{:<16} {:<10} {:<14} {:>9}",
                "NAME", "KIND", "DIGEST", "BYTES"
            );
            for b in BUILTINS {
                println!(
                    "{:<16} {:<10} {:<14} {:>9}",
                    b.name,
                    b.kind.as_str(),
                    short(b.digest),
                    b.len
                );
            }
            Ok(())
        }
    }
}

/// The compiler a long-running server hands its runtime: this executable's `plugin compile`, so
/// that cranelift's compile contexts and threads never stay in the server (docs/runtime.md).
pub fn compiler() -> anyhow::Result<wasmkube_runtime::Compiler> {
    Ok(wasmkube_runtime::Compiler::Child {
        program: std::env::current_exe().context("finding this executable")?,
        args: vec!["plugin".into(), "compile".into()],
    })
}

/// Stores the PluginModule chunks of the component `bytes` (chunks already stored are kept).
async fn upload(api: &Api, bytes: &[u8]) -> anyhow::Result<()> {
    for chunk in module::chunks(bytes) {
        let (code, status) = api
            .send(
                api.client
                    .post(format!("{}{MODULES}", api.server))
                    .json(&chunk),
            )
            .await?;
        if code != 201 && code != 409 {
            return Err(fail("uploading the module", code, &status));
        }
    }
    Ok(())
}

/// The first 12 hex digits of a `sha256:` digest.
fn short(digest: &str) -> &str {
    digest
        .trim_start_matches("sha256:")
        .get(..12)
        .unwrap_or_default()
}
