//! The StatefulSet controller as a Wasm component in the real host, the test acting as the node:
//! ordered creation, stable identities and claims, scale-down, partitioned rolling updates,
//! ControllerRevisions and adoption.

use crate::common;

use common::Cluster;
use serde_json::{Value, json};

async fn cluster() -> Cluster {
    common::with_plugins(&["wasmkube_plugin_statefulset"]).await
}

fn name(obj: &Value) -> String {
    obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

impl Cluster {
    /// `name=image` of the live pods, sorted.
    async fn pod_images(&self) -> Vec<String> {
        let mut images: Vec<String> = self
            .list("v1", "Pod")
            .await
            .iter()
            .map(|p| {
                format!(
                    "{}={}",
                    name(p),
                    p["spec"]["containers"][0]["image"].as_str().unwrap_or("-")
                )
            })
            .collect();
        images.sort();
        images
    }

    async fn set(&self) -> Value {
        self.get("apps/v1", "StatefulSet", "web").await
    }

    async fn update_set(&self, change: impl Fn(&mut Value)) {
        self.update("apps/v1", "StatefulSet", "web", None, change)
            .await;
    }
}

fn statefulset() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"}, "spec": {
        "replicas": 3,
        "serviceName": "web",
        "revisionHistoryLimit": 1,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "web:1"}]}},
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_pods_claims_scale_down_and_partitioned_update() {
    let c = cluster().await;
    c.create("apps/v1", "StatefulSet", statefulset()).await;

    // OrderedReady: each ordinal waits until the one before it is Running and Ready.
    for want in [
        &["web-0"][..],
        &["web-0", "web-1"],
        &["web-0", "web-1", "web-2"],
    ] {
        c.until(&format!("pods {want:?}"), async |c| {
            c.pod_fields("/metadata/name").await == want
        })
        .await;
        assert_eq!(
            c.pod_fields("/metadata/name").await,
            want,
            "no ordinal before its predecessor is ready"
        );
        c.run_pods().await;
    }
    let pod = c.get("v1", "Pod", "web-1").await;
    assert_eq!(pod["spec"]["hostname"], "web-1");
    assert_eq!(pod["spec"]["subdomain"], "web");
    let volume = &pod["spec"]["volumes"][0];
    assert_eq!(volume["persistentVolumeClaim"]["claimName"], "data-web-1");
    c.until("status counts", async |c| {
        let status = &c.set().await["status"];
        status["readyReplicas"] == 3 && status["currentReplicas"] == 3
    })
    .await;
    let claims: Vec<String> = c
        .list("v1", "PersistentVolumeClaim")
        .await
        .iter()
        .map(name)
        .collect();
    assert_eq!(claims, ["data-web-0", "data-web-1", "data-web-2"]);

    // Scale-down removes the highest ordinals; the claims stay for a later scale-up.
    c.update_set(|s| s["spec"]["replicas"] = json!(1)).await;
    c.until("scaled down to web-0", async |c| {
        c.pod_fields("/metadata/name").await == ["web-0"]
    })
    .await;
    assert_eq!(c.list("v1", "PersistentVolumeClaim").await.len(), 3);
    c.update_set(|s| s["spec"]["replicas"] = json!(3)).await;
    c.until("scaled up again", async |c| {
        c.run_pods().await;
        c.pod_fields("/metadata/name").await == ["web-0", "web-1", "web-2"]
    })
    .await;
    c.run_pods().await;

    // A rolling update with partition 1 replaces web-2, then web-1, and leaves web-0.
    let old_revision = c.set().await["status"]["currentRevision"].clone();
    c.update_set(|s| {
        s["spec"]["template"]["spec"]["containers"][0]["image"] = json!("web:2");
        s["spec"]["updateStrategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 1}});
    })
    .await;
    c.until("web-1 and web-2 updated", async |c| {
        c.run_pods().await;
        c.pod_images().await == ["web-0=web:1", "web-1=web:2", "web-2=web:2"]
    })
    .await;
    let status = c.set().await["status"].clone();
    assert_eq!(status["currentRevision"], old_revision, "{status:#}");
    assert_ne!(status["updateRevision"], old_revision);

    // Partition 0 finishes the update; the current revision becomes the update revision.
    c.update_set(|s| s["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = json!(0))
        .await;
    c.until("every pod updated and the revision current", async |c| {
        c.run_pods().await;
        let status = &c.set().await["status"];
        c.pod_images().await == ["web-0=web:2", "web-1=web:2", "web-2=web:2"]
            && status["currentRevision"] == status["updateRevision"]
            && status["updatedReplicas"] == 3
    })
    .await;
    let revisions = c.list("apps/v1", "ControllerRevision").await;
    assert_eq!(
        revisions.len(),
        2,
        "one old revision kept (revisionHistoryLimit 1)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopts_orphans_by_ordinal_and_prunes_history() {
    let c = cluster().await;
    let mut set = statefulset();
    set["spec"]["replicas"] = json!(2);
    set["spec"]["podManagementPolicy"] = json!("Parallel");
    c.create("apps/v1", "StatefulSet", set).await;
    c.until("two pods at once", async |c| {
        c.pod_fields("/metadata/name").await == ["web-0", "web-1"]
    })
    .await;
    c.run_pods().await;

    // An orphan named like ordinal 2 is adopted, and deleted as beyond `replicas`; one with
    // another name is left alone.
    let orphan = |name: &str| {
        json!({"metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "web:1"}]}})
    };
    c.create("v1", "Pod", orphan("web-2")).await;
    c.create("v1", "Pod", orphan("stranger")).await;
    c.until("the orphan web-2 adopted and removed", async |c| {
        c.pod_fields("/metadata/name").await == ["stranger", "web-0", "web-1"]
    })
    .await;
    assert!(c.get("v1", "Pod", "stranger").await["metadata"]["ownerReferences"].is_null());

    // Three template changes with revisionHistoryLimit 1 leave two revisions: the update
    // revision and one more.
    for image in ["web:2", "web:3", "web:4"] {
        c.update_set(|s| s["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image))
            .await;
        c.until(&format!("rolled to {image}"), async |c| {
            c.run_pods().await;
            c.pod_images()
                .await
                .iter()
                .filter(|p| p.ends_with(image))
                .count()
                == 2
        })
        .await;
    }
    // The last pod rolled may not be Running yet: until it is Ready the rollout is not complete,
    // the old current revision is kept, and so history is pruned only after it runs.
    c.until("history pruned", async |c| {
        c.run_pods().await;
        c.list("apps/v1", "ControllerRevision").await.len() == 2
    })
    .await;
    let mut numbers: Vec<i64> = c
        .list("apps/v1", "ControllerRevision")
        .await
        .iter()
        .filter_map(|r| r["revision"].as_i64())
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, [3, 4]);
}
