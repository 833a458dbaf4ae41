//! The ReplicaSet controller as a Wasm component in the real host: apiserver, store, informers, runtime.

mod common;

use std::time::Duration;

use common::Cluster;
use serde_json::{Value, json};
use wasmkube_apiserver::handlers::{
    DeleteOptions, Update, WriteOptions, create_object, delete_object, update_with,
};

async fn cluster() -> Cluster {
    common::with_plugins(&["wasmkube_plugin_replicaset"]).await
}

impl Cluster {
    async fn pods(&self) -> Vec<Value> {
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
        page.items
    }

    async fn replicaset(&self) -> Value {
        let info = self
            .server
            .registry()
            .by_kind("apps/v1", "ReplicaSet")
            .expect("served")
            .clone();
        self.server
            .objects
            .must_get(&info, Some("default"), "web")
            .await
            .expect("exists")
            .object
    }

    async fn until(&self, what: &str, check: impl AsyncFn(&Cluster) -> bool) {
        for _ in 0..300 {
            if check(self).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "{what}: never happened; pods {:#?}\nreplicaset {:#}",
            self.pods().await,
            self.replicaset().await
        );
    }

    async fn set_replicas(&self, n: i64) {
        let info = self
            .server
            .registry()
            .by_kind("apps/v1", "ReplicaSet")
            .expect("served")
            .clone();
        let update = Update::internal(&info, Some("default"), "web");
        update_with(
            &self.server,
            &update,
            |cur| {
                let mut new = cur.clone();
                new["spec"]["replicas"] = json!(n);
                Ok(new)
            },
            &mut Vec::new(),
        )
        .await
        .expect("scaled");
    }

    /// What a node would report: the pod running and ready.
    async fn make_ready(&self, name: &str) {
        let info = self
            .server
            .registry()
            .by_kind("v1", "Pod")
            .expect("served")
            .clone();
        let update = Update {
            subresource: Some("status"),
            ..Update::internal(&info, Some("default"), name)
        };
        update_with(&self.server, &update, |cur| {
            let mut new = cur.clone();
            new["status"] = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}]});
            Ok(new)
        }, &mut Vec::new()).await.expect("status written");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_replicas_adopts_counts_and_scales() {
    let c = cluster().await;
    let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"}, "spec": {"replicas": 3,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
    let info = c
        .server
        .registry()
        .by_kind("apps/v1", "ReplicaSet")
        .expect("served")
        .clone();
    create_object(
        &c.server,
        &info,
        Some("default"),
        rs,
        WriteOptions::INTERNAL,
        &mut Vec::new(),
    )
    .await
    .expect("created");
    c.until("three pods", async |c| c.pods().await.len() == 3)
        .await;
    for pod in c.pods().await {
        let owner = &pod["metadata"]["ownerReferences"][0];
        assert_eq!(
            (owner["kind"].as_str(), owner["controller"].as_bool()),
            (Some("ReplicaSet"), Some(true))
        );
        assert!(
            pod["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("web-"))
        );
    }
    c.until("status.replicas = 3", async |c| {
        c.replicaset().await["status"]["replicas"] == 3
    })
    .await;

    let names: Vec<String> = c
        .pods()
        .await
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
        .collect();
    c.make_ready(&names[0]).await;
    c.make_ready(&names[1]).await;
    c.until("two ready", async |c| {
        c.replicaset().await["status"]["readyReplicas"] == 2
    })
    .await;

    let pod_info = c
        .server
        .registry()
        .by_kind("v1", "Pod")
        .expect("served")
        .clone();
    delete_object(
        &c.server,
        &pod_info,
        Some("default"),
        &names[2],
        &DeleteOptions::background(),
    )
    .await
    .expect("deleted");
    c.until("a replacement", async |c| {
        let pods = c.pods().await;
        pods.len() == 3
            && !pods
                .iter()
                .any(|p| p["metadata"]["name"] == names[2].as_str())
    })
    .await;

    c.set_replicas(1).await;
    c.until("one pod left", async |c| c.pods().await.len() == 1)
        .await;
    let left = c.pods().await;
    assert!(
        left[0]["metadata"]["name"] == names[0].as_str()
            || left[0]["metadata"]["name"] == names[1].as_str(),
        "a ready pod stays: {left:#?}"
    );

    // An orphan matching the selector is adopted (and, being one too many, removed).
    let orphan = json!({"metadata": {"name": "stray", "labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    create_object(
        &c.server,
        &pod_info,
        Some("default"),
        orphan,
        WriteOptions::INTERNAL,
        &mut Vec::new(),
    )
    .await
    .expect("created");
    c.until("back to one", async |c| c.pods().await.len() == 1)
        .await;

    delete_object(
        &c.server,
        &info,
        Some("default"),
        "web",
        &DeleteOptions::background(),
    )
    .await
    .expect("deleted");
    c.until("pods collected", async |c| c.pods().await.is_empty())
        .await;
}
