//! The DaemonSet controller as a Wasm component in the real host: nodes joining, tainted and
//! leaving, and a rolling update kept in ControllerRevisions.

use crate::common;

use common::Cluster;
use serde_json::{Value, json};

async fn cluster() -> Cluster {
    common::with_plugins(&["wasmkube_plugin_daemonset"]).await
}

impl Cluster {
    async fn add_node(&self, name: &str, taints: Value) {
        let node = json!({"metadata": {"name": name}, "spec": {"taints": taints}});
        self.create("v1", "Node", node).await;
    }

    /// (revision, name) of the DaemonSet's ControllerRevisions, oldest first.
    async fn revisions(&self) -> Vec<(i64, String)> {
        let mut revisions: Vec<(i64, String)> = self
            .list("apps/v1", "ControllerRevision")
            .await
            .iter()
            .map(|r| {
                let name = r["metadata"]["name"].as_str().unwrap_or_default();
                (r["revision"].as_i64().unwrap_or(0), name.to_string())
            })
            .collect();
        revisions.sort();
        revisions
    }
}

fn daemonset(image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"}, "spec": {
        "selector": {"matchLabels": {"app": "agent"}},
        "revisionHistoryLimit": 1,
        "template": {"metadata": {"labels": {"app": "agent"}},
            "spec": {"containers": [{"name": "c", "image": image}]}}}})
}

// Nodes enqueue the DaemonSet when they change: every wait here is well under the 15 s a
// periodic resync would need.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_nodes_and_taints() {
    let c = cluster().await;
    c.add_node("n1", json!([])).await;
    c.add_node("n2", json!([])).await;
    c.add_node("n3", json!([{"key": "dedicated", "effect": "NoSchedule"}]))
        .await;
    c.create("apps/v1", "DaemonSet", daemonset("busybox")).await;
    c.until("pods on n1 and n2", async |c| {
        c.pod_fields("/spec/nodeName").await == ["n1", "n2"]
    })
    .await;
    c.until("status", async |c| {
        let status = &c.get("apps/v1", "DaemonSet", "agent").await["status"];
        status["desiredNumberScheduled"] == 2 && status["currentNumberScheduled"] == 2
    })
    .await;

    let started = std::time::Instant::now();
    c.add_node("n4", json!([])).await;
    c.until("a pod on the new node", async |c| {
        c.pod_fields("/spec/nodeName").await == ["n1", "n2", "n4"]
    })
    .await;
    c.update("v1", "Node", "n3", None, |node| {
        node["spec"]["taints"] = json!([])
    })
    .await;
    c.until("a pod on the untainted node", async |c| {
        c.pod_fields("/spec/nodeName").await == ["n1", "n2", "n3", "n4"]
    })
    .await;
    c.delete("v1", "Node", "n1").await;
    c.until("the pod of the removed node gone", async |c| {
        c.pod_fields("/spec/nodeName").await == ["n2", "n3", "n4"]
    })
    .await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "node changes are followed by events, not a resync: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolls_out_a_new_template_through_controller_revisions() {
    let c = cluster().await;
    for node in ["n1", "n2", "n3"] {
        c.add_node(node, json!([])).await;
    }
    c.create("apps/v1", "DaemonSet", daemonset("busybox:1"))
        .await;
    c.until("three pods", async |c| {
        c.pod_fields("/spec/nodeName").await.len() == 3
    })
    .await;
    let first = c.revisions().await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].0, 1);

    for (revision, image) in [(2, "busybox:2"), (3, "busybox:3")] {
        c.update("apps/v1", "DaemonSet", "agent", None, |ds| {
            ds["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
        })
        .await;
        // maxUnavailable 1: the node stands in for the kubelet until every pod runs `image`.
        c.until(&format!("every pod on {image}"), async |c| {
            c.run_pods().await;
            c.pod_fields("/spec/containers/0/image").await == [image; 3]
        })
        .await;
        let revisions = c.revisions().await;
        assert_eq!(revisions.last().map(|r| r.0), Some(revision));
    }
    // revisionHistoryLimit 1: the revision of busybox:1 is pruned once no pod runs it.
    c.until("history pruned to one old revision", async |c| {
        c.revisions().await.len() == 2
    })
    .await;
    let revisions = c.revisions().await;
    assert_eq!(revisions.iter().map(|r| r.0).collect::<Vec<_>>(), [2, 3]);
    let pod = &c.list("v1", "Pod").await[0];
    let hash = pod["metadata"]["labels"]["controller-revision-hash"]
        .as_str()
        .expect("labelled");
    assert_eq!(revisions[1].1, format!("agent-{hash}"));
}
