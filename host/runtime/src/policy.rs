//! [`PolicyInstance`]: one instance of a scheduling policy plugin (world `scheduler-plugin`).

use std::sync::Arc;

use crate::bindings::{Capabilities, CycleConfig, Delta, SchedulerPlugin, Verdict};
use crate::engine::{Module, Pre, RuntimeError};
use crate::guest::{CallError, Instance, Limits};
use crate::host::HostApi;

/// One instance of a scheduling policy: its own store, which holds the policy's view of the
/// cluster.
pub type PolicyInstance = Instance<SchedulerPlugin>;

impl Instance<SchedulerPlugin> {
    /// Instantiates `module` in a new store that passes the guest's host calls to `host`.
    pub async fn new(
        module: &Arc<Module>,
        host: Arc<dyn HostApi>,
        limits: Limits,
    ) -> Result<Self, RuntimeError> {
        let Pre::Scheduler(pre) = &module.pre else {
            return Err(module.wrong_world("scheduler-plugin"));
        };
        Instance::instantiate(module, host, limits, async |store| {
            pre.instantiate_async(store).await
        })
        .await
    }

    /// The policy's name and plugins.
    pub async fn describe(&mut self) -> Result<Capabilities, CallError> {
        let scheduler = self.bindings.wasmkube_plugin_scheduler();
        self.guest
            .call(async |store| scheduler.call_describe(store).await.map(Ok))
            .await
    }

    /// Brings the policy's view up to date.
    pub async fn apply(&mut self, deltas: &[Delta]) -> Result<(), CallError> {
        let scheduler = self.bindings.wasmkube_plugin_scheduler();
        self.guest
            .call(async |store| scheduler.call_apply(store, deltas).await.map(Ok))
            .await
    }

    /// Filters and scores the nodes for `pod` (its JSON; a `String` because wasmtime's binding
    /// takes one).
    #[allow(clippy::ptr_arg)]
    pub async fn schedule(
        &mut self,
        pod: &String,
        config: &CycleConfig,
    ) -> Result<Verdict, CallError> {
        let scheduler = self.bindings.wasmkube_plugin_scheduler();
        self.guest
            .call(async |store| scheduler.call_schedule(store, pod, config).await)
            .await
    }
}
