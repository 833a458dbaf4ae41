//! The in-process cluster the controller and scheduler benchmarks share: a fresh server with its native controllers, and writes by kind as the server itself makes them.

use std::sync::Arc;

use anyhow::Context;
use serde_json::{Value, json};
use wasmkube_apiserver::registry::{Update, WriteOptions, create_object, update_with};
use wasmkube_apiserver::{ClusterConfig, Server};
use wasmkube_controller::native;
use wasmkube_model::resource::ResourceInfo;
use wasmkube_store::embedded::EmbeddedStore;

/// The resource of `kind`.
fn served(server: &Server, api_version: &str, kind: &str) -> anyhow::Result<Arc<ResourceInfo>> {
    server
        .registry()
        .by_kind(api_version, kind)
        .cloned()
        .with_context(|| format!("{kind} is served"))
}

/// Creates an object of `kind` as the server itself would.
pub async fn create(
    server: &Server,
    api_version: &str,
    kind: &str,
    ns: Option<&str>,
    obj: Value,
) -> anyhow::Result<()> {
    let info = served(server, api_version, kind)?;
    create_object(
        server,
        &info,
        ns,
        obj,
        WriteOptions::INTERNAL,
        &mut Vec::new(),
    )
    .await?;
    Ok(())
}

/// Changes the object (or its subresource `sub`) with `f`, as the server itself would.
pub async fn modify(
    server: &Server,
    api_version: &str,
    kind: &str,
    ns: Option<&str>,
    name: &str,
    sub: Option<&str>,
    f: impl Fn(&mut Value),
) -> anyhow::Result<()> {
    let info = served(server, api_version, kind)?;
    let update = Update {
        subresource: sub,
        ..Update::internal(&info, ns, name)
    };
    update_with(
        server,
        &update,
        |cur| {
            let mut new = cur.clone();
            f(&mut new);
            Ok(new)
        },
        &mut Vec::new(),
    )
    .await?;
    Ok(())
}

/// An apiserver with its native controllers on a fresh embedded store in a temporary
/// directory, with the `default` namespace, and a pod network with room for every hollow node.
pub async fn fresh_server() -> anyhow::Result<(tempfile::TempDir, Arc<Server>)> {
    let dir = tempfile::Builder::new()
        .prefix("wasmkube-bench-")
        .tempdir()?;
    let store = EmbeddedStore::open(&dir.path().join("store.redb"))?;
    let cluster = ClusterConfig {
        cluster_cidr: "10.0.0.0/8".parse()?,
        ..ClusterConfig::default()
    };
    let server = Server::with_config(store, None, cluster).await?;
    native::spawn(server.clone());
    let namespace = json!({"metadata": {"name": "default"}});
    create(&server, "v1", "Namespace", None, namespace).await?;
    Ok((dir, server))
}
