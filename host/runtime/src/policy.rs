//! [`PolicyInstance`]: one instance of a scheduling policy plugin (world `scheduler-plugin`).

use std::sync::Arc;
use std::time::Instant;

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
        self.guest.begin()?;
        let started = Instant::now();
        let scheduler = self.bindings.wasmkube_plugin_scheduler();
        let result = scheduler.call_describe(&mut self.guest.store).await;
        self.guest.finish(started, result.map(Ok))
    }

    /// Brings the policy's view up to date.
    pub async fn apply(&mut self, deltas: &[Delta]) -> Result<(), CallError> {
        self.guest.begin()?;
        let started = Instant::now();
        let scheduler = self.bindings.wasmkube_plugin_scheduler();
        let result = scheduler.call_apply(&mut self.guest.store, deltas).await;
        self.guest.finish(started, result.map(Ok))
    }

    /// Filters and scores the nodes for `pod` (its JSON; a `String` because wasmtime's binding
    /// takes one).
    #[allow(clippy::ptr_arg)]
    pub async fn schedule(
        &mut self,
        pod: &String,
        config: &CycleConfig,
    ) -> Result<Verdict, CallError> {
        self.guest.begin()?;
        let started = Instant::now();
        let scheduler = self.bindings.wasmkube_plugin_scheduler();
        let result = scheduler
            .call_schedule(&mut self.guest.store, pod, config)
            .await;
        self.guest.finish(started, result)
    }
}
