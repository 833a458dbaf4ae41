//! Plugins as API objects: installed, swapped while running, rolled back when the new module keeps trapping, a broken module refused; one stuck plugin holding up no other; limits and permissions changed without a new module.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::wasm;
use serde_json::{Value, json};
use wasmkube_apiserver::Server;
use wasmkube_apiserver::registry::{Update, WriteOptions, create_object, update_with};
use wasmkube_controller::module::PluginKind;
use wasmkube_controller::{Manager, module, supervisor};
use wasmkube_model::resource::RBAC_GROUP;
use wasmkube_runtime::Runtime;

pub(crate) fn plugins(server: &Server) -> Arc<wasmkube_model::resource::ResourceInfo> {
    server
        .registry()
        .get("wasmkube.dev", "v1alpha1", "plugins")
        .expect("served")
        .clone()
}

pub(crate) async fn plugin_named(server: &Server, name: &str) -> Value {
    server
        .objects
        .must_get(&plugins(server), None, name)
        .await
        .expect("exists")
        .object
}

/// Waits up to 20 s for the Plugin `name` to pass `check`.
pub(crate) async fn until_named(
    server: &Server,
    name: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    for _ in 0..400 {
        let p = plugin_named(server, name).await;
        if check(&p) {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{what}: never happened; plugin {:#}",
        plugin_named(server, name).await
    );
}

pub(crate) async fn until(server: &Server, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    until_named(server, "p", what, check).await
}

/// Installs the module `bytes` as the controller Plugin `name` with `spec` added to its spec.
pub(crate) async fn install_with(server: &Server, name: &str, bytes: &[u8], spec: Value) {
    module::store_chunks(server, bytes).await.expect("chunks");
    let mut object = module::plugin(name, PluginKind::Controller, bytes);
    for (field, value) in spec.as_object().into_iter().flatten() {
        object["spec"][field] = value.clone();
    }
    create_object(
        server,
        &plugins(server),
        None,
        object,
        WriteOptions::INTERNAL,
        &mut Vec::new(),
    )
    .await
    .expect("plugin");
}

/// Merges `spec` into the Plugin `name`'s spec, as `kubectl patch --type=merge` would.
pub(crate) async fn edit_spec(server: &Server, name: &str, spec: Value) {
    let info = plugins(server);
    update_with(
        server,
        &Update::internal(&info, None, name),
        |cur| {
            let mut new = cur.clone();
            for (field, value) in spec.as_object().into_iter().flatten() {
                new["spec"][field] = value.clone();
            }
            Ok(new)
        },
        &mut Vec::new(),
    )
    .await
    .expect("spec edited");
}

/// A server with RBAC on, a config map `default/c`, and the supervisor.
pub(crate) async fn supervised(
    dir: &tempfile::TempDir,
) -> (Arc<Server>, tokio::task::JoinHandle<()>) {
    let server = common::rbac_server(dir).await;
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
    let supervisor = supervisor::spawn(server.clone(), Manager::new(server.clone()), runtime);
    (server, supervisor)
}

pub(crate) fn count(p: &Value, field: &str) -> u64 {
    p["status"][field].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_swap_roll_back_and_refuse_a_broken_module() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, _supervisor) = supervised(&dir).await;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_stuck_plugin_holds_up_no_other() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, _supervisor) = supervised(&dir).await;
    // Stuck in `describe` for up to a minute, its deadline.
    install_with(
        &server,
        "stuck",
        &wasm("test_stuck"),
        json!({"limits": {"callTimeoutMillis": 60_000}}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let echo = wasm("test_echo");
    module::install(&server, "p", PluginKind::Controller, &echo)
        .await
        .expect("installed");
    until(&server, "echo running beside the stuck plugin", |p| {
        p["status"]["phase"] == "Running" && count(p, "reconciles") > 0
    })
    .await;
    // And swapped: the panicking module takes over and is rolled back, still beside it.
    module::install(&server, "p", PluginKind::Controller, &wasm("test_panic"))
        .await
        .expect("installed");
    until(&server, "rolled back beside the stuck plugin", |p| {
        p["status"]["phase"] == "RolledBack"
    })
    .await;
    let stuck = plugin_named(&server, "stuck").await;
    assert_ne!(stuck["status"]["phase"], "Running", "{stuck:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_and_limits_change_without_a_new_module() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, _supervisor) = supervised(&dir).await;
    let echo = wasm("test_echo");
    let read = |verbs: Value| json!({"permissions": [{"group": "", "resources": ["configmaps", "secrets"], "verbs": verbs}]});
    install_with(&server, "p", &echo, read(json!(["get", "list"]))).await;
    let running = until(&server, "echo reconciling", |p| {
        p["status"]["phase"] == "Running" && count(p, "reconciles") > 10
    })
    .await;
    assert_eq!(count(&running, "failures"), 0, "{running:#}");
    // Its ClusterRole holds exactly its permissions, and the Plugin owns it.
    let roles = server
        .registry()
        .get(RBAC_GROUP, "v1", "clusterroles")
        .expect("served")
        .clone();
    let role = server
        .objects
        .get(&roles, None, "wasmkube:plugin:p")
        .await
        .expect("read")
        .expect("the plugin's ClusterRole")
        .object;
    assert_eq!(
        role["rules"],
        json!([{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["configmaps", "secrets"]}])
    );
    assert_eq!(role["metadata"]["ownerReferences"][0]["name"], "p");

    // Revoked: echo's `get` is refused from then on, with no new module.
    edit_spec(&server, "p", read(json!(["list"]))).await;
    let revoked = until(&server, "echo refused", |p| count(p, "failures") > 0).await;
    assert_eq!(revoked["status"]["activeDigest"], module::digest(&echo));

    // Granted again: it works again.
    edit_spec(&server, "p", read(json!(["get", "list"]))).await;
    until(&server, "echo reconciling again", |p| {
        count(p, "reconciles") > 10 && count(p, "failures") == 0
    })
    .await;

    // Permissions that no longer cover what it reconciles: stopped.
    edit_spec(
        &server,
        "p",
        json!({"permissions": [{"group": "", "resources": ["secrets"], "verbs": ["get"]}]}),
    )
    .await;
    until(&server, "echo stopped", |p| {
        p["status"]["phase"] == "Failed"
            && p["status"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("does not permit"))
    })
    .await;

    // A sleeping plugin with a minute to spare is cut off once its limit is lowered.
    install_with(
        &server,
        "sleep",
        &wasm("test_sleep"),
        json!({"limits": {"callTimeoutMillis": 60_000}}),
    )
    .await;
    until_named(&server, "sleep", "sleep running", |p| {
        p["status"]["phase"] == "Running"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(count(&plugin_named(&server, "sleep").await, "traps"), 0);
    edit_spec(
        &server,
        "sleep",
        json!({"limits": {"callTimeoutMillis": 200}}),
    )
    .await;
    let cut = until_named(&server, "sleep", "sleep cut off", |p| count(p, "traps") > 0).await;
    assert!(
        cut["status"]["lastTrap"]
            .as_str()
            .is_some_and(|t| t.contains("deadline")),
        "{cut:#}"
    );
}
