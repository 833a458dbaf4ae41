//! The host API a plugin calls: the [`HostApi`] trait the embedder implements, and the per-store state that passes the guest's calls through to it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{
    ApiError, EventType, Gvr, HostImports, LogLevel, ObjectKey, PatchType, Propagation, TypesHost,
};
use crate::sandbox::{MemoryLimiter, StderrTail};

/// What a plugin may ask of its host: the WIT `host-api` interface with plain Rust types.
///
/// Objects travel as JSON text. Each [`ControllerInstance`](crate::ControllerInstance) gets its
/// own `Arc<dyn HostApi>`, so an implementation can carry the plugin's identity (for logs, Events
/// and the plugin's permissions: refuse what it may not do with a 403 [`ApiError`]).
///
/// The time spent awaiting these methods does not count against the call's deadline, which bounds
/// the guest's own running time; an implementation must bound its own latency.
#[async_trait]
pub trait HostApi: Send + Sync + 'static {
    /// One object, or none.
    async fn get(&self, resource: Gvr, key: ObjectKey) -> Result<Option<String>, ApiError>;
    /// Objects in `namespace` (all when empty) matching a kubectl-syntax label selector.
    async fn list(
        &self,
        resource: Gvr,
        namespace: String,
        label_selector: String,
    ) -> Result<Vec<String>, ApiError>;
    async fn create(&self, resource: Gvr, obj: String) -> Result<String, ApiError>;
    /// Replaces an object; its `metadata.resourceVersion` is a precondition.
    async fn update(&self, resource: Gvr, obj: String) -> Result<String, ApiError>;
    /// Replaces an object's `status` only.
    async fn update_status(&self, resource: Gvr, obj: String) -> Result<String, ApiError>;
    async fn patch(
        &self,
        resource: Gvr,
        key: ObjectKey,
        kind: PatchType,
        patch: String,
    ) -> Result<String, ApiError>;
    async fn delete(
        &self,
        resource: Gvr,
        key: ObjectKey,
        propagation: Propagation,
    ) -> Result<(), ApiError>;
    /// Records an Event about `regarding` (an object's JSON).
    async fn emit_event(&self, regarding: String, kind: EventType, reason: String, message: String);
    fn log(&self, level: LogLevel, message: String);
    /// The host's clock in RFC 3339 with microseconds.
    fn now(&self) -> String;
}

/// Everything one store holds: the sandbox's (empty) WASI context, the limits' bookkeeping and the
/// embedder's [`HostApi`].
pub(crate) struct StoreData {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) host: Arc<dyn HostApi>,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) stderr: StderrTail,
    pub(crate) clock: CallClock,
}

/// The running time of the current export call, less the time spent in host calls.
#[derive(Debug)]
pub(crate) struct CallClock {
    pub(crate) timeout: Duration,
    pub(crate) started: Instant,
    pub(crate) in_host: Duration,
    /// Set when the epoch callback interrupted the guest for running past `timeout`.
    pub(crate) expired: bool,
}

impl CallClock {
    pub(crate) fn new(timeout: Duration) -> Self {
        CallClock {
            timeout,
            started: Instant::now(),
            in_host: Duration::ZERO,
            expired: false,
        }
    }

    pub(crate) fn start(&mut self) {
        self.started = Instant::now();
        self.in_host = Duration::ZERO;
        self.expired = false;
    }

    /// The guest's own running time in this call.
    pub(crate) fn guest_time(&self) -> Duration {
        self.started.elapsed().saturating_sub(self.in_host)
    }
}

impl StoreData {
    /// Awaits a host call, keeping its duration off the guest's deadline.
    async fn timed<F: Future>(&mut self, call: impl FnOnce(Arc<dyn HostApi>) -> F) -> F::Output {
        let started = Instant::now();
        let out = call(Arc::clone(&self.host)).await;
        self.clock.in_host += started.elapsed();
        out
    }
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl TypesHost for StoreData {}

impl HostImports for StoreData {
    async fn get(&mut self, resource: Gvr, key: ObjectKey) -> Result<Option<String>, ApiError> {
        self.timed(|h| async move { h.get(resource, key).await })
            .await
    }

    async fn list(
        &mut self,
        resource: Gvr,
        namespace: String,
        label_selector: String,
    ) -> Result<Vec<String>, ApiError> {
        self.timed(|h| async move { h.list(resource, namespace, label_selector).await })
            .await
    }

    async fn create(&mut self, resource: Gvr, obj: String) -> Result<String, ApiError> {
        self.timed(|h| async move { h.create(resource, obj).await })
            .await
    }

    async fn update(&mut self, resource: Gvr, obj: String) -> Result<String, ApiError> {
        self.timed(|h| async move { h.update(resource, obj).await })
            .await
    }

    async fn update_status(&mut self, resource: Gvr, obj: String) -> Result<String, ApiError> {
        self.timed(|h| async move { h.update_status(resource, obj).await })
            .await
    }

    async fn patch(
        &mut self,
        resource: Gvr,
        key: ObjectKey,
        kind: PatchType,
        patch: String,
    ) -> Result<String, ApiError> {
        self.timed(|h| async move { h.patch(resource, key, kind, patch).await })
            .await
    }

    async fn delete(
        &mut self,
        resource: Gvr,
        key: ObjectKey,
        propagation: Propagation,
    ) -> Result<(), ApiError> {
        self.timed(|h| async move { h.delete(resource, key, propagation).await })
            .await
    }

    async fn emit_event(
        &mut self,
        regarding: String,
        kind: EventType,
        reason: String,
        message: String,
    ) {
        self.timed(|h| async move { h.emit_event(regarding, kind, reason, message).await })
            .await
    }

    async fn log(&mut self, level: LogLevel, message: String) {
        self.host.log(level, message)
    }

    async fn now(&mut self) -> String {
        self.host.now()
    }
}
