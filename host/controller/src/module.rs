//! Plugin modules as API objects: a `.wasm` split into `PluginModule` chunks small enough for any store, and reassembled by digest.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wasmkube_apiserver::Server;
use wasmkube_apiserver::error::ApiError;
use wasmkube_apiserver::registry::{Update, WriteOptions, create_object, update_with};
use wasmkube_model::resource::{PLUGIN_GROUP, ResourceInfo};
use wasmkube_model::validation::MAX_MODULE_CHUNKS;
use wasmkube_runtime::{Module, Runtime};

/// Bytes per chunk: with base64 and the object around it, well under etcd's default 1.5 MiB request limit.
pub const CHUNK_BYTES: usize = 512 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("module chunk {name} is missing")]
    Missing { name: String },
    #[error("module chunk {name} is not valid base64")]
    Corrupt { name: String },
    #[error("module bytes have digest {actual}, not {expected}")]
    Digest { expected: String, actual: String },
    #[error("plugin modules are not served")]
    NotServed,
    #[error("compiling: {0}")]
    Compile(String),
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    format!(
        "sha256:{}",
        hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// The name of chunk `index` of the module with `digest`: a DNS label, so the digest is cut to
/// 48 hex digits (the chunks carry the whole digest, checked on assembly).
pub fn chunk_name(digest: &str, index: usize) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    format!("sha256-{}-{index}", &hex[..hex.len().min(48)])
}

/// The `PluginModule` objects holding `bytes`.
pub fn chunks(bytes: &[u8]) -> Vec<Value> {
    let digest = digest(bytes);
    let count = bytes.len().div_ceil(CHUNK_BYTES).max(1);
    (0..count)
        .map(|i| {
            let part = &bytes
                [(i * CHUNK_BYTES).min(bytes.len())..((i + 1) * CHUNK_BYTES).min(bytes.len())];
            json!({
                "apiVersion": "wasmkube.dev/v1alpha1",
                "kind": "PluginModule",
                "metadata": {"name": chunk_name(&digest, i)},
                "digest": digest,
                "index": i,
                "count": count,
                "data": base64::engine::general_purpose::STANDARD.encode(part),
            })
        })
        .collect()
}

/// What a Plugin is: `spec.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    /// A controller, run by the supervisor.
    Controller,
    /// A scheduling policy, run by the scheduler for the profiles that name it.
    Scheduler,
}

impl PluginKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Controller => "Controller",
            PluginKind::Scheduler => "Scheduler",
        }
    }

    /// The kind of plugin a compiled module is, by the world it exports.
    pub fn of(module: &Module) -> PluginKind {
        match module.world() {
            wasmkube_runtime::World::Controller => PluginKind::Controller,
            wasmkube_runtime::World::Scheduler => PluginKind::Scheduler,
        }
    }
}

/// Annotation naming who manages a Plugin: [`BUILTIN`] (the binary, see
/// [`builtin`](crate::builtin)) or `user` (`wasmkube plugin install`, `--plugin`).
pub const MANAGED_BY: &str = "wasmkube.dev/managed-by";
/// The digest a built-in Plugin was last installed with by the binary: a Plugin whose module is
/// no longer that digest was replaced by an operator.
pub const BUILTIN_DIGEST: &str = "wasmkube.dev/builtin-digest";
/// [`MANAGED_BY`] of the Plugins the binary installs.
pub const BUILTIN: &str = "builtin";
/// [`MANAGED_BY`] of the Plugins an operator installs.
pub const USER: &str = "user";

/// A `Plugin` of `kind` running the module with `bytes`, installed by an operator.
pub fn plugin(name: &str, kind: PluginKind, bytes: &[u8]) -> Value {
    json!({
        "apiVersion": "wasmkube.dev/v1alpha1",
        "kind": "Plugin",
        "metadata": {"name": name, "annotations": {MANAGED_BY: USER}},
        "spec": {"kind": kind.as_str(), "module": module_ref(&digest(bytes), bytes.len())},
    })
}

/// `spec.module` for a module of `len` bytes with `digest`: the digest and the chunk count.
pub fn module_ref(digest: &str, len: usize) -> Value {
    json!({"digest": digest, "chunks": len.div_ceil(CHUNK_BYTES).max(1)})
}

/// Whether the binary manages `plugin`: installed as a built-in and still running the module the
/// binary gave it.
pub fn is_builtin(plugin: &Value) -> bool {
    let annotations = &plugin["metadata"]["annotations"];
    annotations[MANAGED_BY] == BUILTIN
        && annotations[BUILTIN_DIGEST].is_string()
        && annotations[BUILTIN_DIGEST] == plugin["spec"]["module"]["digest"]
}

/// Puts the chunks back together (fetched by name with `get`) and checks the digest.
pub fn assemble(
    digest_wanted: &str,
    count: usize,
    mut get: impl FnMut(&str) -> Option<Value>,
) -> Result<Vec<u8>, ModuleError> {
    let mut bytes = Vec::new();
    for i in 0..count {
        let name = chunk_name(digest_wanted, i);
        let chunk = get(&name).ok_or_else(|| ModuleError::Missing { name: name.clone() })?;
        let data = chunk["data"].as_str().unwrap_or_default();
        bytes.extend(
            base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|_| ModuleError::Corrupt { name })?,
        );
    }
    let actual = digest(&bytes);
    if actual != digest_wanted {
        return Err(ModuleError::Digest {
            expected: digest_wanted.to_string(),
            actual,
        });
    }
    Ok(bytes)
}

/// Stores the `PluginModule` chunks of `bytes` that are not stored yet.
pub async fn store_chunks(server: &Server, bytes: &[u8]) -> Result<(), ApiError> {
    let modules = server
        .registry()
        .get(PLUGIN_GROUP, "v1alpha1", "pluginmodules")
        .cloned()
        .ok_or_else(|| ApiError::Internal("plugin modules are not served".into()))?;
    for chunk in chunks(bytes) {
        let chunk_name = chunk["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if server
            .objects
            .get(&modules, None, &chunk_name)
            .await?
            .is_none()
        {
            create_object(
                server,
                &modules,
                None,
                chunk,
                WriteOptions::INTERNAL,
                &mut Vec::new(),
            )
            .await?;
        }
    }
    Ok(())
}

/// The `Plugin` resource.
pub fn plugins(server: &Server) -> Result<Arc<ResourceInfo>, ApiError> {
    server
        .registry()
        .get(PLUGIN_GROUP, "v1alpha1", "plugins")
        .cloned()
        .ok_or_else(|| ApiError::Internal("plugins are not served".into()))
}

/// Stores a module's chunks and points the Plugin `name` (of `kind`) at it, as `wasmkube plugin
/// install` does: the Plugin is then managed by the operator, not the binary.
pub async fn install(
    server: &Server,
    name: &str,
    kind: PluginKind,
    bytes: &[u8],
) -> Result<(), ApiError> {
    store_chunks(server, bytes).await?;
    let plugins = plugins(server)?;
    let wanted = plugin(name, kind, bytes);
    if server.objects.get(&plugins, None, name).await?.is_none() {
        create_object(
            server,
            &plugins,
            None,
            wanted,
            WriteOptions::INTERNAL,
            &mut Vec::new(),
        )
        .await?;
    } else {
        let update = Update::internal(&plugins, None, name);
        update_with(
            server,
            &update,
            |cur| {
                let mut new = cur.clone();
                new["spec"]["module"] = wanted["spec"]["module"].clone();
                new["metadata"]["annotations"][MANAGED_BY] = json!(USER);
                Ok(new)
            },
            &mut Vec::new(),
        )
        .await?;
    }
    Ok(())
}

/// The module a Plugin's `spec` names (digest `sha256:<hex>`, `module.chunks` chunks): the one
/// the runtime already loaded, or else fetched from its PluginModule chunks and compiled (or
/// found in the on-disk cache), off the async threads.
pub async fn load(
    server: &Server,
    runtime: &Arc<Runtime>,
    spec: &Value,
    digest_wanted: &str,
) -> Result<Arc<Module>, ModuleError> {
    if let Some(module) = runtime.loaded(digest_wanted.trim_start_matches("sha256:")) {
        return Ok(module);
    }
    let chunks = server
        .registry()
        .get(PLUGIN_GROUP, "v1alpha1", "pluginmodules")
        .cloned()
        .ok_or(ModuleError::NotServed)?;
    let count = spec
        .pointer("/module/chunks")
        .and_then(Value::as_u64)
        // Validation bounds it; a Plugin stored before that is held to it here.
        .and_then(|c| usize::try_from(c.min(MAX_MODULE_CHUNKS)).ok())
        .unwrap_or(1);
    let mut stored = HashMap::new();
    for i in 0..count {
        let name = chunk_name(digest_wanted, i);
        if let Ok(Some(chunk)) = server.objects.get(&chunks, None, &name).await {
            stored.insert(name, chunk.object);
        }
    }
    let bytes = assemble(digest_wanted, count, |name| stored.remove(name))?;
    let runtime = runtime.clone();
    tokio::task::spawn_blocking(move || runtime.load(&bytes))
        .await
        .map_err(|e| ModuleError::Compile(e.to_string()))?
        .map_err(|e| ModuleError::Compile(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn chunks_round_trip_and_are_checked() {
        let bytes: Vec<u8> = (0..(CHUNK_BYTES * 2 + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        let parts = chunks(&bytes);
        assert_eq!(parts.len(), 3);
        let by_name: HashMap<String, Value> = parts
            .iter()
            .map(|c| {
                (
                    c["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    c.clone(),
                )
            })
            .collect();
        let d = digest(&bytes);
        assert_eq!(
            plugin("p", PluginKind::Controller, &bytes)["spec"]["module"]["chunks"],
            3
        );
        assert_eq!(
            assemble(&d, 3, |n| by_name.get(n).cloned()).expect("assembles"),
            bytes
        );
        assert!(matches!(
            assemble(&d, 2, |n| by_name.get(n).cloned()),
            Err(ModuleError::Digest { .. })
        ));
        assert!(matches!(
            assemble(&d, 4, |n| by_name.get(n).cloned()),
            Err(ModuleError::Missing { .. })
        ));
    }
}
