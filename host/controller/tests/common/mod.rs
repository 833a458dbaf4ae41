//! What the host tests share: the built plugins, and a server on a fresh embedded store.

// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};
use wasmkube_apiserver::handlers::{WriteOptions, create_object};
use wasmkube_apiserver::{Server, controllers};
use wasmkube_controller::Manager;
use wasmkube_controller::plugin::{self, RunningPlugin};
use wasmkube_runtime::{Limits, Runtime};
use wasmkube_store::embedded::EmbeddedStore;

/// The bytes of a plugin built by `scripts/build-plugins.sh` (`test_echo`, `wasmkube_plugin_job`, …).
pub fn wasm(name: &str) -> Vec<u8> {
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

/// A server on a fresh embedded store in `dir`, with the host controllers (garbage collection,
/// namespaces) running and the `default` namespace.
pub async fn server(dir: &tempfile::TempDir) -> Arc<Server> {
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).expect("store opens");
    let server = Server::new(store, None).await.expect("server starts");
    controllers::spawn(server.clone());
    create(
        &server,
        "v1",
        "Namespace",
        None,
        json!({"metadata": {"name": "default"}}),
    )
    .await;
    server
}

/// Creates an object as the server itself would (no field manager, no dry run).
pub async fn create(
    server: &Server,
    api_version: &str,
    kind: &str,
    ns: Option<&str>,
    obj: Value,
) -> Value {
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
    .expect("created")
}

/// A server with some of the built plugins running in a controller manager.
pub struct Cluster {
    pub server: Arc<Server>,
    _manager: Arc<Manager>,
    _plugins: Vec<RunningPlugin>,
    _dir: tempfile::TempDir,
}

/// A [`server`] running the plugins `names` (`wasmkube_plugin_replicaset`, …).
pub async fn with_plugins(names: &[&str]) -> Cluster {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = server(&dir).await;
    let manager = Manager::new(server.clone());
    let runtime = Runtime::new(dir.path().join("cache")).expect("runtime");
    let mut plugins = Vec::new();
    for name in names {
        let module = runtime.load(&wasm(name)).expect("module loads");
        plugins.push(
            plugin::start(&server, &manager, module, Limits::default(), 2)
                .await
                .expect("plugin starts"),
        );
    }
    Cluster {
        server,
        _manager: manager,
        _plugins: plugins,
        _dir: dir,
    }
}
