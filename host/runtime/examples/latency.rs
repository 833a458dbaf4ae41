//! Measures reconcile latency through the runtime against an in-memory host that answers at once:
//! an almost empty reconcile (the echo test plugin: one `log` and one `get` host call), and a
//! Deployment controller reconcile of a rolled-out Deployment (reads, status check, no change).
//! Build the plugins first (scripts/build-plugins.sh), then
//! `cargo run --release -p wasmkube-runtime --example latency [calls]`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use wasmkube_runtime::{
    ApiError, ControllerInstance, EventType, Gvr, HostApi, Limits, LogLevel, ObjectKey, PatchType,
    Propagation, Runtime,
};

/// Objects by (resource, namespace, name), served and written without any checks.
#[derive(Default)]
struct Memory {
    objects: Mutex<BTreeMap<(String, String, String), Value>>,
    calls: Mutex<u64>,
}

impl Memory {
    fn key(gvr: &Gvr, obj: &Value) -> (String, String, String) {
        let text = |p: &str| {
            obj.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        (
            gvr.resource.clone(),
            text("/metadata/namespace"),
            text("/metadata/name"),
        )
    }

    fn put(&self, gvr: &Gvr, obj: Value) -> String {
        *self.calls.lock().expect("lock") += 1;
        let text = obj.to_string();
        self.objects
            .lock()
            .expect("lock")
            .insert(Self::key(gvr, &obj), obj);
        text
    }

    fn count(&self) -> u64 {
        *self.calls.lock().expect("lock")
    }
}

#[async_trait]
impl HostApi for Memory {
    async fn get(&self, gvr: Gvr, key: ObjectKey) -> Result<Option<String>, ApiError> {
        *self.calls.lock().expect("lock") += 1;
        let objects = self.objects.lock().expect("lock");
        Ok(objects
            .get(&(gvr.resource, key.namespace, key.name))
            .map(Value::to_string))
    }
    async fn list(&self, gvr: Gvr, ns: String, _: String) -> Result<Vec<String>, ApiError> {
        *self.calls.lock().expect("lock") += 1;
        let objects = self.objects.lock().expect("lock");
        Ok(objects
            .iter()
            .filter(|((r, n, _), _)| *r == gvr.resource && (ns.is_empty() || *n == ns))
            .map(|(_, o)| o.to_string())
            .collect())
    }
    async fn create(&self, gvr: Gvr, obj: String) -> Result<String, ApiError> {
        let mut obj: Value = serde_json::from_str(&obj).unwrap_or_default();
        obj["metadata"]["uid"] = json!(format!("uid-{}", self.count()));
        Ok(self.put(&gvr, obj))
    }
    async fn update(&self, gvr: Gvr, obj: String) -> Result<String, ApiError> {
        Ok(self.put(&gvr, serde_json::from_str(&obj).unwrap_or_default()))
    }
    async fn update_status(&self, gvr: Gvr, obj: String) -> Result<String, ApiError> {
        Ok(self.put(&gvr, serde_json::from_str(&obj).unwrap_or_default()))
    }
    async fn patch(
        &self,
        gvr: Gvr,
        key: ObjectKey,
        _: PatchType,
        _: String,
    ) -> Result<String, ApiError> {
        Ok(self.get(gvr, key).await?.unwrap_or_default())
    }
    async fn delete(&self, _: Gvr, _: ObjectKey, _: Propagation) -> Result<(), ApiError> {
        Ok(())
    }
    async fn emit_event(&self, _: String, _: EventType, _: String, _: String) {}
    fn log(&self, _: LogLevel, _: String) {}
    fn now(&self) -> String {
        "2026-01-01T00:00:00.000000Z".into()
    }
}

fn gvr(group: &str, resource: &str) -> Gvr {
    Gvr {
        group: group.into(),
        version: "v1".into(),
        resource: resource.into(),
    }
}

/// Loads a built plugin and instantiates it over `host`.
async fn instance(
    runtime: &Runtime,
    name: &str,
    host: Arc<Memory>,
) -> Result<ControllerInstance, Box<dyn std::error::Error>> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let wasm = target.join(format!("plugins/wasm32-wasip2/release/{name}.wasm"));
    let bytes = std::fs::read(&wasm)
        .map_err(|e| format!("{}: {e}; run scripts/build-plugins.sh", wasm.display()))?;
    let started = Instant::now();
    let module = runtime.load(&bytes)?;
    println!(
        "{name}: load {:?} ({} compilations so far)",
        started.elapsed(),
        runtime.compilations()
    );
    let started = Instant::now();
    let instance = ControllerInstance::new(&module, host, Limits::default()).await?;
    println!("{name}: instantiate {:?}", started.elapsed());
    Ok(instance)
}

/// Runs `calls` reconciles of `default/web` and prints their latency and host calls.
async fn measure(
    what: &str,
    instance: &mut ControllerInstance,
    host: &Memory,
    calls: u32,
) -> Result<(), Box<dyn std::error::Error>> {
    let key = ObjectKey {
        namespace: "default".into(),
        name: "web".into(),
    };
    let (before, host_before, started) = (instance.stats().calls, host.count(), Instant::now());
    for _ in 0..calls {
        instance.reconcile(key.clone()).await?;
    }
    let elapsed = started.elapsed();
    let stats = instance.stats();
    let n = (stats.calls - before).max(1);
    println!(
        "{what}: {n} reconciles, mean {:?}, {} host calls each, max {:?}",
        elapsed / u32::try_from(n).unwrap_or(u32::MAX),
        (host.count() - host_before) / n,
        stats.max_latency,
    );
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let calls: u32 = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(10_000);
    let runtime = Runtime::new(std::env::temp_dir().join("wasmkube-runtime-latency"))?;

    let host = Arc::new(Memory::default());
    let mut echo = instance(&runtime, "test_echo", host.clone()).await?;
    measure("empty reconcile (echo)", &mut echo, &host, calls).await?;

    // A Deployment whose ReplicaSet is fully available: the reconcile reads the Deployment, its
    // ReplicaSets and pods, and finds nothing to change.
    let host = Arc::new(Memory::default());
    let deployments = gvr("apps", "deployments");
    host.put(
        &deployments,
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "d-1", "generation": 1},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "busybox:1"}]}}}}),
    );
    let mut deployment = instance(&runtime, "wasmkube_plugin_deployment", host.clone()).await?;
    let replicasets = gvr("apps", "replicasets");
    for _ in 0..5 {
        // Until settled: the ReplicaSet created, reported available, the status written.
        deployment
            .reconcile(ObjectKey {
                namespace: "default".into(),
                name: "web".into(),
            })
            .await?;
        let sets: Vec<Value> = host
            .list(replicasets.clone(), "default".into(), String::new())
            .await?
            .iter()
            .filter_map(|s| serde_json::from_str(s).ok())
            .collect();
        for mut rs in sets {
            rs["status"] = json!({"replicas": 3, "fullyLabeledReplicas": 3, "readyReplicas": 3,
                "availableReplicas": 3, "observedGeneration": rs["metadata"]["generation"]});
            host.put(&replicasets, rs);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    measure(
        "Deployment reconcile, rolled out",
        &mut deployment,
        &host,
        calls,
    )
    .await?;
    Ok(())
}
