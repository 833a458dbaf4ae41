//! [`ControllerInstance`]: one instance of a controller plugin (world `controller-plugin`).

use std::sync::Arc;
use std::time::Instant;

use crate::bindings::{ObjectKey, Outcome, Registration};
use crate::engine::{Module, Pre, RuntimeError};
use crate::guest::{CallError, Guest, Limits, Stats};
use crate::host::HostApi;

/// One instance of a controller plugin: its own store (memory, tables, WASI state) and host
/// handle. Calls take `&mut self`: one at a time.
pub struct ControllerInstance {
    guest: Guest,
    bindings: crate::bindings::ControllerPlugin,
}

impl ControllerInstance {
    /// Instantiates `module` in a new store that passes the guest's host calls to `host`.
    pub async fn new(
        module: &Arc<Module>,
        host: Arc<dyn HostApi>,
        limits: Limits,
    ) -> Result<Self, RuntimeError> {
        let Pre::Controller(pre) = &module.pre else {
            return Err(module.wrong_world("controller-plugin"));
        };
        let mut store = Guest::store(module, host, limits);
        let bindings = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| Guest::instantiate_error(module, &e))?;
        Ok(ControllerInstance {
            guest: Guest::new(store, module),
            bindings,
        })
    }

    /// Asks the plugin what it reconciles.
    pub async fn describe(&mut self) -> Result<Registration, CallError> {
        self.guest.begin()?;
        let started = Instant::now();
        let controller = self.bindings.wasmkube_plugin_controller();
        let result = controller.call_describe(&mut self.guest.store).await;
        self.guest.finish(started, result.map(Ok))
    }

    /// Asks the plugin to reconcile the object at `key`.
    pub async fn reconcile(&mut self, key: ObjectKey) -> Result<Outcome, CallError> {
        self.guest.begin()?;
        let started = Instant::now();
        let controller = self.bindings.wasmkube_plugin_controller();
        let result = controller.call_reconcile(&mut self.guest.store, &key).await;
        self.guest.finish(started, result)
    }

    /// Whether an earlier call left this instance unusable; it then refuses every call.
    pub fn is_poisoned(&self) -> bool {
        self.guest.is_poisoned()
    }

    /// This instance's call counters.
    pub fn stats(&self) -> &Stats {
        self.guest.stats()
    }

    /// The plugin this is an instance of.
    pub fn module(&self) -> &Arc<Module> {
        self.guest.module()
    }
}
