//! Preparing a Wasm controller: read what its Plugin's spec sets, ask it what it reconciles, check that against its permissions, write its ServiceAccount, ClusterRole and binding, build its reconciler.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use wasmkube_apiserver::Server;
use wasmkube_apiserver::auth::{self, Attributes};
use wasmkube_apiserver::error::ApiError;
use wasmkube_apiserver::plugin_logs::{Role, Version};
use wasmkube_model::resource::ResourceInfo;
use wasmkube_model::validation::{MAX_CALL_TIMEOUT_MILLIS, MAX_MEMORY_BYTES, MAX_WORKERS};
use wasmkube_runtime::{
    CallError, ControllerInstance, Gvr, Limits, Module, Registration, RuntimeError,
};

use crate::plugin_host::PluginHost;
use crate::probe::Probe;
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
        "plugin {plugin:?} reconciles or watches {resource}, which its ClusterRole {role} does not permit it to get, list or watch"
    )]
    NotPermitted {
        plugin: String,
        resource: String,
        role: String,
    },
    #[error(
        "plugin {plugin:?} reconciles {candidate}, the version it would shadow reconciles {active}"
    )]
    ShadowPrimary {
        plugin: String,
        candidate: String,
        active: String,
    },
    #[error("writing the plugin's ServiceAccount, ClusterRole and binding: {0}")]
    Identity(#[from] ApiError),
}

/// What a Plugin's spec sets besides its module. A change of any of it takes effect without a
/// new module.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `spec.limits`: 64 MiB and 1 s per call unless given.
    pub limits: Limits,
    /// `spec.workers`: keys reconciled at once, 2 unless given.
    pub workers: usize,
    /// `spec.permissions`, its ClusterRole's rules; `None`: what the plugin's registration names
    /// (see [`registration_permissions`]).
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
    /// What `running` calls (unless a shadow is wrapped around it).
    pub reconciler: Arc<WasmReconciler>,
    /// The host its instances call.
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

/// The permissions (`spec.permissions` form) a plugin without them holds: every verb on its
/// primary and owned resources and their status, `get`, `list` and `watch` on those it reads or
/// is triggered by, and creating Events.
pub fn registration_permissions(registration: &Registration) -> Value {
    let mut permissions: Vec<Value> = Vec::new();
    let mut add = |permission: Value| {
        if !permissions.contains(&permission) {
            permissions.push(permission);
        }
    };
    for gvr in std::iter::once(&registration.primary).chain(&registration.owns) {
        let resources = [gvr.resource.clone(), format!("{}/status", gvr.resource)];
        add(json!({"group": gvr.group, "resources": resources, "verbs": ["*"]}));
    }
    for gvr in registration.reads.iter().chain(&registration.triggers) {
        add(
            json!({"group": gvr.group, "resources": [gvr.resource], "verbs": ["get", "list", "watch"]}),
        );
    }
    add(json!({"group": "", "resources": ["events"], "verbs": ["create"]}));
    Value::Array(permissions)
}

/// Asks the module what it reconciles, giving it a host that refuses every call.
pub async fn describe(module: &Arc<Module>, limits: Limits) -> Result<Registration, PluginError> {
    let probe = Arc::new(Probe {
        module: format!("plugin-{}", &module.digest()[..12]),
    });
    Ok(ControllerInstance::new(module, probe, limits)
        .await?
        .describe()
        .await?)
}

/// Asks the module what it reconciles (with access to nothing), checks that the rules of the
/// `config`'s permissions (or, when `None`, of [`registration_permissions`]) let it get, list
/// or watch each resource it names, writes them as the ClusterRole of the Plugin `plugin` (a
/// stored object) bound to its ServiceAccount, and builds its reconciler, whose host calls are
/// authorized as that ServiceAccount.
pub async fn prepare(
    server: &Arc<Server>,
    manager: &Arc<Manager>,
    plugin: &Value,
    module: Arc<Module>,
    config: &Config,
) -> Result<Prepared, PluginError> {
    prepare_as(server, manager, plugin, module, config, None).await
}

/// Prepares `module` as the shadow of the Plugin `plugin`'s active version, which registered
/// as `active`: it must reconcile the same primary resource; it is held to the ClusterRole in
/// force (`config`'s permissions, or else those of the active version's registration), which is
/// not written again; its host's writes are dry runs and its Events dropped; its log lines are
/// labelled as the shadow's. The informers of what it names are synced before it is returned.
pub async fn prepare_shadow(
    server: &Arc<Server>,
    manager: &Arc<Manager>,
    plugin: &Value,
    module: Arc<Module>,
    config: &Config,
    active: &Registration,
) -> Result<Prepared, PluginError> {
    let prepared = prepare_as(server, manager, plugin, module, config, Some(active)).await?;
    manager.cache(&prepared.controller).await;
    Ok(prepared)
}

/// [`prepare`], or with `shadow_of` [`prepare_shadow`].
async fn prepare_as(
    server: &Arc<Server>,
    manager: &Arc<Manager>,
    plugin: &Value,
    module: Arc<Module>,
    config: &Config,
    shadow_of: Option<&Registration>,
) -> Result<Prepared, PluginError> {
    let limits = config.limits;
    let registration = describe(&module, limits).await?;
    let name = registration.name.clone();
    if let Some(active) = shadow_of.filter(|a| a.primary != registration.primary) {
        let text = |g: &Gvr| format!("{}/{}/{}", g.group, g.version, g.resource);
        return Err(PluginError::ShadowPrimary {
            plugin: name,
            candidate: text(&registration.primary),
            active: text(&active.primary),
        });
    }
    let primary = resource(server, &name, &registration.primary)?;
    let resources = |list: &[Gvr]| {
        list.iter()
            .map(|g| resource(server, &name, g))
            .collect::<Result<Vec<_>, _>>()
    };
    let owns = resources(&registration.owns)?;
    let reads = resources(&registration.reads)?;
    let triggers = resources(&registration.triggers)?;
    let permissions = match &config.permissions {
        Some(permissions) => permissions.clone(),
        None => registration_permissions(shadow_of.unwrap_or(&registration)),
    };
    let rules = auth::plugin::rules(&permissions);
    let plugin_name = plugin["metadata"]["name"].as_str().unwrap_or_default();
    for info in std::iter::once(&primary)
        .chain(&owns)
        .chain(&reads)
        .chain(&triggers)
    {
        let may = |verb: &str| {
            let a = Attributes::resource(verb, &info.group, &info.plural, "", "");
            rules.iter().any(|rule| rule.allows(&a))
        };
        if !["get", "list", "watch"].into_iter().any(may) {
            return Err(PluginError::NotPermitted {
                plugin: name,
                resource: info.qualified_resource(),
                role: auth::plugin::role(plugin_name),
            });
        }
    }
    let role = match shadow_of {
        Some(_) => Role::Shadow,
        None => {
            auth::plugin::ensure(server, plugin, &rules).await?;
            Role::Active
        }
    };
    let log = server
        .plugin_logs
        .writer(plugin_name, Version::new(role, module.digest()));
    let host = PluginHost::new(
        name.clone(),
        auth::plugin::user(plugin_name),
        server.clone(),
        manager.clone(),
        log.clone(),
    );
    let host = Arc::new(match role {
        Role::Shadow => host.shadow(),
        Role::Active => host,
    });
    let reconciler = WasmReconciler::new(module, host.clone(), limits, log);
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

/// Prepares the module with `config` as the Plugin `plugin` and runs it in the manager.
pub async fn start(
    server: &Arc<Server>,
    manager: &Arc<Manager>,
    plugin: &Value,
    module: Arc<Module>,
    config: &Config,
) -> Result<RunningPlugin, PluginError> {
    let prepared = prepare(server, manager, plugin, module, config).await?;
    Ok(run(manager, prepared).await)
}

/// Runs a prepared plugin in the manager.
pub async fn run(manager: &Arc<Manager>, prepared: Prepared) -> RunningPlugin {
    let reconciler = Arc::new(prepared.reconciler);
    let health = reconciler.health();
    let running = manager
        .start(prepared.controller, Box::new(reconciler.clone()))
        .await;
    RunningPlugin {
        registration: prepared.registration,
        running,
        reconciler,
        host: prepared.host,
        health,
    }
}
