//! [`Guest`]: one plugin instance's store with its limits, deadline, poisoning and call
//! statistics; the world-specific instances ([`crate::ControllerInstance`],
//! [`crate::PolicyInstance`]) wrap one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap, UpdateDeadline};

use crate::engine::{Module, RuntimeError};
use crate::host::{CallClock, HostApi, StoreData};
use crate::sandbox::{MemoryLimiter, StderrTail, empty_wasi};
/// What one instance may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most linear memory the instance may grow to, in bytes.
    pub memory_bytes: usize,
    /// The most wall-clock time one call may take: guest code, WASI waits (clocks, polls) and
    /// host calls together. Instantiation (start functions) has the same deadline.
    pub call_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            call_timeout: Duration::from_secs(1),
        }
    }
}

/// Why a call into a plugin did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The call ran past [`Limits::call_timeout`] (in guest code, a WASI wait or a host call).
    /// The instance is poisoned.
    #[error("plugin ran past its call deadline")]
    Deadline,
    /// The guest trapped after being refused memory beyond [`Limits::memory_bytes`]. The instance
    /// is poisoned.
    #[error("plugin hit its memory limit: {0}")]
    Memory(String),
    /// The guest trapped (a panic, an abort, an out-of-bounds access ...). The instance is poisoned.
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The guest returned an error. The instance is fine.
    #[error("plugin failed: {0}")]
    Failed(String),
    /// An earlier call trapped, ran past its deadline or was cancelled, so the instance's state
    /// cannot be trusted: create a new instance.
    #[error("plugin instance is poisoned: {0}")]
    Poisoned(String),
}

/// Upper bounds of the latency histogram's buckets; the last bucket counts everything slower.
pub const LATENCY_BUCKETS: [Duration; 5] = [
    Duration::from_millis(1),
    Duration::from_millis(10),
    Duration::from_millis(100),
    Duration::from_secs(1),
    Duration::from_secs(10),
];

/// Counters of one instance's calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Calls made (poisoned refusals not included).
    pub calls: u64,
    /// Calls the guest answered with an error ([`CallError::Failed`]).
    pub errors: u64,
    /// Calls that trapped: [`CallError::Deadline`], [`CallError::Memory`] and [`CallError::Trap`].
    pub traps: u64,
    /// Wall-clock time of all calls, host calls included.
    pub total_latency: Duration,
    pub max_latency: Duration,
    /// `latency_histogram[i]` counts calls no slower than `LATENCY_BUCKETS[i]` (and slower than
    /// the bucket before); the last entry counts calls slower than every bound.
    pub latency_histogram: [u64; LATENCY_BUCKETS.len() + 1],
}

impl Stats {
    fn record(&mut self, latency: Duration) {
        self.calls += 1;
        self.total_latency += latency;
        self.max_latency = self.max_latency.max(latency);
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|b| latency <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency_histogram[bucket] += 1;
    }
}

/// One instance's store, never shared with another instance, and the bookkeeping around its
/// calls. Calls take `&mut self`: one at a time.
pub(crate) struct Guest {
    pub(crate) store: Store<StoreData>,
    module: Arc<Module>,
    poisoned: Option<String>,
    /// True while a call is under way: still true at the next call if the last one was cancelled.
    in_call: bool,
    stats: Stats,
}

impl Guest {
    /// A new store for an instance of `module` that passes the guest's host calls to `host`,
    /// with the deadline armed for instantiation (start functions run guest code too).
    pub(crate) fn store(
        module: &Module,
        host: Arc<dyn HostApi>,
        limits: Limits,
    ) -> Store<StoreData> {
        let stderr = StderrTail::default();
        let data = StoreData {
            wasi: empty_wasi(&stderr),
            table: ResourceTable::new(),
            host,
            limiter: MemoryLimiter::new(limits.memory_bytes),
            stderr,
            clock: CallClock::new(limits.call_timeout),
        };
        let mut store = Store::new(&module.shared.engine, data);
        store.limiter(|data| &mut data.limiter);
        store.data_mut().clock.start();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(on_epoch_deadline);
        store
    }

    pub(crate) fn new(store: Store<StoreData>, module: &Arc<Module>) -> Guest {
        Guest {
            store,
            module: Arc::clone(module),
            poisoned: None,
            in_call: false,
            stats: Stats::default(),
        }
    }

    pub(crate) fn instantiate_error(module: &Module, e: &wasmtime::Error) -> RuntimeError {
        RuntimeError::Instantiate {
            digest: module.digest().to_string(),
            reason: format!("{e:#}"),
        }
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.is_some() || self.in_call
    }

    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }

    pub(crate) fn module(&self) -> &Arc<Module> {
        &self.module
    }

    /// Runs one export call under the instance's wall-clock deadline: the epoch callback stops
    /// guest code at the deadline, and a timer around the whole call stops a guest that waits
    /// (a WASI sleep or poll) or whose host call is still under way. Either way the call is a
    /// [`CallError::Deadline`] and the instance is poisoned.
    pub(crate) async fn call<T>(
        &mut self,
        call: impl AsyncFnOnce(&mut Store<StoreData>) -> wasmtime::Result<Result<T, String>>,
    ) -> Result<T, CallError> {
        self.begin()?;
        let started = Instant::now();
        let timeout = self.store.data().clock.timeout;
        let result = match tokio::time::timeout(timeout, call(&mut self.store)).await {
            Ok(result) => result,
            Err(_) => {
                self.store.data_mut().clock.expired = true;
                Err(Trap::Interrupt.into())
            }
        };
        self.finish(started, result)
    }

    /// Refuses a poisoned instance; otherwise resets the per-call state and arms the deadline.
    fn begin(&mut self) -> Result<(), CallError> {
        if self.in_call && self.poisoned.is_none() {
            self.poisoned = Some("a call was cancelled before it returned".to_string());
        }
        if let Some(reason) = &self.poisoned {
            return Err(CallError::Poisoned(reason.clone()));
        }
        self.in_call = true;
        let data = self.store.data_mut();
        data.clock.start();
        data.limiter.hit = false;
        data.stderr.clear();
        self.store.set_epoch_deadline(1);
        Ok(())
    }

    /// Classifies a call's result, records it in the stats and poisons the instance on a trap.
    fn finish<T>(
        &mut self,
        started: Instant,
        result: wasmtime::Result<Result<T, String>>,
    ) -> Result<T, CallError> {
        self.in_call = false;
        self.stats.record(started.elapsed());
        let error = match result {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(message)) => {
                self.stats.errors += 1;
                return Err(CallError::Failed(message));
            }
            Err(error) => self.classify(&error),
        };
        self.stats.traps += 1;
        self.poisoned = Some(error.to_string());
        Err(error)
    }

    fn classify(&self, error: &wasmtime::Error) -> CallError {
        let data = self.store.data();
        let trap = error.downcast_ref::<Trap>();
        if data.clock.expired || trap == Some(&Trap::Interrupt) {
            return CallError::Deadline;
        }
        let mut reason = match trap {
            Some(trap) => trap.to_string(),
            None => format!("{error:#}"),
        };
        let stderr = data.stderr.text();
        if !stderr.is_empty() {
            reason = format!("{reason}; guest stderr: {stderr}");
        }
        if data.limiter.hit {
            CallError::Memory(reason)
        } else {
            CallError::Trap(reason)
        }
    }
}

/// Runs every epoch tick while a call is in guest code: interrupts the guest once the call's
/// wall-clock time passes the timeout, and otherwise yields to the executor so that a busy guest
/// shares its thread.
fn on_epoch_deadline(
    mut store: wasmtime::StoreContextMut<'_, StoreData>,
) -> wasmtime::Result<UpdateDeadline> {
    let clock = &mut store.data_mut().clock;
    if clock.started.elapsed() >= clock.timeout {
        clock.expired = true;
        return Err(Trap::Interrupt.into());
    }
    Ok(UpdateDeadline::Yield(1))
}

/// One instance of a plugin of world `W` (its generated bindings): its own store, never shared,
/// and the bookkeeping around its calls. Calls take `&mut self`: one at a time.
pub struct Instance<W> {
    pub(crate) guest: Guest,
    pub(crate) bindings: W,
}

impl<W> Instance<W> {
    /// Instantiates `pre` (the module's pre-linked world) in a new store whose host calls go to
    /// `host`.
    pub(crate) async fn instantiate(
        module: &Arc<Module>,
        host: Arc<dyn HostApi>,
        limits: Limits,
        pre: impl AsyncFnOnce(&mut Store<StoreData>) -> wasmtime::Result<W>,
    ) -> Result<Self, RuntimeError> {
        let mut store = Guest::store(module, host, limits);
        let bindings = tokio::time::timeout(limits.call_timeout, pre(&mut store))
            .await
            .unwrap_or_else(|_| Err(wasmtime::Error::msg(CallError::Deadline)))
            .map_err(|e| Guest::instantiate_error(module, &e))?;
        Ok(Instance {
            guest: Guest::new(store, module),
            bindings,
        })
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
