//! Wasm controllers as reconcilers: a pool of plugin instances, a trapped instance replaced by a fresh one, each reconcile's writes recorded when asked (for a shadow's comparison).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmkube_runtime::{
    CallError, ControllerInstance, HostApi, Limits, Module, ObjectKey as GuestKey,
    Outcome as GuestOutcome,
};

use wasmkube_apiserver::metrics::Histogram;
use wasmkube_apiserver::plugin_logs::{Kind, Writer};

use crate::manager::{ObjectKey, Outcome, Reconciler};
use crate::record::{Recording, Write};

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

/// An instance at rest, and the host in front of it that records its writes when asked.
struct Pooled {
    instance: ControllerInstance,
    host: Arc<Recording>,
}

/// What one reconcile came to.
pub struct Call {
    pub result: Result<Outcome, String>,
    /// Whether the instance was lost to a trap, a deadline or the memory limit.
    pub trapped: bool,
    /// The writes it made, in order, when they were recorded.
    pub writes: Vec<Write>,
}

/// Reconciles by calling a Wasm controller; each concurrent reconcile uses its own instance.
pub struct WasmReconciler {
    module: Arc<Module>,
    host: Arc<dyn HostApi>,
    limits: Limits,
    idle: Mutex<Vec<Pooled>>,
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
    fn trapped(&self, reason: String) -> Call {
        self.log.write(Kind::Trapped, &reason);
        self.record(|h| {
            h.traps += 1;
            h.last_trap = Some(reason.clone());
        });
        Call {
            result: Err(reason),
            trapped: true,
            writes: Vec::new(),
        }
    }

    fn idle(&self, pooled: Pooled) {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(pooled);
    }

    /// Reconciles `key`; with `record`, the writes it made are in the [`Call`].
    pub async fn call(&self, key: ObjectKey, record: bool) -> Call {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let pooled = match pooled {
            Some(pooled) => pooled,
            // A start function that traps or runs past the deadline costs an instance too.
            None => {
                let host = Arc::new(Recording::new(self.host.clone()));
                match ControllerInstance::new(&self.module, host.clone(), self.limits).await {
                    Ok(instance) => Pooled { instance, host },
                    Err(e) => return self.trapped(e.to_string()),
                }
            }
        };
        let Pooled { mut instance, host } = pooled;
        if record {
            host.start();
        }
        let started = std::time::Instant::now();
        let result = instance
            .reconcile(GuestKey {
                namespace: key.namespace,
                name: key.name,
            })
            .await;
        let writes = host.take();
        self.record(|h| {
            h.reconciles += 1;
            h.latency.observe(started.elapsed().as_secs_f64());
        });
        let result = match result {
            Ok(GuestOutcome::Done) => Ok(Outcome::Done),
            Ok(GuestOutcome::RequeueAfter(ms)) => {
                Ok(Outcome::RequeueAfter(Duration::from_millis(ms)))
            }
            Err(CallError::Failed(message)) => {
                self.record(|h| h.failures += 1);
                Err(message)
            }
            // The instance is poisoned: drop it; the next reconcile gets a fresh one, and the
            // work queue retries this key with backoff.
            Err(trap) => return self.trapped(trap.to_string()),
        };
        self.idle(Pooled { instance, host });
        Call {
            result,
            trapped: false,
            writes,
        }
    }
}

#[async_trait::async_trait]
impl Reconciler for WasmReconciler {
    async fn reconcile(&self, key: ObjectKey) -> Result<Outcome, String> {
        self.call(key, false).await.result
    }
}
