//! The host API a plugin calls: the [`HostApi`] trait the embedder implements, and the per-store state that passes the guest's calls through to it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use wasmkube_model::printable::printable;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{
    ApiError, EventType, Gvr, HostImports, LogLevel, ObjectKey, PatchType, Propagation, TypesHost,
};
use crate::sandbox::{MemoryLimiter, StderrTail};

/// The longest log line a guest may write, in bytes; the rest is cut.
pub const LOG_LINE_BYTES: usize = 4096;
/// The longest Event reason, in bytes: an Event with a longer one is refused (`reason` is a
/// machine-readable word; Kubernetes' `events.k8s.io` validation allows 128).
pub const EVENT_REASON_BYTES: usize = 128;
/// The longest Event message, in bytes; the rest is cut (`events.k8s.io`'s `note` limit, 1 KiB).
pub const EVENT_MESSAGE_BYTES: usize = 1024;

/// What a plugin may ask of its host: the WIT `host-api` interface with plain Rust types.
///
/// Objects travel as JSON text. Each [`ControllerInstance`](crate::ControllerInstance) gets its
/// own `Arc<dyn HostApi>`, so an implementation can carry the plugin's identity (for logs, Events
/// and the plugin's permissions: refuse what it may not do with a 403 [`ApiError`]).
///
/// The time spent awaiting these methods counts against the call's wall-clock deadline. When the
/// deadline passes during a write (`create`, `update`, `update_status`, `patch`, `delete`,
/// `emit_event`), the write is not cut in half: it runs on a task of its own and completes or
/// fails as a whole; the guest, cut off, never sees its result. Log lines and Event texts arrive
/// bounded and with control characters escaped.
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

/// The wall-clock time of the current export call (or instantiation): guest code, WASI waits and
/// host calls alike.
#[derive(Debug)]
pub(crate) struct CallClock {
    pub(crate) timeout: Duration,
    pub(crate) started: Instant,
    /// Set when the call was stopped for running past `timeout`.
    pub(crate) expired: bool,
}

impl CallClock {
    pub(crate) fn new(timeout: Duration) -> Self {
        CallClock {
            timeout,
            started: Instant::now(),
            expired: false,
        }
    }

    pub(crate) fn start(&mut self) {
        self.started = Instant::now();
        self.expired = false;
    }
}

impl StoreData {
    /// Runs a host write on a task of its own and awaits it: if the call's deadline passes
    /// meanwhile, only the waiting is dropped; the write completes or fails as a whole.
    async fn detached<T, F>(
        &mut self,
        write: impl FnOnce(Arc<dyn HostApi>) -> F,
    ) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, ApiError>> + Send + 'static,
    {
        tokio::spawn(write(Arc::clone(&self.host)))
            .await
            .unwrap_or_else(|e| {
                Err(ApiError {
                    code: 500,
                    reason: "InternalError".into(),
                    message: format!("the host call failed: {e}"),
                })
            })
    }
}

/// An Event's reason and message as a guest may record them: a reason longer than
/// [`EVENT_REASON_BYTES`] or with control characters refuses the Event; the message is escaped and
/// cut to [`EVENT_MESSAGE_BYTES`].
fn event_text(reason: &str, message: &str) -> Option<(String, String)> {
    if reason.len() > EVENT_REASON_BYTES || printable(reason, EVENT_REASON_BYTES) != reason {
        return None;
    }
    Some((reason.to_string(), printable(message, EVENT_MESSAGE_BYTES)))
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
        self.host.get(resource, key).await
    }

    async fn list(
        &mut self,
        resource: Gvr,
        namespace: String,
        label_selector: String,
    ) -> Result<Vec<String>, ApiError> {
        self.host.list(resource, namespace, label_selector).await
    }

    async fn create(&mut self, resource: Gvr, obj: String) -> Result<String, ApiError> {
        self.detached(|h| async move { h.create(resource, obj).await })
            .await
    }

    async fn update(&mut self, resource: Gvr, obj: String) -> Result<String, ApiError> {
        self.detached(|h| async move { h.update(resource, obj).await })
            .await
    }

    async fn update_status(&mut self, resource: Gvr, obj: String) -> Result<String, ApiError> {
        self.detached(|h| async move { h.update_status(resource, obj).await })
            .await
    }

    async fn patch(
        &mut self,
        resource: Gvr,
        key: ObjectKey,
        kind: PatchType,
        patch: String,
    ) -> Result<String, ApiError> {
        self.detached(|h| async move { h.patch(resource, key, kind, patch).await })
            .await
    }

    async fn delete(
        &mut self,
        resource: Gvr,
        key: ObjectKey,
        propagation: Propagation,
    ) -> Result<(), ApiError> {
        self.detached(|h| async move { h.delete(resource, key, propagation).await })
            .await
    }

    async fn emit_event(
        &mut self,
        regarding: String,
        kind: EventType,
        reason: String,
        message: String,
    ) {
        let Some((reason, message)) = event_text(&reason, &message) else {
            tracing::debug!(reason = %printable(&reason, EVENT_REASON_BYTES), "event refused: its reason is too long or not printable");
            return;
        };
        let _ = self
            .detached(|h| async move {
                h.emit_event(regarding, kind, reason, message).await;
                Ok(())
            })
            .await;
    }

    async fn log(&mut self, level: LogLevel, message: String) {
        self.host.log(level, printable(&message, LOG_LINE_BYTES))
    }

    async fn now(&mut self) -> String {
        self.host.now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_bounded_and_escaped() {
        let (reason, message) = event_text("Created", "pod web-1\x1b[31m").expect("recorded");
        assert_eq!(
            (reason.as_str(), message.as_str()),
            ("Created", "pod web-1\\u{1b}[31m")
        );
        let long = "x".repeat(10_000);
        let (_, message) = event_text("Created", &long).expect("recorded");
        assert!(message.len() <= EVENT_MESSAGE_BYTES && message.ends_with('…'));
        assert!(event_text(&"R".repeat(EVENT_REASON_BYTES), "").is_some());
        assert_eq!(event_text(&"R".repeat(EVENT_REASON_BYTES + 1), ""), None);
        assert_eq!(event_text("Bad\nReason", ""), None);
    }
}
