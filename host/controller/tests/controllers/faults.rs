//! Fault plugins installed beside the ReplicaSet controller: each is contained, reported in its status, and the ReplicaSet controller keeps working.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{create, wasm};
use serde_json::{Value, json};
use wasmkube_apiserver::Server;
use wasmkube_controller::module::PluginKind;
use wasmkube_controller::{Manager, module, supervisor};
use wasmkube_runtime::Runtime;

async fn get(
    server: &Server,
    group: &str,
    version: &str,
    plural: &str,
    ns: Option<&str>,
    name: &str,
) -> Option<Value> {
    let info = server
        .registry()
        .get(group, version, plural)
        .expect("served")
        .clone();
    server
        .objects
        .get(&info, ns, name)
        .await
        .expect("reads")
        .map(|s| s.object)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_contained_and_the_builtins_keep_working() {
    let dir = tempfile::tempdir().expect("temp dir");
    // RBAC on: `forbidden`'s role (what its registration names) lacks secrets.
    let server = common::rbac_server(&dir).await;
    // Every fault plugin reconciles config maps; this one gives them work.
    create(
        &server,
        "v1",
        "ConfigMap",
        Some("default"),
        json!({"metadata": {"name": "bait"}}),
    )
    .await;
    let runtime = Arc::new(Runtime::new(dir.path().join("cache")).expect("runtime"));
    let _supervisor = supervisor::spawn(server.clone(), Manager::new(server.clone()), runtime);
    module::install(
        &server,
        "replicaset",
        PluginKind::Controller,
        &wasm("wasmkube_plugin_replicaset"),
    )
    .await
    .expect("installed");
    for fault in ["loop", "membomb", "panic", "forbidden"] {
        module::install(
            &server,
            fault,
            PluginKind::Controller,
            &wasm(&format!("test_{fault}")),
        )
        .await
        .expect("installed");
    }
    module::install(
        &server,
        "garbage",
        PluginKind::Controller,
        b"\0asm but not really",
    )
    .await
    .expect("stored");

    let rs = json!({"metadata": {"name": "web"}, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    create(&server, "apps/v1", "ReplicaSet", Some("default"), rs).await;

    let mut last = Value::Null;
    for _ in 0..300 {
        let plugin =
            |name: &'static str| get(&server, "wasmkube.dev", "v1alpha1", "plugins", None, name);
        let (lp, mb, pa, fb, gb) = (
            plugin("loop").await,
            plugin("membomb").await,
            plugin("panic").await,
            plugin("forbidden").await,
            plugin("garbage").await,
        );
        let rs = get(&server, "apps", "v1", "replicasets", Some("default"), "web").await;
        let traps = |p: &Option<Value>| {
            p.as_ref()
                .and_then(|p| p["status"]["traps"].as_u64())
                .unwrap_or(0)
        };
        let failures = |p: &Option<Value>| {
            p.as_ref()
                .and_then(|p| p["status"]["failures"].as_u64())
                .unwrap_or(0)
        };
        let done = traps(&lp) > 0
            && traps(&mb) > 0
            && traps(&pa) > 0
            && failures(&fb) > 0
            && gb
                .as_ref()
                .is_some_and(|g| g["status"]["phase"] == "Failed")
            && rs.as_ref().is_some_and(|r| r["status"]["replicas"] == 2);
        last = json!({"loop": lp.map(|p| p["status"].clone()), "membomb": mb.map(|p| p["status"].clone()), "panic": pa.map(|p| p["status"].clone()),
            "forbidden": fb.map(|p| p["status"].clone()), "garbage": gb.map(|p| p["status"].clone()), "replicaset": rs.map(|r| r["status"].clone())});
        if done {
            assert!(
                last["loop"]["lastTrap"]
                    .as_str()
                    .is_some_and(|t| t.contains("deadline")),
                "{last:#}"
            );
            assert!(
                last["membomb"]["lastTrap"]
                    .as_str()
                    .is_some_and(|t| t.contains("memory")),
                "{last:#}"
            );
            assert!(
                last["panic"]["lastTrap"]
                    .as_str()
                    .is_some_and(|t| t.contains("panicked")),
                "{last:#}"
            );
            assert!(
                get(&server, "", "v1", "secrets", Some("default"), "stolen")
                    .await
                    .is_none(),
                "the undeclared write was refused"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("faults were not all contained and reported: {last:#}");
}
