//! The Endpoints and EndpointSlice controller as a Wasm component in the real host: Services follow their pods.

use crate::common;

use std::time::Duration;

use common::Cluster;
use serde_json::{Value, json};

async fn cluster() -> Cluster {
    common::with_plugins(&["wasmkube_plugin_endpoints"]).await
}

impl Cluster {
    async fn endpoints(&self) -> Option<Value> {
        self.find("v1", "Endpoints", "web").await
    }

    async fn slices(&self) -> Vec<Value> {
        self.list("discovery.k8s.io/v1", "EndpointSlice").await
    }

    /// The Endpoints' ready and not-ready IPs, and those of the one slice by its `ready` condition.
    async fn state(&self) -> (Vec<String>, Vec<String>, Option<(Vec<String>, Vec<String>)>) {
        let ep = self.endpoints().await.unwrap_or_default();
        let ips = |field: &str| -> Vec<String> {
            let mut ips: Vec<String> = ep["subsets"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|s| s[field].as_array().cloned().unwrap_or_default())
                .filter_map(|a| a["ip"].as_str().map(String::from))
                .collect();
            ips.sort();
            ips
        };
        let slices = self.slices().await;
        let slice = (slices.len() == 1).then(|| {
            let by_ready = |ready: bool| -> Vec<String> {
                let mut ips: Vec<String> = slices[0]["endpoints"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|e| e["conditions"]["ready"] == ready)
                    .filter_map(|e| e["addresses"][0].as_str().map(String::from))
                    .collect();
                ips.sort();
                ips
            };
            (by_ready(true), by_ready(false))
        });
        (ips("addresses"), ips("notReadyAddresses"), slice)
    }

    async fn until_state(&self, ready: &[&str], not_ready: &[&str]) {
        let ready: Vec<String> = ready.iter().map(|s| s.to_string()).collect();
        let not_ready: Vec<String> = not_ready.iter().map(|s| s.to_string()).collect();
        let want = (
            ready.clone(),
            not_ready.clone(),
            Some((ready.clone(), not_ready.clone())),
        );
        for _ in 0..300 {
            if self.state().await == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "never reached {want:?}; endpoints {:#?}\nslices {:#?}",
            self.endpoints().await,
            self.slices().await
        );
    }

    /// What a node would report: the pod running with an IP, ready or not.
    async fn report(&self, name: &str, ip: &str, ready: bool) {
        let ready = if ready { "True" } else { "False" };
        let status = json!({"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": ready, "lastTransitionTime": "2020-01-01T00:00:00Z"}]});
        self.set_status("v1", "Pod", name, status).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_and_slices_follow_the_pods() {
    let c = cluster().await;
    c.create("v1", "Service", json!({"metadata": {"name": "web", "labels": {"team": "blue"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}))
        .await;
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        c.create(
            "v1",
            "Pod",
            json!({"metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "busybox",
                "ports": [{"name": "http", "containerPort": 8080}]}]}}),
        )
        .await;
        c.report(name, &format!("10.0.0.{}", i + 1), name != "c")
            .await;
    }
    c.until_state(&["10.0.0.1", "10.0.0.2"], &["10.0.0.3"])
        .await;

    let ep = c.endpoints().await.expect("endpoints");
    assert_eq!(ep["metadata"]["labels"]["team"], "blue");
    let subset = &ep["subsets"][0];
    assert_eq!(
        subset["ports"],
        json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
    );
    assert_eq!(subset["addresses"][0]["nodeName"], "node-1");
    assert_eq!(subset["addresses"][0]["targetRef"]["name"], "a");
    let slice = &c.slices().await[0];
    assert!(
        slice["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("web-"))
    );
    assert_eq!(
        slice["metadata"]["labels"]["kubernetes.io/service-name"],
        "web"
    );
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(slice["ports"][0]["port"], 8080);

    // Readiness flips: a ready pod becomes not ready, the not-ready one ready.
    c.report("a", "10.0.0.1", false).await;
    c.report("c", "10.0.0.3", true).await;
    c.until_state(&["10.0.0.2", "10.0.0.3"], &["10.0.0.1"])
        .await;

    // b is deleted; once its node has stopped it, it is gone.
    c.delete("v1", "Pod", "b").await;
    c.finish_deletions().await;
    c.until_state(&["10.0.0.3"], &["10.0.0.1"]).await;

    // Converged: no further writes.
    let versions = async || {
        let ep = c.endpoints().await.unwrap_or_default();
        let slices = c.slices().await;
        (
            ep["metadata"]["resourceVersion"].clone(),
            slices
                .iter()
                .map(|s| s["metadata"]["resourceVersion"].clone())
                .collect::<Vec<_>>(),
        )
    };
    let before = versions().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(versions().await, before);

    c.delete("v1", "Service", "web").await;
    for _ in 0..300 {
        if c.endpoints().await.is_none() && c.slices().await.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "endpoints {:#?} and slices {:#?} outlived the Service",
        c.endpoints().await,
        c.slices().await
    );
}
