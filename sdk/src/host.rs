//! The host API as a trait: implemented over the WIT imports in Wasm and by `testing::FakeHost`.

use crate::types::{ApiError, EventType, Gvr, LogLevel, ObjectKey, PatchType, Propagation};

/// What the host offers a controller, objects as JSON text; see `wit/wasmkube.wit`.
///
/// Controllers use it through [`crate::Context`], which adds types.
pub trait Host {
    /// One object, or none.
    fn get(&self, resource: &Gvr, key: &ObjectKey) -> Result<Option<String>, ApiError>;
    /// Objects in a namespace (all when empty) matching a kubectl-syntax label selector.
    fn list(
        &self,
        resource: &Gvr,
        namespace: &str,
        label_selector: &str,
    ) -> Result<Vec<String>, ApiError>;
    /// Creates an object; its namespace comes from its metadata.
    fn create(&self, resource: &Gvr, obj: &str) -> Result<String, ApiError>;
    /// Replaces an object; its `metadata.resourceVersion` is a precondition.
    fn update(&self, resource: &Gvr, obj: &str) -> Result<String, ApiError>;
    /// Replaces an object's `status` only.
    fn update_status(&self, resource: &Gvr, obj: &str) -> Result<String, ApiError>;
    /// Patches an object.
    fn patch(
        &self,
        resource: &Gvr,
        key: &ObjectKey,
        kind: PatchType,
        patch: &str,
    ) -> Result<String, ApiError>;
    /// Deletes an object.
    fn delete(
        &self,
        resource: &Gvr,
        key: &ObjectKey,
        propagation: Propagation,
    ) -> Result<(), ApiError>;
    /// Records an Event about `regarding` (an object's JSON).
    fn emit_event(&self, regarding: &str, kind: EventType, reason: &str, message: &str);
    /// Writes a log line.
    fn log(&self, level: LogLevel, message: &str);
    /// The host's clock in RFC 3339.
    fn now(&self) -> String;
}
