//! Measures the latency of an almost empty reconcile call: the echo test plugin, whose reconcile
//! makes one `log` and one `get` host call. Build the plugins first (scripts/build-plugins.sh), then
//! `cargo run --release -p wasmkube-runtime --example latency [calls]`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use wasmkube_runtime::{
    ApiError, ControllerInstance, EventType, Gvr, HostApi, Limits, LogLevel, ObjectKey, PatchType,
    Propagation, Runtime,
};

/// Answers every call at once, from nothing.
struct Idle;

#[async_trait]
impl HostApi for Idle {
    async fn get(&self, _: Gvr, _: ObjectKey) -> Result<Option<String>, ApiError> {
        Ok(None)
    }
    async fn list(&self, _: Gvr, _: String, _: String) -> Result<Vec<String>, ApiError> {
        Ok(vec![])
    }
    async fn create(&self, _: Gvr, obj: String) -> Result<String, ApiError> {
        Ok(obj)
    }
    async fn update(&self, _: Gvr, obj: String) -> Result<String, ApiError> {
        Ok(obj)
    }
    async fn update_status(&self, _: Gvr, obj: String) -> Result<String, ApiError> {
        Ok(obj)
    }
    async fn patch(
        &self,
        _: Gvr,
        _: ObjectKey,
        _: PatchType,
        p: String,
    ) -> Result<String, ApiError> {
        Ok(p)
    }
    async fn delete(&self, _: Gvr, _: ObjectKey, _: Propagation) -> Result<(), ApiError> {
        Ok(())
    }
    async fn emit_event(&self, _: String, _: EventType, _: String, _: String) {}
    fn log(&self, _: LogLevel, _: String) {}
    fn now(&self) -> String {
        String::new()
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let calls: u32 = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(10_000);
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let wasm = target.join("wasm32-wasip2/release/test_echo.wasm");
    let bytes = std::fs::read(&wasm)
        .map_err(|e| format!("{}: {e}; run scripts/build-plugins.sh", wasm.display()))?;

    let cache = std::env::temp_dir().join("wasmkube-runtime-latency");
    let runtime = Runtime::new(&cache)?;
    let started = Instant::now();
    let module = runtime.load(&bytes)?;
    println!(
        "load: {:?} ({} compilations)",
        started.elapsed(),
        runtime.compilations()
    );

    let started = Instant::now();
    let mut instance = ControllerInstance::new(&module, Arc::new(Idle), Limits::default()).await?;
    println!("instantiate: {:?}", started.elapsed());

    let key = ObjectKey {
        namespace: "default".into(),
        name: "web".into(),
    };
    for _ in 0..calls {
        instance.reconcile(key.clone()).await?;
    }
    let stats = instance.stats();
    println!(
        "{} reconciles: mean {:?}, max {:?}, histogram {:?}",
        stats.calls,
        stats.total_latency / stats.calls.max(1) as u32,
        stats.max_latency,
        stats.latency_histogram
    );
    Ok(())
}
