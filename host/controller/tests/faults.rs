//! Fault plugins installed beside the ReplicaSet controller: each is contained, reported in its status, and the ReplicaSet controller keeps working.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use wasmkube_apiserver::handlers::{WriteOptions, create_object};
use wasmkube_apiserver::{Server, controllers};
use wasmkube_controller::{Manager, module, supervisor};
use wasmkube_runtime::Runtime;
use wasmkube_store::embedded::EmbeddedStore;

fn wasm(name: &str) -> Vec<u8> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let path = target
        .join("wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run scripts/build-plugins.sh first",
            path.display()
        )
    })
}

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

async fn create(server: &Server, api_version: &str, kind: &str, ns: Option<&str>, obj: Value) {
    let info = server
        .registry()
        .by_kind(api_version, kind)
        .expect("served")
        .clone();
    create_object(
        server,
        &info,
        ns,
        obj,
        WriteOptions::INTERNAL,
        &mut Vec::new(),
    )
    .await
    .expect("created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_contained_and_the_builtins_keep_working() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).expect("store opens");
    let server: Arc<Server> = Server::new(store, None).await.expect("server starts");
    controllers::spawn(server.clone());
    create(
        &server,
        "v1",
        "Namespace",
        None,
        json!({"metadata": {"name": "default"}}),
    )
    .await;
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
    module::install(&server, "replicaset", &wasm("wasmkube_plugin_replicaset"))
        .await
        .expect("installed");
    for fault in ["loop", "membomb", "panic", "forbidden"] {
        module::install(&server, fault, &wasm(&format!("test_{fault}")))
            .await
            .expect("installed");
    }
    module::install(&server, "garbage", b"\0asm but not really")
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
