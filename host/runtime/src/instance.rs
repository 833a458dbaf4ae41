//! [`ControllerInstance`]: one instance of a controller plugin (world `controller-plugin`).

use std::sync::Arc;

use crate::bindings::{ControllerPlugin, ObjectKey, Outcome, Registration};
use crate::engine::{Module, Pre, RuntimeError};
use crate::guest::{CallError, Instance, Limits};
use crate::host::HostApi;

/// One instance of a controller plugin: its own store (memory, tables, WASI state) and host
/// handle.
pub type ControllerInstance = Instance<ControllerPlugin>;

impl Instance<ControllerPlugin> {
    /// Instantiates `module` in a new store that passes the guest's host calls to `host`.
    pub async fn new(
        module: &Arc<Module>,
        host: Arc<dyn HostApi>,
        limits: Limits,
    ) -> Result<Self, RuntimeError> {
        let Pre::Controller(pre) = &module.pre else {
            return Err(module.wrong_world("controller-plugin"));
        };
        Instance::instantiate(module, host, limits, async |store| {
            pre.instantiate_async(store).await
        })
        .await
    }

    /// Asks the plugin what it reconciles.
    pub async fn describe(&mut self) -> Result<Registration, CallError> {
        let controller = self.bindings.wasmkube_plugin_controller();
        self.guest
            .call(async |store| controller.call_describe(store).await.map(Ok))
            .await
    }

    /// Asks the plugin to reconcile the object at `key`.
    pub async fn reconcile(&mut self, key: ObjectKey) -> Result<Outcome, CallError> {
        let controller = self.bindings.wasmkube_plugin_controller();
        self.guest
            .call(async |store| controller.call_reconcile(store, &key).await)
            .await
    }
}
