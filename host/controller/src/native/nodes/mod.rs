//! The node controllers: pod CIDR allocation, node health and NoExecute taint eviction, fed the changes of Nodes, node Leases and Pods.

mod cidr;
mod eviction;
mod health;
pub mod taints;

use std::sync::Arc;

use serde_json::Value;
use tokio::time::Instant;
use wasmkube_apiserver::Server;
use wasmkube_apiserver::config::ClusterConfig;
use wasmkube_apiserver::error::ApiError;
use wasmkube_model::meta::ResourceExt;
use wasmkube_model::names::LEASE_NAMESPACE;
use wasmkube_model::resource::ResourceInfo;

const NODES: &str = "/registry/core/nodes/";
const PODS: &str = "/registry/core/pods/";
const LEASES: &str = "/registry/coordination.k8s.io/leases/";

/// The core resource of `kind`.
fn served(server: &Server, kind: &str) -> Result<Arc<ResourceInfo>, ApiError> {
    server
        .registry()
        .by_kind("v1", kind)
        .cloned()
        .ok_or_else(|| ApiError::Internal(format!("{kind} is not served")))
}

/// Logs a failed step; an object deleted or changed meanwhile is not a failure (its next
/// change comes through the watch).
fn report(what: &str, result: Result<(), ApiError>) {
    if let Err(e) = result
        && !matches!(e, ApiError::NotFound { .. } | ApiError::Conflict { .. })
    {
        tracing::warn!(error = %e, "node controllers: {what} failed");
    }
}

/// The state of the node controllers, rebuilt from the store whenever the host controllers
/// start over.
pub struct Nodes {
    cidrs: cidr::Cidrs,
    health: health::Health,
    eviction: eviction::Eviction,
}

impl Nodes {
    pub fn new(config: &ClusterConfig) -> Self {
        Nodes {
            cidrs: cidr::Cidrs::new(config.cluster_cidr),
            health: health::Health::new(config.node_monitor_grace_period),
            eviction: eviction::Eviction::default(),
        }
    }

    /// Takes in the object stored at `key` (or, `deleted`, the last version of one gone);
    /// anything but a Node, a node Lease or a Pod is ignored.
    pub fn observe(&mut self, key: &str, obj: &Value, deleted: bool) {
        if key.starts_with(NODES) {
            self.cidrs.node(obj, deleted);
            self.health.node(obj, deleted);
            self.eviction.node(obj, deleted);
        } else if key.starts_with(PODS) {
            self.eviction.pod(obj, deleted);
        } else if key.starts_with(LEASES) && obj.namespace() == Some(LEASE_NAMESPACE) {
            self.health.lease(obj, deleted);
        }
    }

    /// When [`Nodes::act`] has something to do even if nothing changes.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.health.next_deadline(), self.eviction.next_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Writes what the changes taken in and the time passed call for.
    pub async fn act(&mut self, server: &Server) {
        self.cidrs.act(server).await;
        self.health.act(server).await;
        self.eviction.act(server).await;
    }
}
