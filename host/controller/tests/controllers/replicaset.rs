//! The ReplicaSet controller as a Wasm component in the real host: apiserver, store, informers, runtime.

use crate::common;

use std::time::{Duration, Instant};

use common::Cluster;
use serde_json::{Value, json};
use wasmkube_controller::builtin::BUILTIN_CALL_TIMEOUT_MILLIS;
use wasmkube_controller::plugin::Config;
use wasmkube_runtime::Limits;

async fn cluster() -> Cluster {
    common::with_plugins(&["wasmkube_plugin_replicaset"]).await
}

impl Cluster {
    async fn replicaset(&self) -> Value {
        self.get("apps/v1", "ReplicaSet", "web").await
    }

    /// What a node would report: the pod running and ready.
    async fn make_ready(&self, name: &str) {
        let status = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True",
            "lastTransitionTime": "2020-01-01T00:00:00Z"}]});
        self.set_status("v1", "Pod", name, status).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_replicas_adopts_counts_and_scales() {
    let c = cluster().await;
    let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"}, "spec": {"replicas": 3,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
    c.create("apps/v1", "ReplicaSet", rs).await;
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

    c.delete("v1", "Pod", &names[2]).await;
    c.until("a replacement", async |c| {
        let pods = c.pods().await;
        pods.len() == 3
            && !pods
                .iter()
                .any(|p| p["metadata"]["name"] == names[2].as_str())
    })
    .await;

    c.update("apps/v1", "ReplicaSet", "web", None, |rs| {
        rs["spec"]["replicas"] = json!(1);
    })
    .await;
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
    c.create("v1", "Pod", orphan).await;
    c.until("back to one", async |c| c.pods().await.len() == 1)
        .await;

    c.delete("apps/v1", "ReplicaSet", "web").await;
    c.until("pods collected", async |c| c.pods().await.is_empty())
        .await;
}

/// Kubernetes' `BurstReplicas` (500) pods created in one reconcile, with an Event each, fit the
/// deadline the built-in plugins run with (`builtin::BUILTIN_CALL_TIMEOUT_MILLIS`), host calls
/// counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_burst_fits_the_builtin_deadline() {
    let config = Config {
        limits: Limits {
            call_timeout: Duration::from_millis(BUILTIN_CALL_TIMEOUT_MILLIS),
            ..Limits::default()
        },
        ..Config::default()
    };
    let c = common::with_config(&["wasmkube_plugin_replicaset"], &config).await;
    let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"}, "spec": {"replicas": 500,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
    let started = Instant::now();
    c.create("apps/v1", "ReplicaSet", rs).await;
    c.until("500 pods", async |c| c.pods().await.len() == 500)
        .await;
    let health = c.plugins[0]
        .health
        .lock()
        .map(|h| h.clone())
        .unwrap_or_default();
    eprintln!("500 pods in {:?}", started.elapsed());
    assert_eq!(health.traps, 0, "{:?}", health.last_trap);
}
