//! `wasmkube plugin install|list|builtins`: upload a `.wasm` as a Plugin through the API, show the plugins with their health, and those built into the binary.

use std::path::PathBuf;

use anyhow::{Context, bail};
use base64::Engine as _;
use serde_json::{Value, json};
use wasmkube_controller::module;

use crate::server::BUILTINS;

#[derive(clap::Subcommand)]
pub enum PluginCommand {
    /// Upload a component and run it (or replace the running version of `--name`).
    Install {
        /// The `.wasm` component.
        file: PathBuf,
        /// The Plugin's name.
        #[arg(long)]
        name: String,
        /// What the component is: a controller, or a scheduling policy (`scheduler`).
        #[arg(long, value_enum, default_value = "controller")]
        kind: Kind,
        #[command(flatten)]
        cluster: Cluster,
    },
    /// The installed plugins, their modules and health.
    List {
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
}

/// `--kind`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Kind {
    Controller,
    Scheduler,
}

#[derive(clap::Args)]
pub struct Cluster {
    /// The kubeconfig to use (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
}

/// An HTTPS client for the cluster of a kubeconfig's current context.
struct Api {
    client: reqwest::Client,
    server: String,
}

const PLUGINS: &str = "/apis/wasmkube.dev/v1alpha1/plugins";
const MODULES: &str = "/apis/wasmkube.dev/v1alpha1/pluginmodules";

impl Api {
    fn connect(cluster: &Cluster) -> anyhow::Result<Api> {
        let path = cluster
            .kubeconfig
            .clone()
            .or_else(|| std::env::var_os("KUBECONFIG").map(PathBuf::from))
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube/config")))
            .context("no kubeconfig: pass --kubeconfig or set KUBECONFIG")?;
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let config: Value =
            serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let current = config["current-context"].as_str().unwrap_or_default();
        let named = |list: &str, name: &str| {
            config[list]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["name"] == name)
                .cloned()
        };
        let context = named("contexts", current)
            .or_else(|| config["contexts"][0].clone().into())
            .unwrap_or_default();
        let cluster = named(
            "clusters",
            context["context"]["cluster"].as_str().unwrap_or_default(),
        )
        .context("the kubeconfig has no cluster for its context")?;
        let user = named(
            "users",
            context["context"]["user"].as_str().unwrap_or_default(),
        )
        .unwrap_or_default();
        let mut builder = reqwest::Client::builder();
        if let Some(ca) = cluster["cluster"]["certificate-authority-data"].as_str() {
            let pem = base64::engine::general_purpose::STANDARD
                .decode(ca)
                .context("certificate-authority-data is not base64")?;
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
        }
        let credential = |field: &str| -> anyhow::Result<Option<Vec<u8>>> {
            user["user"][field]
                .as_str()
                .map(|data| base64::engine::general_purpose::STANDARD.decode(data))
                .transpose()
                .with_context(|| format!("{field} is not base64"))
        };
        if let (Some(mut cert), Some(key)) = (
            credential("client-certificate-data")?,
            credential("client-key-data")?,
        ) {
            cert.extend_from_slice(&key);
            builder = builder.identity(reqwest::Identity::from_pem(&cert)?);
        }
        if let Some(token) = user["user"]["token"].as_str() {
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {token}").parse()?,
            );
            builder = builder.default_headers(headers);
        }
        let server = cluster["cluster"]["server"]
            .as_str()
            .context("the cluster has no server")?
            .trim_end_matches('/')
            .to_string();
        Ok(Api {
            client: builder.build()?,
            server,
        })
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<(u16, Value)> {
        let response = request.send().await?;
        let code = response.status().as_u16();
        Ok((code, response.json().await.unwrap_or(Value::Null)))
    }
}

fn fail(what: &str, code: u16, status: &Value) -> anyhow::Error {
    anyhow::anyhow!(
        "{what}: {code} {}",
        status["message"].as_str().unwrap_or_default()
    )
}

pub async fn run(command: PluginCommand) -> anyhow::Result<()> {
    match command {
        PluginCommand::Install {
            file,
            name,
            kind,
            cluster,
        } => {
            let kind = match kind {
                Kind::Controller => module::PluginKind::Controller,
                Kind::Scheduler => module::PluginKind::Scheduler,
            };
            let api = Api::connect(&cluster)?;
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            for chunk in module::chunks(&bytes) {
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
            let plugin = module::plugin(&name, kind, &bytes);
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
                        "spec": {"module": plugin["spec"]["module"]},
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
        PluginCommand::List { cluster } => {
            let api = Api::connect(&cluster)?;
            let (code, list) = api
                .send(api.client.get(format!("{}{PLUGINS}", api.server)))
                .await?;
            if code != 200 {
                bail!(fail("listing plugins", code, &list));
            }
            println!(
                "{:<16} {:<10} {:<14} {:<10} {:<11} {:>10} {:>6}  MESSAGE",
                "NAME", "KIND", "DIGEST", "MANAGED-BY", "PHASE", "RECONCILES", "TRAPS"
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
                println!(
                    "{:<16} {:<10} {:<14} {:<10} {:<11} {:>10} {:>6}  {}",
                    text(&p["metadata"]["name"]),
                    text(&p["spec"]["kind"]),
                    short(digest),
                    managed_by,
                    text(&s["phase"]),
                    s["reconciles"].as_u64().unwrap_or(0),
                    s["traps"].as_u64().unwrap_or(0),
                    s["message"].as_str().unwrap_or("")
                );
            }
            Ok(())
        }
        PluginCommand::Precompile { plugin_cache } => {
            let runtime = wasmkube_runtime::Runtime::new(&plugin_cache)?;
            for b in BUILTINS {
                let began = std::time::Instant::now();
                runtime
                    .load(b.bytes)
                    .with_context(|| format!("compiling {}", b.name))?;
                println!("{:<16} {:>6} ms", b.name, began.elapsed().as_millis());
            }
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
                    b.bytes.len()
                );
            }
            Ok(())
        }
    }
}

/// The first 12 hex digits of a `sha256:` digest.
fn short(digest: &str) -> &str {
    digest
        .trim_start_matches("sha256:")
        .get(..12)
        .unwrap_or_default()
}
