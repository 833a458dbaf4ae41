//! [`PolicyInstance`]: one instance of a scheduling policy plugin (world `scheduler-plugin`).

use std::sync::Arc;
use std::time::Instant;

use crate::bindings::{Capabilities, CycleConfig, Delta, SchedulerPlugin, Verdict};
use crate::engine::{Module, Pre, RuntimeError};
use crate::guest::{CallError, Guest, Limits, Stats};
use crate::host::HostApi;

/// One instance of a scheduling policy: its own store, which holds the policy's view of the
/// cluster. Calls take `&mut self`: one at a time.
pub struct PolicyInstance {
    guest: Guest,
    bindings: SchedulerPlugin,
}

impl PolicyInstance {
    /// Instantiates `module` in a new store that passes the guest's host calls to `host`.
    pub async fn new(
        module: &Arc<Module>,
        host: Arc<dyn HostApi>,
        limits: Limits,
    ) -> Result<Self, RuntimeError> {
        let Pre::Scheduler(pre) = &module.pre else {
            return Err(module.wrong_world("scheduler-plugin"));
        };
        let mut store = Guest::store(module, host, limits);
        let bindings = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| Guest::instantiate_error(module, &e))?;
        Ok(PolicyInstance {
            guest: Guest::new(store, module),
            bindings,
        })
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
