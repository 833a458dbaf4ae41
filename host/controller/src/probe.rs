//! The host a module sees while it is asked what it is (`describe`): every call refused, logs kept.

use wasmkube_runtime::{
    ApiError, EventType, Gvr, HostApi, LogLevel, ObjectKey, PatchType, Propagation,
};

/// Refuses every call with a 403: a module describing itself may touch nothing.
pub struct Probe {
    /// The module's name in logs and refusals (`plugin-<digest prefix>`).
    pub module: String,
}

impl Probe {
    fn refused<T>(&self) -> Result<T, ApiError> {
        Err(ApiError {
            code: 403,
            reason: "Forbidden".into(),
            message: format!(
                "{} may not call the host while it describes itself",
                self.module
            ),
        })
    }
}

#[async_trait::async_trait]
impl HostApi for Probe {
    async fn get(&self, _: Gvr, _: ObjectKey) -> Result<Option<String>, ApiError> {
        self.refused()
    }

    async fn list(&self, _: Gvr, _: String, _: String) -> Result<Vec<String>, ApiError> {
        self.refused()
    }

    async fn create(&self, _: Gvr, _: String) -> Result<String, ApiError> {
        self.refused()
    }

    async fn update(&self, _: Gvr, _: String) -> Result<String, ApiError> {
        self.refused()
    }

    async fn update_status(&self, _: Gvr, _: String) -> Result<String, ApiError> {
        self.refused()
    }

    async fn patch(
        &self,
        _: Gvr,
        _: ObjectKey,
        _: PatchType,
        _: String,
    ) -> Result<String, ApiError> {
        self.refused()
    }

    async fn delete(&self, _: Gvr, _: ObjectKey, _: Propagation) -> Result<(), ApiError> {
        self.refused()
    }

    async fn emit_event(&self, _: String, _: EventType, reason: String, _: String) {
        tracing::debug!(module = %self.module, %reason, "event refused: the module is describing itself");
    }

    fn log(&self, level: LogLevel, message: String) {
        crate::plugin_host::log(&self.module, level, &message);
    }

    fn now(&self) -> String {
        crate::plugin_host::now()
    }
}
