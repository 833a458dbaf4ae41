//! Wasm controllers as reconcilers: a pool of plugin instances, a trapped instance replaced by a fresh one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmkube_runtime::{
    CallError, ControllerInstance, HostApi, Limits, Module, ObjectKey as GuestKey,
    Outcome as GuestOutcome,
};

use wasmkube_apiserver::metrics::Histogram;
use wasmkube_apiserver::plugin_logs::{Kind, Writer};

use crate::manager::{ObjectKey, Outcome, Reconciler};

/// How a plugin's instances have fared, for its status.
#[derive(Clone, Debug, Default)]
pub struct Health {
    pub reconciles: u64,
    /// How long reconciles took, guest and host calls together.
    pub latency: Histogram,
    pub failures: u64,
    /// Traps, deadlines and memory-limit hits: each cost an instance.
    pub traps: u64,
    pub last_trap: Option<String>,
}

/// Reconciles by calling a Wasm controller; each concurrent reconcile uses its own instance.
pub struct WasmReconciler {
    module: Arc<Module>,
    host: Arc<dyn HostApi>,
    limits: Limits,
    idle: Mutex<Vec<ControllerInstance>>,
    health: Arc<Mutex<Health>>,
    /// Where each trap is written, with its reason.
    log: Writer,
}

impl WasmReconciler {
    pub fn new(module: Arc<Module>, host: Arc<dyn HostApi>, limits: Limits, log: Writer) -> Self {
        WasmReconciler {
            module,
            host,
            limits,
            idle: Mutex::new(Vec::new()),
            health: Arc::default(),
            log,
        }
    }

    pub fn module(&self) -> &Arc<Module> {
        &self.module
    }

    pub fn health(&self) -> Arc<Mutex<Health>> {
        self.health.clone()
    }

    fn record(&self, f: impl FnOnce(&mut Health)) {
        f(&mut self.health.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Counts an instance lost to a trap, a deadline or the memory limit; returns `reason`.
    fn trapped(&self, reason: String) -> String {
        self.log.write(Kind::Trapped, &reason);
        self.record(|h| {
            h.traps += 1;
            h.last_trap = Some(reason.clone());
        });
        reason
    }
}

#[async_trait::async_trait]
impl Reconciler for WasmReconciler {
    async fn reconcile(&self, key: ObjectKey) -> Result<Outcome, String> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut instance = match pooled {
            Some(instance) => instance,
            // A start function that traps or runs past the deadline costs an instance too.
            None => {
                match ControllerInstance::new(&self.module, self.host.clone(), self.limits).await {
                    Ok(instance) => instance,
                    Err(e) => return Err(self.trapped(e.to_string())),
                }
            }
        };
        let started = std::time::Instant::now();
        let result = instance
            .reconcile(GuestKey {
                namespace: key.namespace,
                name: key.name,
            })
            .await;
        self.record(|h| {
            h.reconciles += 1;
            h.latency.observe(started.elapsed().as_secs_f64());
        });
        match result {
            Ok(outcome) => {
                self.idle
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(instance);
                Ok(match outcome {
                    GuestOutcome::Done => Outcome::Done,
                    GuestOutcome::RequeueAfter(ms) => {
                        Outcome::RequeueAfter(Duration::from_millis(ms))
                    }
                })
            }
            Err(CallError::Failed(message)) => {
                self.idle
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(instance);
                self.record(|h| h.failures += 1);
                Err(message)
            }
            // The instance is poisoned: drop it; the next reconcile gets a fresh one, and the
            // work queue retries this key with backoff.
            Err(trap) => Err(self.trapped(trap.to_string())),
        }
    }
}
