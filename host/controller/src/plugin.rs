//! Preparing a Wasm controller: read what its Plugin's spec sets, ask it what it reconciles, check that against what it is allowed, build its reconciler.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use wasmkube_apiserver::Server;
use wasmkube_model::resource::ResourceInfo;
use wasmkube_model::validation::{MAX_CALL_TIMEOUT_MILLIS, MAX_MEMORY_BYTES, MAX_WORKERS};
use wasmkube_runtime::{
    CallError, ControllerInstance, Gvr, Limits, Module, Registration, RuntimeError,
};

use crate::plugin_host::{Grants, PluginHost, grant};
use crate::wasm::{Health, WasmReconciler};
use crate::{Controller, Manager, Running};

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("instantiating the plugin: {0}")]
    Instantiate(#[from] RuntimeError),
    #[error("asking the plugin what it reconciles: {0}")]
    Describe(#[from] CallError),
    #[error(
        "plugin {plugin:?} names a resource this server does not serve: {group}/{version}/{resource}"
    )]
    UnknownResource {
        plugin: String,
        group: String,
        version: String,
        resource: String,
    },
    #[error(
        "plugin {plugin:?} reconciles or watches {resource}, which its Plugin object does not permit"
    )]
    NotPermitted { plugin: String, resource: String },
}

/// What a Plugin's spec sets besides its module. A change of any of it takes effect without a
/// new module.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `spec.limits`: 64 MiB and 1 s per call unless given.
    pub limits: Limits,
    /// `spec.workers`: keys reconciled at once, 2 unless given.
    pub workers: usize,
    /// `spec.permissions`; `None`: exactly what the plugin's registration names.
    pub permissions: Option<Value>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limits: Limits::default(),
            workers: 2,
            permissions: None,
        }
    }
}

impl Config {
    /// The configuration `spec` sets, within the bounds validation enforces (an object stored
    /// before those bounds existed is held to them here).
    pub fn of(spec: &Value) -> Config {
        let defaults = Config::default();
        let number = |pointer: &str| spec.pointer(pointer).and_then(Value::as_u64);
        Config {
            limits: Limits {
                memory_bytes: number("/limits/memoryBytes")
                    .map_or(defaults.limits.memory_bytes, |b| {
                        usize::try_from(b.min(MAX_MEMORY_BYTES)).unwrap_or(usize::MAX)
                    }),
                call_timeout: number("/limits/callTimeoutMillis")
                    .map_or(defaults.limits.call_timeout, |ms| {
                        Duration::from_millis(ms.min(MAX_CALL_TIMEOUT_MILLIS))
                    }),
            },
            workers: number("/workers").map_or(defaults.workers, |w| {
                usize::try_from(w.clamp(1, MAX_WORKERS)).unwrap_or(1)
            }),
            permissions: spec.get("permissions").filter(|p| p.is_array()).cloned(),
        }
    }
}

/// A plugin ready to run: what it said about itself, its host and its reconciler.
pub struct Prepared {
    pub registration: Registration,
    pub controller: Controller,
    pub host: Arc<PluginHost>,
    pub reconciler: WasmReconciler,
}

/// A Wasm controller running in the manager.
pub struct RunningPlugin {
    pub registration: Registration,
    pub running: Running,
    /// The host its instances call, whose grants can be narrowed while they run.
    pub host: Arc<PluginHost>,
    pub health: Arc<Mutex<Health>>,
}

fn resource(server: &Server, plugin: &str, gvr: &Gvr) -> Result<Arc<ResourceInfo>, PluginError> {
    server
        .registry()
        .get(&gvr.group, &gvr.version, &gvr.resource)
        .cloned()
        .ok_or_else(|| PluginError::UnknownResource {
            plugin: plugin.to_string(),
            group: gvr.group.clone(),
            version: gvr.version.clone(),
            resource: gvr.resource.clone(),
        })
}

/// The grants a `spec.permissions` list declares: `[{group, resources: [...], verbs: [...]}]`.
pub fn declared_grants(permissions: &Value) -> Grants {
    let mut grants = Grants::new();
    for p in permissions.as_array().into_iter().flatten() {
        let group = p["group"].as_str().unwrap_or_default();
        let verbs: Vec<&str> = p["verbs"]
            .as_array()
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_else(|| vec!["*"]);
        for plural in p["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            grant(&mut grants, group, plural, &verbs);
        }
    }
    grants
}

/// Instantiates the module once (with access to nothing) to learn what it reconciles, then
/// builds its reconciler with the `config`'s permissions — or, when `None`, exactly what it named:
/// every verb on its primary and owned resources, get/list on those it reads, and creating
/// Events.
pub async fn prepare(
    server: &Arc<Server>,
    manager: &Arc<Manager>,
    module: Arc<Module>,
    config: &Config,
) -> Result<Prepared, PluginError> {
    let limits = config.limits;
    let probe = Arc::new(PluginHost::new(
        format!("plugin-{}", &module.digest()[..12]),
        server.clone(),
        manager.clone(),
        Grants::new(),
    ));
    let registration = ControllerInstance::new(&module, probe, limits)
        .await?
        .describe()
        .await?;
    let name = registration.name.clone();
    let primary = resource(server, &name, &registration.primary)?;
    let resources = |list: &[Gvr]| {
        list.iter()
            .map(|g| resource(server, &name, g))
            .collect::<Result<Vec<_>, _>>()
    };
    let owns = resources(&registration.owns)?;
    let reads = resources(&registration.reads)?;
    let triggers = resources(&registration.triggers)?;
    let grants = match config.permissions.as_ref().map(declared_grants) {
        Some(grants) => {
            for info in std::iter::once(&primary)
                .chain(&owns)
                .chain(&reads)
                .chain(&triggers)
            {
                if !grants.contains_key(&(info.group.clone(), info.plural.clone())) {
                    return Err(PluginError::NotPermitted {
                        plugin: name,
                        resource: info.qualified_resource(),
                    });
                }
            }
            grants
        }
        None => {
            let mut grants = Grants::new();
            for info in std::iter::once(&primary).chain(&owns) {
                grant(&mut grants, &info.group, &info.plural, &["*"]);
            }
            for info in reads.iter().chain(&triggers) {
                grant(&mut grants, &info.group, &info.plural, &["get", "list"]);
            }
            grant(&mut grants, "", "events", &["create"]);
            grants
        }
    };
    let host = Arc::new(PluginHost::new(
        name.clone(),
        server.clone(),
        manager.clone(),
        grants,
    ));
    let reconciler = WasmReconciler::new(module, host.clone(), limits);
    let controller = Controller {
        name,
        primary,
        owns,
        reads,
        triggers,
        workers: config.workers,
    };
    Ok(Prepared {
        registration,
        controller,
        host,
        reconciler,
    })
}

/// Prepares the module with `config` and runs it in the manager.
pub async fn start(
    server: &Arc<Server>,
    manager: &Arc<Manager>,
    module: Arc<Module>,
    config: &Config,
) -> Result<RunningPlugin, PluginError> {
    let prepared = prepare(server, manager, module, config).await?;
    Ok(run(manager, prepared).await)
}

/// Runs a prepared plugin in the manager.
pub async fn run(manager: &Arc<Manager>, prepared: Prepared) -> RunningPlugin {
    let health = prepared.reconciler.health();
    let running = manager
        .start(prepared.controller, Box::new(prepared.reconciler))
        .await;
    RunningPlugin {
        registration: prepared.registration,
        running,
        host: prepared.host,
        health,
    }
}
