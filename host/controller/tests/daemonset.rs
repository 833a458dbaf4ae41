//! The DaemonSet controller as a Wasm component in the real host: nodes joining, tainted and leaving.

mod common;

use std::time::Duration;

use common::Cluster;
use serde_json::{Value, json};
use wasmkube_apiserver::handlers::{DeleteOptions, WriteOptions, create_object, delete_object};

async fn cluster() -> Cluster {
    common::with_plugins(&["wasmkube_plugin_daemonset"]).await
}

impl Cluster {
    async fn create(&self, api_version: &str, kind: &str, namespace: Option<&str>, obj: Value) {
        let info = self
            .server
            .registry()
            .by_kind(api_version, kind)
            .expect("served")
            .clone();
        create_object(
            &self.server,
            &info,
            namespace,
            obj,
            WriteOptions::INTERNAL,
            &mut Vec::new(),
        )
        .await
        .expect("created");
    }

    async fn add_node(&self, name: &str, taints: Value) {
        let node = json!({"metadata": {"name": name}, "spec": {"taints": taints}});
        self.create("v1", "Node", None, node).await;
    }

    /// The nodes of the live pods, sorted.
    async fn pod_nodes(&self) -> Vec<String> {
        let info = self
            .server
            .registry()
            .by_kind("v1", "Pod")
            .expect("served")
            .clone();
        let page = self
            .server
            .objects
            .list(&info, Some("default"), None, None, None, |p| {
                p.pointer("/metadata/deletionTimestamp").is_none()
            })
            .await
            .expect("lists");
        let mut nodes: Vec<String> = page
            .items
            .iter()
            .map(|p| p["spec"]["nodeName"].as_str().unwrap_or("-").to_string())
            .collect();
        nodes.sort();
        nodes
    }

    async fn daemonset(&self) -> Value {
        let info = self
            .server
            .registry()
            .by_kind("apps/v1", "DaemonSet")
            .expect("served")
            .clone();
        self.server
            .objects
            .must_get(&info, Some("default"), "agent")
            .await
            .expect("exists")
            .object
    }

    /// Waits up to 15 s: node changes are picked up by the controller's 10 s resync.
    async fn until(&self, what: &str, check: impl AsyncFn(&Cluster) -> bool) {
        for _ in 0..750 {
            if check(self).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "{what}: never happened; pods on {:?}\ndaemonset {:#}",
            self.pod_nodes().await,
            self.daemonset().await
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_nodes_and_taints() {
    let c = cluster().await;
    c.add_node("n1", json!([])).await;
    c.add_node("n2", json!([])).await;
    c.add_node("n3", json!([{"key": "dedicated", "effect": "NoSchedule"}]))
        .await;
    let ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"}, "spec": {
        "selector": {"matchLabels": {"app": "agent"}},
        "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
    c.create("apps/v1", "DaemonSet", Some("default"), ds).await;
    c.until("pods on n1 and n2", async |c| {
        c.pod_nodes().await == ["n1", "n2"]
    })
    .await;
    c.until("status", async |c| {
        let status = &c.daemonset().await["status"];
        status["desiredNumberScheduled"] == 2 && status["currentNumberScheduled"] == 2
    })
    .await;

    c.add_node("n4", json!([])).await;
    c.until("a pod on the new node", async |c| {
        c.pod_nodes().await == ["n1", "n2", "n4"]
    })
    .await;

    let info = c
        .server
        .registry()
        .by_kind("v1", "Node")
        .expect("served")
        .clone();
    delete_object(&c.server, &info, None, "n1", &DeleteOptions::background())
        .await
        .expect("deleted");
    c.until("the pod of the removed node gone", async |c| {
        c.pod_nodes().await == ["n2", "n4"]
    })
    .await;
}
