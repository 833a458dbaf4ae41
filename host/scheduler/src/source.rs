//! Where a profile's policies come from: Plugin objects of kind Scheduler run as Wasm
//! components, or SDK policies linked into the process (for tests and benchmarks).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use wasmkube_apiserver::Server;
use wasmkube_controller::Manager;
use wasmkube_controller::module;
use wasmkube_controller::plugin::Config;
use wasmkube_controller::plugin_host::{Grants, PluginHost, grant};
use wasmkube_model::resource::PLUGIN_GROUP;
use wasmkube_runtime::{HostApi, Runtime, World};

use crate::policy::{Policy, WasmPolicy};

/// Makes policy instances by Plugin name.
#[async_trait]
pub trait Source: Send + Sync + 'static {
    /// A new instance of the policy `plugin`, or why there is none.
    async fn load(&self, plugin: &str) -> Result<Box<dyn Policy>, String>;
    /// The version `load` would give now (starting with a module digest), to notice upgrades.
    fn version(&self, plugin: &str) -> Option<String>;
}

/// What a policy may read beyond its deltas, from the informer caches: claims, volumes and
/// storage classes (volume binding), namespaces (affinity terms' namespace selectors), and
/// services and pod controllers (default topology spreading).
pub fn policy_host(name: &str, server: &Arc<Server>, manager: &Arc<Manager>) -> Arc<dyn HostApi> {
    let mut grants = Grants::new();
    for (group, plural) in [
        ("", "persistentvolumeclaims"),
        ("", "persistentvolumes"),
        ("storage.k8s.io", "storageclasses"),
        ("", "namespaces"),
        ("", "services"),
        ("", "replicationcontrollers"),
        ("apps", "replicasets"),
        ("apps", "statefulsets"),
    ] {
        grant(&mut grants, group, plural, &["get", "list"]);
    }
    Arc::new(PluginHost::new(
        format!("policy-{name}"),
        server.clone(),
        manager.clone(),
        grants,
    ))
}

/// Policies from `Plugin` objects of kind `Scheduler`, compiled by the runtime.
pub struct Plugins {
    pub server: Arc<Server>,
    pub manager: Arc<Manager>,
    pub runtime: Arc<Runtime>,
}

impl Plugins {
    fn object(&self, plugin: &str) -> Option<Arc<Value>> {
        let info = self
            .server
            .registry()
            .get(PLUGIN_GROUP, "v1alpha1", "plugins")
            .cloned()?;
        self.manager
            .informer(&info)
            .get(None, plugin)
            .filter(|p| p["spec"]["kind"] == "Scheduler")
    }
}

#[async_trait]
impl Source for Plugins {
    async fn load(&self, plugin: &str) -> Result<Box<dyn Policy>, String> {
        let object = self
            .object(plugin)
            .ok_or_else(|| format!("no Plugin {plugin:?} of kind Scheduler"))?;
        let spec = &object["spec"];
        let digest = spec["module"]["digest"].as_str().unwrap_or_default();
        let module = module::load(&self.server, &self.runtime, spec, digest)
            .await
            .map_err(|e| e.to_string())?;
        if module.world() != World::Scheduler {
            return Err(format!(
                "plugin {plugin:?} is a {}, not a scheduler-plugin",
                module.world()
            ));
        }
        let host = policy_host(plugin, &self.server, &self.manager);
        let policy = WasmPolicy::new(&module, host, Config::of(spec).limits)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Box::new(policy))
    }

    /// The module digest, then the limits: a change of `spec.limits` loads the policy again
    /// with them, as a new module would.
    fn version(&self, plugin: &str) -> Option<String> {
        let object = self.object(plugin)?;
        let digest = object["spec"]["module"]["digest"].as_str()?;
        let limits = Config::of(&object["spec"]).limits;
        Some(format!(
            "{}+{}B+{}ms",
            digest.trim_start_matches("sha256:"),
            limits.memory_bytes,
            limits.call_timeout.as_millis()
        ))
    }
}

/// A constructor of native policy instances.
pub type Factory = Box<dyn Fn() -> Box<dyn Policy> + Send + Sync>;

/// Policies linked into the process, by Plugin name.
#[derive(Default)]
pub struct Native {
    factories: BTreeMap<String, Factory>,
}

impl Native {
    pub fn with(mut self, plugin: &str, factory: Factory) -> Native {
        self.factories.insert(plugin.to_string(), factory);
        self
    }
}

#[async_trait]
impl Source for Native {
    async fn load(&self, plugin: &str) -> Result<Box<dyn Policy>, String> {
        self.factories
            .get(plugin)
            .map(|make| make())
            .ok_or_else(|| format!("no native policy {plugin:?}"))
    }

    fn version(&self, plugin: &str) -> Option<String> {
        self.factories.contains_key(plugin).then(|| "native".into())
    }
}
