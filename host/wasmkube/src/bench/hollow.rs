//! Hollow nodes for benchmarks: many simulated Nodes that report capacity, renew a Lease every
//! 10 s, mark the pods bound to them Running and Ready and finish their deletions, without
//! containers (Kubernetes' kubemark does the same).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use wasmkube_apiserver::{Server, node_agent};
use wasmkube_controller::Manager;
use wasmkube_controller::informer::Change;
use wasmkube_model::meta::ResourceExt;
use wasmkube_model::names::LEASE_NAMESPACE;

use super::cluster::{create, modify};

/// Running hollow nodes; dropping them stops their heartbeats and pod updates.
pub struct Hollow {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Hollow {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The name of hollow node `i`.
pub fn node_name(i: usize) -> String {
    format!("hollow-{i:05}")
}

/// Registers `count` nodes of 4 CPUs, 16 GiB and 110 pods, spread over `zones` zones
/// (`topology.kubernetes.io/zone: zone-N`), the nodes `label(i)` says labelled further.
pub async fn start(
    server: &Arc<Server>,
    manager: &Manager,
    count: usize,
    zones: usize,
    label: impl Fn(usize) -> Option<(String, String)>,
) -> anyhow::Result<Hollow> {
    let namespace = json!({"metadata": {"name": LEASE_NAMESPACE}});
    create(server, "v1", "Namespace", None, namespace).await?;
    let creators = Arc::new(tokio::sync::Semaphore::new(16));
    let mut created = Vec::new();
    for i in 0..count {
        let name = node_name(i);
        let mut labels = json!({"kubernetes.io/hostname": name,
            "topology.kubernetes.io/zone": format!("zone-{}", i % zones.max(1))});
        if let Some((k, v)) = label(i) {
            labels[k] = json!(v);
        }
        let resources =
            json!({"cpu": "4", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"});
        let node = json!({"metadata": {"name": name, "labels": labels}, "status": {
            "capacity": resources, "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}});
        let (server, permit) = (server.clone(), creators.clone().acquire_owned().await?);
        created.push(tokio::spawn(async move {
            let _permit = permit;
            create(&server, "v1", "Node", None, node).await
        }));
    }
    for task in created {
        task.await.context("creating a node")??;
    }
    await_pod_cidrs(server).await?;
    Ok(Hollow {
        tasks: vec![
            tokio::spawn(heartbeats(server.clone(), count)),
            run_pods(server.clone(), manager)?,
        ],
    })
}

/// Each node's Lease in `kube-node-lease`, renewed every 10 s, the renewals spread evenly.
async fn heartbeats(server: Arc<Server>, count: usize) {
    let gap = Duration::from_secs(10) / u32::try_from(count.max(1)).unwrap_or(u32::MAX);
    let mut tick = tokio::time::interval(gap.max(Duration::from_micros(100)));
    for i in (0..count).cycle() {
        tick.tick().await;
        let _ = node_agent::renew_lease(&server, &node_name(i)).await;
    }
}

/// Waits until the host has given every node its pod CIDR, so the nodes stay put once the
/// benchmark starts.
async fn await_pod_cidrs(server: &Server) -> anyhow::Result<()> {
    let nodes = server
        .registry()
        .by_kind("v1", "Node")
        .cloned()
        .context("nodes are served")?;
    for _ in 0..6000 {
        let without = server
            .objects
            .list(&nodes, None, None, None, None, |n| {
                n.pointer("/spec/podCIDR").is_none()
            })
            .await?;
        if without.items.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("nodes still without a pod CIDR after 5 minutes")
}

/// Marks pods bound to a hollow node Running and Ready, and finishes the deletion of those
/// being deleted (there are no containers to stop).
fn run_pods(server: Arc<Server>, manager: &Manager) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let pods = server
        .registry()
        .by_kind("v1", "Pod")
        .cloned()
        .context("pods are served")?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Arc<Value>>();
    manager
        .informer(&pods)
        .add_handler(Arc::new(move |change: &Change| {
            let pod = &change.object;
            let on_hollow = pod["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| n.starts_with("hollow-"));
            let deleting = pod.is_deleting();
            if on_hollow && !change.deleted && (deleting || pod["status"]["phase"] == "Pending") {
                let _ = tx.send(pod.clone());
            }
        }));
    Ok(tokio::spawn(async move {
        let workers = Arc::new(tokio::sync::Semaphore::new(4));
        while let Some(pod) = rx.recv().await {
            let Ok(permit) = workers.clone().acquire_owned().await else {
                return;
            };
            let server = server.clone();
            tokio::spawn(async move {
                let _permit = permit;
                if pod.is_deleting() {
                    let _ = node_agent::finish_deletion(&server, &pod).await;
                    return;
                }
                let text = |f: &str| pod["metadata"][f].as_str().unwrap_or_default();
                let (namespace, name) = (text("namespace"), text("name"));
                let _ = modify(
                    &server,
                    "v1",
                    "Pod",
                    Some(namespace),
                    name,
                    Some("status"),
                    |p| {
                        p["status"]["phase"] = json!("Running");
                        let mut conditions = p["status"]["conditions"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default();
                        conditions.retain(|c| c["type"] != "Ready");
                        conditions.push(json!({"type": "Ready", "status": "True"}));
                        p["status"]["conditions"] = json!(conditions);
                    },
                )
                .await;
            });
        }
    }))
}
