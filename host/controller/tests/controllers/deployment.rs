//! The Deployment and ReplicaSet controllers as Wasm components in the real host, with a simulated node.

use crate::common;

use common::Cluster;
use serde_json::{Value, json};

const REVISION: &str = "deployment.kubernetes.io/revision";

/// The two controllers, and a simulated node running every pod.
async fn cluster() -> Cluster {
    let mut c =
        common::with_plugins(&["wasmkube_plugin_replicaset", "wasmkube_plugin_deployment"]).await;
    c.start_node();
    c
}

fn image(obj: &Value, template: &str) -> String {
    obj.pointer(&format!("{template}/containers/0/image"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn revision(obj: &Value) -> Option<&str> {
    obj["metadata"]["annotations"][REVISION].as_str()
}

impl Cluster {
    async fn replica_sets(&self) -> Vec<Value> {
        self.list("apps/v1", "ReplicaSet").await
    }

    async fn deployment(&self) -> Value {
        let mut all = self.list("apps/v1", "Deployment").await;
        all.pop().unwrap_or_default()
    }

    /// The ReplicaSet at `revision`.
    async fn revision(&self, revision_: &str) -> Option<Value> {
        let rss = self.replica_sets().await;
        rss.into_iter().find(|rs| revision(rs) == Some(revision_))
    }

    /// What `kubectl rollout status` waits for, plus every pod ready on `image`.
    async fn rolled_out(&self, image_: &str) -> bool {
        let d = self.deployment().await;
        let s = &d["status"];
        let replicas = &d["spec"]["replicas"];
        let pods = self.pods().await;
        s["observedGeneration"].as_i64() >= d["metadata"]["generation"].as_i64()
            && s["updatedReplicas"] == *replicas
            && s["replicas"] == *replicas
            && s["availableReplicas"] == *replicas
            && pods.len() == 3
            && pods
                .iter()
                .all(|p| image(p, "/spec") == image_ && p["status"]["phase"] == "Running")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolls_out_rolls_back_and_collects() {
    let c = cluster().await;
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 3,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}}});
    c.create("apps/v1", "Deployment", d).await;
    c.until("three ready pods, three available", async |c| {
        c.rolled_out("busybox:1").await
    })
    .await;
    let first = c.revision("1").await.expect("revision 1");
    let first_name = first["metadata"]["name"]
        .as_str()
        .expect("named")
        .to_string();
    let hash = first["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .expect("hash label");
    assert_eq!(first_name, format!("web-{hash}"));
    assert_eq!(
        first["metadata"]["ownerReferences"][0]["kind"],
        "Deployment"
    );
    let d = c.deployment().await;
    assert_eq!(revision(&d), Some("1"));
    let conditions = d["status"]["conditions"].as_array().expect("conditions");
    let reason = |t: &str| {
        conditions
            .iter()
            .find(|c| c["type"] == t)
            .map(|c| c["reason"].clone())
    };
    assert_eq!(reason("Available"), Some(json!("MinimumReplicasAvailable")));
    assert_eq!(reason("Progressing"), Some(json!("NewReplicaSetAvailable")));

    c.update("apps/v1", "Deployment", "web", None, |d| {
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("busybox:2")
    })
    .await;
    c.until("all pods on busybox:2", async |c| {
        c.rolled_out("busybox:2").await
    })
    .await;
    c.until("old replica set at zero", async |c| {
        c.revision("1")
            .await
            .is_some_and(|rs| rs["spec"]["replicas"] == 0 && rs["status"]["replicas"] == 0)
    })
    .await;
    let second = c.revision("2").await.expect("revision 2");
    assert_eq!(image(&second, "/spec/template/spec"), "busybox:2");
    assert_eq!(revision(&c.deployment().await), Some("2"));

    // `kubectl rollout undo`: the old ReplicaSet's template, without its hash label.
    let mut template = first["spec"]["template"].clone();
    if let Some(labels) = template["metadata"]["labels"].as_object_mut() {
        labels.remove("pod-template-hash");
    }
    c.update("apps/v1", "Deployment", "web", None, |d| {
        d["spec"]["template"] = template.clone()
    })
    .await;
    c.until("back on busybox:1", async |c| {
        c.rolled_out("busybox:1").await
    })
    .await;
    c.until("the old replica set is revision 3", async |c| {
        c.revision("3")
            .await
            .is_some_and(|rs| rs["metadata"]["name"] == first_name.as_str())
            && revision(&c.deployment().await) == Some("3")
    })
    .await;
    assert_eq!(c.replica_sets().await.len(), 2, "no third replica set");

    c.delete("apps/v1", "Deployment", "web").await;
    c.until("replica sets and pods collected", async |c| {
        c.replica_sets().await.is_empty() && c.pods().await.is_empty()
    })
    .await;
}
