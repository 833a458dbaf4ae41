//! The [`Runtime`]: one wasmtime engine, its epoch ticker, the linker and a cache of compiled plugins by digest.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use crate::bindings::scheduler_world::SchedulerPluginPre;
use crate::bindings::{ControllerPlugin, ControllerPluginPre};
use crate::compiler::Compiler;
use crate::host::StoreData;

/// How often the epoch advances: the granularity of call deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Why the runtime could not start, or could not load a plugin.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("configuring the wasmtime engine: {0}")]
    Engine(String),
    #[error("setting up the host imports: {0}")]
    Linker(String),
    #[error("plugin cache {path}: {source}")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a valid controller plugin component: {0}")]
    Invalid(String),
    #[error(
        "plugin {digest} fits neither the controller-plugin nor the scheduler-plugin world: {reason}"
    )]
    Incompatible { digest: String, reason: String },
    #[error("plugin {digest} is a {actual}, not a {wanted}")]
    WrongWorld {
        digest: String,
        actual: World,
        wanted: &'static str,
    },
    #[error("instantiating plugin {digest}: {reason}")]
    Instantiate { digest: String, reason: String },
}

/// The process's plugin runtime: one engine for every plugin, compiled plugins cached on disk and
/// in memory by the sha256 of their bytes.
pub struct Runtime {
    shared: Arc<Shared>,
    linker: Linker<StoreData>,
    cache_dir: PathBuf,
    modules: Mutex<HashMap<String, Arc<Module>>>,
    /// Held while a component is compiled or read from disk, so that concurrent loads of the same
    /// bytes compile once (compilation uses every core anyway).
    loading: Mutex<()>,
    compilations: AtomicU64,
    compiler: Compiler,
}

/// What a runtime and its modules share: the engine and the ticker that drives its epoch, which
/// stops when the last of them is dropped.
pub(crate) struct Shared {
    pub(crate) engine: Engine,
    ticker: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
    }
}

/// A compiled plugin, ready to instantiate: its component pre-linked against the host imports.
pub struct Module {
    digest: String,
    pub(crate) pre: Pre,
    pub(crate) shared: Arc<Shared>,
}

/// The world a module was linked as, ready to instantiate.
pub(crate) enum Pre {
    Controller(ControllerPluginPre<StoreData>),
    Scheduler(SchedulerPluginPre<StoreData>),
}

/// What a plugin is, by the world its component exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// `controller-plugin`: a controller.
    Controller,
    /// `scheduler-plugin`: a scheduling policy.
    Scheduler,
}

impl std::fmt::Display for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            World::Controller => "controller-plugin",
            World::Scheduler => "scheduler-plugin",
        })
    }
}

impl Module {
    /// The hex sha256 of the component's bytes.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Whether this is a controller or a scheduling policy.
    pub fn world(&self) -> World {
        match self.pre {
            Pre::Controller(_) => World::Controller,
            Pre::Scheduler(_) => World::Scheduler,
        }
    }

    pub(crate) fn wrong_world(&self, wanted: &'static str) -> RuntimeError {
        RuntimeError::WrongWorld {
            digest: self.digest.clone(),
            actual: self.world(),
            wanted,
        }
    }
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Starts the engine and its epoch ticker; compiled plugins are kept in `cache_dir` (created
    /// if missing), which must be private to the host: its files are loaded as trusted code.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Result<Self, RuntimeError> {
        let cache_dir = cache_dir.into();
        // Private to the host (0700), as what it holds is run as trusted code.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(&cache_dir)
            .map_err(|source| RuntimeError::Cache {
                path: cache_dir.clone(),
                source,
            })?;

        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| RuntimeError::Linker(format!("WASI: {e:#}")))?;
        ControllerPlugin::add_to_linker::<_, HasSelf<StoreData>>(&mut linker, |data| data)
            .map_err(|e| RuntimeError::Linker(format!("host-api: {e:#}")))?;

        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("wasm-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| RuntimeError::Engine(format!("starting the epoch ticker: {e}")))?
        };

        Ok(Runtime {
            shared: Arc::new(Shared {
                engine,
                ticker: Some(ticker),
                stop,
            }),
            linker,
            cache_dir,
            modules: Mutex::new(HashMap::new()),
            loading: Mutex::new(()),
            compilations: AtomicU64::new(0),
            compiler: Compiler::InProcess,
        })
    }

    /// Compiles what the cache lacks with `compiler` instead of in this process.
    pub fn with_compiler(mut self, compiler: Compiler) -> Self {
        self.compiler = compiler;
        self
    }

    /// Validates, compiles (or finds in the cache) and pre-links a plugin component.
    ///
    /// Compiled code is cached in memory and in `cache_dir/<sha256>.cwasm`, so loading the same
    /// bytes again, in this process or after a restart, does not compile them again. It blocks
    /// while compiling (up to seconds for a large plugin): in async code, call it from
    /// `tokio::task::spawn_blocking`.
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<Module>, RuntimeError> {
        let digest = hex_sha256(bytes);
        if let Some(module) = self.lock_modules().get(&digest) {
            return Ok(Arc::clone(module));
        }
        let _loading = self.loading.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(module) = self.lock_modules().get(&digest) {
            return Ok(Arc::clone(module));
        }

        let component = self.component(&digest, bytes)?;
        let linked = self.linker.instantiate_pre(&component);
        let pre = linked
            .and_then(|pre| match ControllerPluginPre::new(pre.clone()) {
                Ok(controller) => Ok(Pre::Controller(controller)),
                Err(_) => SchedulerPluginPre::new(pre).map(Pre::Scheduler),
            })
            .map_err(|e| RuntimeError::Incompatible {
                digest: digest.clone(),
                reason: format!("{e:#}"),
            })?;
        let module = Arc::new(Module {
            digest: digest.clone(),
            pre,
            shared: Arc::clone(&self.shared),
        });
        self.lock_modules().insert(digest, Arc::clone(&module));
        Ok(module)
    }

    /// How many components this runtime compiled (rather than found in its cache).
    pub fn compilations(&self) -> u64 {
        self.compilations.load(Ordering::Relaxed)
    }

    /// Where compiled plugins are cached.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// The component for `bytes`, from `cache_dir` when a usable artifact is there, else compiled
    /// and written there.
    fn component(&self, digest: &str, bytes: &[u8]) -> Result<Component, RuntimeError> {
        let engine = &self.shared.engine;
        let path = self.cache_dir.join(format!("{digest}.cwasm"));
        if path.exists() {
            match deserialize(engine, &path) {
                Ok(component) => return Ok(component),
                // Written by another wasmtime version or configuration: compile it again.
                Err(e) => {
                    tracing::info!(path = %path.display(), "recompiling cached plugin: {e:#}")
                }
            }
        }

        self.compiler
            .compile(engine, &self.cache_dir, &path, bytes)?;
        self.compilations.fetch_add(1, Ordering::Relaxed);
        deserialize(engine, &path).map_err(|e| RuntimeError::Invalid(format!("{e:#}")))
    }

    /// The module with this hex sha256 digest, if this runtime loaded it already.
    pub fn loaded(&self, digest: &str) -> Option<Arc<Module>> {
        self.lock_modules().get(digest).cloned()
    }

    fn lock_modules(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Module>>> {
        self.modules.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Loads a compiled artifact from the cache directory.
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: `Component::deserialize_file` trusts its input to be an artifact that
    // `Engine::precompile_component` produced: it runs its machine code. The cache directory is
    // the host's own (documented on `Runtime::new`) and only this module writes there, atomically
    // by rename; wasmtime itself rejects artifacts of another version or engine configuration.
    #[allow(unsafe_code)]
    unsafe {
        Component::deserialize_file(engine, path)
    }
}

/// The hex sha256 of `bytes`.
pub(crate) fn hex_sha256(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in hash {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_hex_sha256() {
        assert_eq!(
            hex_sha256(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
