//! What the host tests share: the built plugins, and a server on a fresh embedded store.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use wasmkube_apiserver::registry::{
    DeleteOptions, Update, WriteOptions, create_object, delete_object, update_with,
};
use wasmkube_apiserver::{Server, node_agent};
use wasmkube_controller::plugin::{self, RunningPlugin};
use wasmkube_controller::{Manager, native};
use wasmkube_model::names::LEASE_NAMESPACE;
use wasmkube_model::resource::ResourceInfo;
use wasmkube_runtime::Runtime;
use wasmkube_store::embedded::EmbeddedStore;

/// The bytes of a plugin built by `scripts/build-plugins.sh` (`test_echo`, `wasmkube_plugin_job`, …).
pub fn wasm(name: &str) -> Vec<u8> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let path = target
        .join("plugins/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run scripts/build-plugins.sh first",
            path.display()
        )
    })
}

/// A server on a fresh embedded store in `dir`, with the host controllers (garbage collection,
/// namespaces, nodes) running and the `default` and `kube-node-lease` namespaces; without RBAC
/// (every plugin call allowed).
pub async fn server(dir: &tempfile::TempDir) -> Arc<Server> {
    open(dir, None).await
}

/// A [`server`] with RBAC on (and `kube-system`, where plugins' ServiceAccounts go): a plugin
/// may do what its ClusterRole lets it, nothing is bound by default.
pub async fn rbac_server(dir: &tempfile::TempDir) -> Arc<Server> {
    open(dir, Some("t".repeat(32))).await
}

async fn open(dir: &tempfile::TempDir, token: Option<String>) -> Arc<Server> {
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).expect("store opens");
    let server = Server::new(store, token.clone())
        .await
        .expect("server starts");
    native::spawn(server.clone());
    let system = token.is_some().then_some("kube-system");
    for ns in ["default", LEASE_NAMESPACE].into_iter().chain(system) {
        create(
            &server,
            "v1",
            "Namespace",
            None,
            json!({"metadata": {"name": ns}}),
        )
        .await;
    }
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
    pub plugins: Vec<RunningPlugin>,
    node: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(node) = &self.node {
            node.abort();
        }
    }
}

/// A [`server`] running the plugins `names` (`wasmkube_plugin_replicaset`, …).
pub async fn with_plugins(names: &[&str]) -> Cluster {
    with_config(names, &plugin::Config::default()).await
}

/// A [`server`] running the plugins `names`, each with `config`.
pub async fn with_config(names: &[&str], config: &plugin::Config) -> Cluster {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = server(&dir).await;
    let manager = Manager::new(server.clone());
    let runtime = Runtime::new(dir.path().join("cache")).expect("runtime");
    let mut plugins = Vec::new();
    for name in names {
        let module = runtime.load(&wasm(name)).expect("module loads");
        plugins.push(
            plugin::start(
                &server,
                &manager,
                &json!({"metadata": {"name": name}}),
                module,
                config,
            )
            .await
            .expect("plugin starts"),
        );
    }
    Cluster {
        server,
        _manager: manager,
        plugins,
        node: None,
        _dir: dir,
    }
}

/// What a node reports for a pod it runs: Running and Ready.
fn running() -> Value {
    json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True",
        "lastTransitionTime": "2020-01-01T00:00:00Z"}]})
}

/// Marks every live pod in `default` that is not Running as Running and Ready, as a node
/// would; returns how many it marked. A pod deleted meanwhile is skipped.
async fn run_pods(server: &Server) -> usize {
    let info = server
        .registry()
        .by_kind("v1", "Pod")
        .expect("served")
        .clone();
    let page = server
        .objects
        .list(&info, Some("default"), None, None, None, |p| {
            p.pointer("/metadata/deletionTimestamp").is_none() && p["status"]["phase"] != "Running"
        })
        .await
        .expect("lists");
    let mut marked = 0;
    for pod in page.items {
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let update = Update {
            subresource: Some("status"),
            ..Update::internal(&info, Some("default"), name)
        };
        let written = update_with(
            server,
            &update,
            |cur| {
                let mut new = cur.clone();
                new["status"] = running();
                Ok(new)
            },
            &mut Vec::new(),
        )
        .await;
        marked += usize::from(written.is_ok());
    }
    marked
}

/// Finishes the deletion of the pods in `default` being deleted on a node, as their node does
/// once it has stopped them.
async fn finish_deletions(server: &Server) {
    let info = server
        .registry()
        .by_kind("v1", "Pod")
        .expect("served")
        .clone();
    let page = server
        .objects
        .list(&info, Some("default"), None, None, None, |p| {
            p.pointer("/metadata/deletionTimestamp").is_some()
                && p["spec"]["nodeName"]
                    .as_str()
                    .is_some_and(|n| !n.is_empty())
        })
        .await
        .expect("lists");
    for pod in page.items {
        // A pod gone meanwhile is no failure; anything else shows in the test's checks.
        let _ = node_agent::finish_deletion(server, &pod).await;
    }
}

/// What the nodes do for the pods, once: [`run_pods`], then [`finish_deletions`].
async fn act_as_nodes(server: &Server) -> usize {
    let marked = run_pods(server).await;
    finish_deletions(server).await;
    marked
}

/// Renews the Lease of every Node, as their node agents do, so they stay Ready.
async fn renew_leases(server: &Server) {
    let info = server
        .registry()
        .by_kind("v1", "Node")
        .expect("served")
        .clone();
    let page = server
        .objects
        .list(&info, None, None, None, None, |_| true)
        .await
        .expect("lists");
    for node in page.items {
        let name = node["metadata"]["name"].as_str().unwrap_or_default();
        let _ = node_agent::renew_lease(server, name).await;
    }
}

/// Reads and writes as the server itself would, in the `default` namespace for namespaced kinds.
impl Cluster {
    pub fn info(&self, api_version: &str, kind: &str) -> Arc<ResourceInfo> {
        self.server
            .registry()
            .by_kind(api_version, kind)
            .expect("served")
            .clone()
    }

    fn namespace(info: &ResourceInfo) -> Option<&'static str> {
        info.namespaced.then_some("default")
    }

    pub async fn create(&self, api_version: &str, kind: &str, obj: Value) -> Value {
        let info = self.info(api_version, kind);
        create_object(
            &self.server,
            &info,
            Self::namespace(&info),
            obj,
            WriteOptions::INTERNAL,
            &mut Vec::new(),
        )
        .await
        .expect("created")
    }

    /// The live pods.
    pub async fn pods(&self) -> Vec<Value> {
        self.list("v1", "Pod").await
    }

    /// The live (not terminating) objects of a kind.
    pub async fn list(&self, api_version: &str, kind: &str) -> Vec<Value> {
        let info = self.info(api_version, kind);
        let page = self
            .server
            .objects
            .list(&info, Self::namespace(&info), None, None, None, |o| {
                o.pointer("/metadata/deletionTimestamp").is_none()
            })
            .await
            .expect("lists");
        page.items
    }

    /// `field` of each live pod, sorted: a pod's `"/spec/nodeName"`, `"/metadata/name"`, ...
    /// (`-` where unset).
    pub async fn pod_fields(&self, field: &str) -> Vec<String> {
        let mut values: Vec<String> = self
            .list("v1", "Pod")
            .await
            .iter()
            .map(|p| {
                p.pointer(field)
                    .and_then(Value::as_str)
                    .unwrap_or("-")
                    .to_string()
            })
            .collect();
        values.sort();
        values
    }

    pub async fn get(&self, api_version: &str, kind: &str, name: &str) -> Value {
        self.find(api_version, kind, name).await.expect("exists")
    }

    pub async fn find(&self, api_version: &str, kind: &str, name: &str) -> Option<Value> {
        let info = self.info(api_version, kind);
        let found = self
            .server
            .objects
            .get(&info, Self::namespace(&info), name)
            .await
            .expect("reads");
        found.map(|stored| stored.object)
    }

    /// Changes an object (or, with `subresource: Some("status")`, its status) with `change`.
    pub async fn update(
        &self,
        api_version: &str,
        kind: &str,
        name: &str,
        subresource: Option<&'static str>,
        change: impl Fn(&mut Value),
    ) {
        let info = self.info(api_version, kind);
        let update = Update {
            subresource,
            ..Update::internal(&info, Self::namespace(&info), name)
        };
        update_with(
            &self.server,
            &update,
            |cur| {
                let mut new = cur.clone();
                change(&mut new);
                Ok(new)
            },
            &mut Vec::new(),
        )
        .await
        .expect("updated");
    }

    /// Replaces an object's status, as a kubelet or another controller would.
    pub async fn set_status(&self, api_version: &str, kind: &str, name: &str, status: Value) {
        self.update(api_version, kind, name, Some("status"), |obj| {
            obj["status"] = status.clone();
        })
        .await;
    }

    pub async fn delete(&self, api_version: &str, kind: &str, name: &str) {
        let info = self.info(api_version, kind);
        delete_object(
            &self.server,
            &info,
            Self::namespace(&info),
            name,
            &DeleteOptions::background(),
        )
        .await
        .expect("deleted");
    }

    /// What the nodes do, once: marks the pods that are not Running yet as Running and Ready
    /// (returns how many) and finishes the deletion of the pods being deleted on a node.
    pub async fn run_pods(&self) -> usize {
        act_as_nodes(&self.server).await
    }

    /// Finishes the deletion of the pods being deleted on a node, once, as their node would.
    pub async fn finish_deletions(&self) {
        finish_deletions(&self.server).await;
    }

    /// A simulated node (standing for every node) from now on: pods are marked Running and
    /// Ready within 20 ms, the deletion of pods being deleted on a node is finished, and every
    /// Node's Lease is renewed every 5 s.
    pub fn start_node(&mut self) {
        let server = self.server.clone();
        self.node = Some(tokio::spawn(async move {
            let mut renewed: Option<tokio::time::Instant> = None;
            loop {
                act_as_nodes(&server).await;
                if renewed.is_none_or(|at| at.elapsed() >= Duration::from_secs(5)) {
                    renew_leases(&server).await;
                    renewed = Some(tokio::time::Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }

    /// Polls `check` every 20 ms for up to 15 s; panics naming `what`, with the pods.
    pub async fn until(&self, what: &str, check: impl AsyncFn(&Cluster) -> bool) {
        for _ in 0..750 {
            if check(self).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "{what}: never happened; pods {:#?}",
            self.list("v1", "Pod").await
        );
    }
}

/// The Events stored in `default`.
pub async fn events_in_default(server: &Server) -> Vec<Value> {
    let info = server
        .registry()
        .by_kind("v1", "Event")
        .expect("served")
        .clone();
    server
        .objects
        .list(&info, Some("default"), None, None, None, |_| true)
        .await
        .expect("lists")
        .items
}
