//! Preparing a Wasm controller: ask it what it reconciles, check that against what it is allowed, build its reconciler.

use std::sync::{Arc, Mutex};

use serde_json::Value;
use wasmkube_apiserver::Server;
use wasmkube_model::resource::ResourceInfo;
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

/// A plugin ready to run: what it said about itself, and its reconciler.
pub struct Prepared {
    pub registration: Registration,
    pub controller: Controller,
    pub reconciler: WasmReconciler,
}

/// A Wasm controller running in the manager.
pub struct RunningPlugin {
    pub registration: Registration,
    pub running: Running,
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
/// builds its reconciler with `permissions` — or, when `None`, exactly what it named: every verb on
/// its primary and owned resources, get/list on those it reads, and creating Events.
pub async fn prepare(
    server: &Arc<Server>,
    manager: &Arc<Manager>,
    module: Arc<Module>,
    limits: Limits,
    workers: usize,
    permissions: Option<Grants>,
) -> Result<Prepared, PluginError> {
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
    let grants = match permissions {
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
    let reconciler = WasmReconciler::new(module, host, limits);
    let controller = Controller {
        name,
        primary,
        owns,
        reads,
        triggers,
        workers,
    };
    Ok(Prepared {
        registration,
        controller,
        reconciler,
    })
}

/// Prepares the module with the permissions it names and runs it in the manager.
pub async fn start(
    server: &Arc<Server>,
    manager: &Arc<Manager>,
    module: Arc<Module>,
    limits: Limits,
    workers: usize,
) -> Result<RunningPlugin, PluginError> {
    let prepared = prepare(server, manager, module, limits, workers, None).await?;
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
        health,
    }
}
