//! Starting a Wasm controller: ask it what it reconciles, grant exactly that, run it in the manager.

use std::sync::{Arc, Mutex};

use wasmkube_apiserver::Server;
use wasmkube_model::resource::ResourceInfo;
use wasmkube_runtime::{
    CallError, ControllerInstance, Gvr, Limits, Module, Registration, RuntimeError,
};

use crate::plugin_host::{Grants, PluginHost};
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

/// Asks the module what it reconciles (from an instance that may touch nothing), then starts it
/// with access to exactly the resources it named, plus Events to report with.
pub async fn start(
    server: &Arc<Server>,
    manager: &Arc<Manager>,
    module: Arc<Module>,
    limits: Limits,
    workers: usize,
) -> Result<RunningPlugin, PluginError> {
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
    let owns = registration
        .owns
        .iter()
        .map(|g| resource(server, &name, g))
        .collect::<Result<Vec<_>, _>>()?;
    let reads = registration
        .reads
        .iter()
        .map(|g| resource(server, &name, g))
        .collect::<Result<Vec<_>, _>>()?;
    let mut grants: Grants = std::iter::once(&primary)
        .chain(&owns)
        .chain(&reads)
        .map(|i| (i.group.clone(), i.plural.clone()))
        .collect();
    grants.insert((String::new(), "events".into()));
    let host = Arc::new(PluginHost::new(
        name.clone(),
        server.clone(),
        manager.clone(),
        grants,
    ));
    let reconciler = WasmReconciler::new(module, host, limits);
    let health = reconciler.health();
    let controller = Controller {
        name,
        primary,
        owns,
        reads,
        workers,
    };
    let running = manager.start(controller, Box::new(reconciler)).await;
    Ok(RunningPlugin {
        registration,
        running,
        health,
    })
}
