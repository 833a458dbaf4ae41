//! The Deployment and ReplicaSet controllers as Wasm components in the real host, with a simulated node.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::wasm;
use serde_json::{Value, json};
use wasmkube_apiserver::Server;
use wasmkube_apiserver::handlers::{
    DeleteOptions, Update, WriteOptions, create_object, delete_object, update_with,
};
use wasmkube_controller::{Manager, plugin};
use wasmkube_runtime::{Limits, Runtime};

const REVISION: &str = "deployment.kubernetes.io/revision";

struct Cluster {
    server: Arc<Server>,
    _manager: Arc<Manager>,
    _plugins: Vec<plugin::RunningPlugin>,
    node: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.node.abort();
    }
}

async fn cluster() -> Cluster {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::server(&dir).await;
    let manager = Manager::new(server.clone());
    let runtime = Runtime::new(dir.path().join("cache")).expect("runtime");
    let mut plugins = Vec::new();
    for name in ["wasmkube_plugin_replicaset", "wasmkube_plugin_deployment"] {
        let module = runtime.load(&wasm(name)).expect("module loads");
        let plugin = plugin::start(&server, &manager, module, Limits::default(), 2)
            .await
            .expect("plugin starts");
        plugins.push(plugin);
    }
    let node = tokio::spawn(run_node(server.clone()));
    Cluster {
        server,
        _manager: manager,
        _plugins: plugins,
        node,
        _dir: dir,
    }
}

/// Objects of a kind in `default`, those being deleted left out.
async fn list(server: &Server, api_version: &str, kind: &str) -> Vec<Value> {
    let info = server
        .registry()
        .by_kind(api_version, kind)
        .expect("served")
        .clone();
    let page = server
        .objects
        .list(&info, Some("default"), None, None, None, |o| {
            o.pointer("/metadata/deletionTimestamp").is_none()
        })
        .await
        .expect("lists");
    page.items
}

/// What a node would report: every pod running and ready (a status subresource update).
async fn run_node(server: Arc<Server>) {
    let info = server
        .registry()
        .by_kind("v1", "Pod")
        .expect("served")
        .clone();
    loop {
        for pod in list(&server, "v1", "Pod").await {
            if pod["status"]["phase"] == "Running" {
                continue;
            }
            let Some(name) = pod["metadata"]["name"].as_str() else {
                continue;
            };
            let update = Update {
                subresource: Some("status"),
                ..Update::internal(&info, Some("default"), name)
            };
            // A pod deleted meanwhile needs no status.
            let _ = update_with(&server, &update, |cur| {
                let mut new = cur.clone();
                new["status"] = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}]});
                Ok(new)
            }, &mut Vec::new()).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    async fn pods(&self) -> Vec<Value> {
        list(&self.server, "v1", "Pod").await
    }

    async fn replica_sets(&self) -> Vec<Value> {
        list(&self.server, "apps/v1", "ReplicaSet").await
    }

    async fn deployment(&self) -> Value {
        let mut all = list(&self.server, "apps/v1", "Deployment").await;
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

    async fn until(&self, what: &str, check: impl AsyncFn(&Cluster) -> bool) {
        for _ in 0..1500 {
            if check(self).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "{what}: never happened; deployment {:#}\nreplicasets {:#?}\npods {:#?}",
            self.deployment().await,
            self.replica_sets().await,
            self.pods().await
        );
    }

    async fn update_deployment(&self, change: impl Fn(&mut Value)) {
        let info = self
            .server
            .registry()
            .by_kind("apps/v1", "Deployment")
            .expect("served")
            .clone();
        let update = Update::internal(&info, Some("default"), "web");
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolls_out_rolls_back_and_collects() {
    let c = cluster().await;
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 3,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}}});
    let info = c
        .server
        .registry()
        .by_kind("apps/v1", "Deployment")
        .expect("served")
        .clone();
    create_object(
        &c.server,
        &info,
        Some("default"),
        d,
        WriteOptions::INTERNAL,
        &mut Vec::new(),
    )
    .await
    .expect("created");
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

    c.update_deployment(|d| {
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
    c.update_deployment(|d| d["spec"]["template"] = template.clone())
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

    delete_object(
        &c.server,
        &info,
        Some("default"),
        "web",
        &DeleteOptions::background(),
    )
    .await
    .expect("deleted");
    c.until("replica sets and pods collected", async |c| {
        c.replica_sets().await.is_empty() && c.pods().await.is_empty()
    })
    .await;
}
