//! What the scheduler's host tests share: a server on a fresh store, creating objects, and the
//! built plugins.

// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use wasmkube_apiserver::registry::{WriteOptions, create_object};
use wasmkube_apiserver::{ClusterConfig, Server};
use wasmkube_controller::native;
use wasmkube_store::embedded::EmbeddedStore;

/// A server on a fresh embedded store in `dir`, with its native controllers and the `default`
/// namespace. The tests' nodes are static (nothing renews their Leases): a node grace period
/// longer than any test keeps them from being marked unreachable and tainted.
pub async fn server(dir: &tempfile::TempDir) -> Arc<Server> {
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).expect("store");
    let cluster = ClusterConfig {
        node_monitor_grace_period: Duration::from_secs(3600),
        ..ClusterConfig::default()
    };
    let server = Server::with_config(store, None, cluster)
        .await
        .expect("server");
    native::spawn(server.clone());
    create(
        &server,
        "v1",
        "Namespace",
        json!({"metadata": {"name": "default"}}),
    )
    .await;
    server
}

/// Creates an object as the server itself would, in `default` for namespaced kinds.
pub async fn create(server: &Server, api_version: &str, kind: &str, obj: Value) {
    let info = server
        .registry()
        .by_kind(api_version, kind)
        .expect("served")
        .clone();
    let ns = info.namespaced.then_some("default");
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

/// The bytes of a plugin built by `scripts/build-plugins.sh`.
pub fn wasm(name: &str) -> Vec<u8> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let path = target.join(format!("plugins/wasm32-wasip2/release/{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run scripts/build-plugins.sh first",
            path.display()
        )
    })
}
