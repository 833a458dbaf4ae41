//! Where a profile's policies come from: Plugin objects of kind Scheduler run as Wasm
//! components, or SDK policies linked into the process (for tests and benchmarks).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use wasmkube_apiserver::Server;
use wasmkube_apiserver::auth;
use wasmkube_apiserver::plugin_logs::{Role, Version, Writer};
use wasmkube_controller::Manager;
use wasmkube_controller::module;
use wasmkube_controller::plugin::Config;
use wasmkube_controller::plugin_host::PluginHost;
use wasmkube_model::resource::PLUGIN_GROUP;
use wasmkube_runtime::{HostApi, Runtime, World};

use crate::policy::{Policy, WasmPolicy};

/// Makes policy instances by Plugin name.
#[async_trait]
pub trait Source: Send + Sync + 'static {
    /// A new instance of the policy `plugin` to run in `role`, or why there is none.
    async fn load(&self, plugin: &str, role: Role) -> Result<Box<dyn Policy>, String>;
    /// The version `load` would give now (starting with a module digest), to notice upgrades.
    fn version(&self, plugin: &str) -> Option<String>;
}

/// What a policy may do without `spec.permissions` (`spec.permissions` form): read, beyond its
/// deltas and from the informer caches, claims, volumes and storage classes (volume binding),
/// namespaces (affinity terms' namespace selectors), and services and pod controllers (default
/// topology spreading).
pub fn policy_permissions() -> Value {
    let read = |group: &str, resources: &[&str]| json!({"group": group, "resources": resources, "verbs": ["get", "list", "watch"]});
    json!([
        read(
            "",
            &[
                "persistentvolumeclaims",
                "persistentvolumes",
                "namespaces",
                "services",
                "replicationcontrollers",
            ]
        ),
        read("storage.k8s.io", &["storageclasses"]),
        read("apps", &["replicasets", "statefulsets"]),
    ])
}

/// The host of the scheduling policy `name`: its calls are authorized as the Plugin's
/// ServiceAccount `kube-system/plugin-NAME`, its log lines go to `log`.
pub fn policy_host(
    name: &str,
    log: Writer,
    server: &Arc<Server>,
    manager: &Arc<Manager>,
) -> Arc<dyn HostApi> {
    Arc::new(PluginHost::new(
        format!("policy-{name}"),
        auth::plugin::user(name),
        server.clone(),
        manager.clone(),
        log,
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
    async fn load(&self, plugin: &str, role: Role) -> Result<Box<dyn Policy>, String> {
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
        // Its ServiceAccount, ClusterRole and binding, before it can call.
        let config = Config::of(spec);
        let permissions = config.permissions.unwrap_or_else(policy_permissions);
        auth::plugin::ensure(&self.server, &object, &auth::plugin::rules(&permissions))
            .await
            .map_err(|e| format!("writing its ServiceAccount, ClusterRole and binding: {e}"))?;
        let log = (self.server.plugin_logs).writer(plugin, Version::new(role, module.digest()));
        let host = policy_host(plugin, log.clone(), &self.server, &self.manager);
        let policy = WasmPolicy::new(&module, host, config.limits, log)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Box::new(policy))
    }

    /// The module digest, then the limits and permissions: a change of `spec.limits` or
    /// `spec.permissions` loads the policy again with them, as a new module would.
    fn version(&self, plugin: &str) -> Option<String> {
        let object = self.object(plugin)?;
        let digest = object["spec"]["module"]["digest"].as_str()?;
        let config = Config::of(&object["spec"]);
        let permissions = config
            .permissions
            .map(|p| p.to_string())
            .unwrap_or_default();
        Some(format!(
            "{}+{}B+{}ms+{permissions}",
            digest.trim_start_matches("sha256:"),
            config.limits.memory_bytes,
            config.limits.call_timeout.as_millis()
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
    async fn load(&self, plugin: &str, _: Role) -> Result<Box<dyn Policy>, String> {
        self.factories
            .get(plugin)
            .map(|make| make())
            .ok_or_else(|| format!("no native policy {plugin:?}"))
    }

    fn version(&self, plugin: &str) -> Option<String> {
        self.factories.contains_key(plugin).then(|| "native".into())
    }
}
