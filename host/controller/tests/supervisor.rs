//! Plugins as API objects: installed, swapped while running, rolled back when the new module keeps trapping, a broken module refused.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::wasm;
use serde_json::{Value, json};
use wasmkube_apiserver::Server;
use wasmkube_apiserver::registry::{WriteOptions, create_object};
use wasmkube_controller::module::PluginKind;
use wasmkube_controller::{Manager, module, supervisor};
use wasmkube_runtime::Runtime;

async fn plugin(server: &Server) -> Value {
    let info = server
        .registry()
        .get("wasmkube.dev", "v1alpha1", "plugins")
        .expect("served")
        .clone();
    server
        .objects
        .must_get(&info, None, "p")
        .await
        .expect("exists")
        .object
}

async fn until(server: &Server, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..400 {
        let p = plugin(server).await;
        if check(&p) {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: never happened; plugin {:#}", plugin(server).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_swap_roll_back_and_refuse_a_broken_module() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::server(&dir).await;
    let cm = server
        .registry()
        .by_kind("v1", "ConfigMap")
        .expect("served")
        .clone();
    create_object(
        &server,
        &cm,
        Some("default"),
        json!({"metadata": {"name": "c"}}),
        WriteOptions::INTERNAL,
        &mut Vec::new(),
    )
    .await
    .expect("configmap");
    let runtime = Arc::new(Runtime::new(dir.path().join("cache")).expect("runtime"));
    let _supervisor = supervisor::spawn(server.clone(), Manager::new(server.clone()), runtime);

    // echo reconciles config maps (and requeues them every 5 ms, so it is called constantly).
    let echo = wasm("test_echo");
    module::install(&server, "p", PluginKind::Controller, &echo)
        .await
        .expect("installed");
    let running = until(&server, "echo running", |p| {
        p["status"]["phase"] == "Running" && p["status"]["reconciles"].as_u64() > Some(0)
    })
    .await;
    assert_eq!(running["status"]["activeDigest"], module::digest(&echo));
    let metrics = server.metrics.render();
    assert!(
        metrics.contains("wasmkube_plugin_reconciles_total{plugin=\"p\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wasmkube_plugin_reconcile_duration_seconds_count{plugin=\"p\"}"),
        "{metrics}"
    );

    // panic reconciles the same resources but traps every time: it takes over, then is rolled back.
    let panic = wasm("test_panic");
    module::install(&server, "p", PluginKind::Controller, &panic)
        .await
        .expect("installed");
    let rolled = until(&server, "rolled back", |p| {
        p["status"]["phase"] == "RolledBack"
    })
    .await;
    assert_eq!(
        rolled["status"]["activeDigest"],
        module::digest(&echo),
        "{rolled:#}"
    );
    assert!(
        rolled["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("traps")),
        "{rolled:#}"
    );

    // The old module is back at work.
    let before = rolled["status"]["reconciles"].as_u64().unwrap_or(0);
    until(&server, "echo reconciling again", |p| {
        p["status"]["reconciles"].as_u64().unwrap_or(0) > before && p["status"]["traps"] == 0
    })
    .await;

    // Bytes that are no component never replace the running module.
    module::install(&server, "p", PluginKind::Controller, b"not wasm at all")
        .await
        .expect("stored");
    let refused = until(&server, "refused", |p| {
        p["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not running"))
    })
    .await;
    assert_eq!(
        refused["status"]["activeDigest"],
        module::digest(&echo),
        "{refused:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_waits_for_the_crd_it_reconciles() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::server(&dir).await;
    let runtime = Arc::new(Runtime::new(dir.path().join("cache")).expect("runtime"));
    let _supervisor = supervisor::spawn(server.clone(), Manager::new(server.clone()), runtime);
    module::install(
        &server,
        "p",
        PluginKind::Controller,
        &wasm("wasmkube_plugin_staticsite"),
    )
    .await
    .expect("installed");
    until(&server, "refused while staticsites are not served", |p| {
        p["status"]["phase"] == "Failed"
    })
    .await;
    let crd: Value = serde_yaml::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../manifests/demo/staticsite-crd.yaml"
        ))
        .expect("manifest"),
    )
    .expect("yaml");
    common::create(
        &server,
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        None,
        crd,
    )
    .await;
    until(&server, "started once the CRD exists", |p| {
        p["status"]["phase"] == "Running"
    })
    .await;
}
