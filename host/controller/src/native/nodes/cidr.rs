//! Pod CIDR allocation: a node without `spec.podCIDR` gets the lowest free /24 of the cluster CIDR; a deleted node's goes back.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Value, json};
use wasmkube_apiserver::Server;
use wasmkube_apiserver::config::ClusterCidr;
use wasmkube_apiserver::error::ApiError;
use wasmkube_apiserver::registry::events;
use wasmkube_apiserver::registry::{Update, update_with};
use wasmkube_model::event::EventType;
use wasmkube_model::meta::ResourceExt;

use super::{report, served};

pub struct Cidrs {
    net: ClusterCidr,
    /// Node CIDRs by number, with the node that holds each.
    held: BTreeMap<u32, String>,
    by_node: HashMap<String, u32>,
    /// Nodes to give a CIDR.
    wanting: BTreeSet<String>,
    /// Nodes that found the range full (and were told so); they try again when one is freed.
    waiting: BTreeSet<String>,
}

fn pod_cidr(node: &Value) -> Option<&str> {
    node.pointer("/spec/podCIDR")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
}

impl Cidrs {
    pub fn new(net: ClusterCidr) -> Self {
        Cidrs {
            net,
            held: BTreeMap::new(),
            by_node: HashMap::new(),
            wanting: BTreeSet::new(),
            waiting: BTreeSet::new(),
        }
    }

    fn release(&mut self, name: &str) {
        if let Some(index) = self.by_node.remove(name)
            && self.held.get(&index).is_some_and(|n| n == name)
        {
            self.held.remove(&index);
            self.wanting.append(&mut self.waiting);
        }
    }

    fn hold(&mut self, name: &str, index: u32) {
        if self.by_node.get(name) != Some(&index) {
            self.release(name);
            self.by_node.insert(name.to_string(), index);
            self.held.entry(index).or_insert_with(|| name.to_string());
        }
    }

    pub fn node(&mut self, node: &Value, deleted: bool) {
        let name = node.name();
        if deleted {
            self.release(name);
            self.wanting.remove(name);
            self.waiting.remove(name);
            return;
        }
        match pod_cidr(node) {
            Some(cidr) => {
                self.wanting.remove(name);
                self.waiting.remove(name);
                if let Some(index) = self.net.index_of(cidr) {
                    self.hold(name, index);
                }
            }
            None if !self.waiting.contains(name) => {
                self.wanting.insert(name.to_string());
            }
            None => {}
        }
    }

    /// The lowest node CIDR no node holds.
    fn lowest_free(&self) -> Option<u32> {
        let mut free = 0;
        for &index in self.held.keys() {
            if index != free {
                break;
            }
            free += 1;
        }
        (free < self.net.subnets()).then_some(free)
    }

    /// Gives the nodes without a CIDR one each, or an Event saying there is none left.
    pub async fn act(&mut self, server: &Server) {
        for name in std::mem::take(&mut self.wanting) {
            let index = match self.by_node.get(&name) {
                Some(&index) => index,
                None => match self.lowest_free() {
                    Some(index) => {
                        self.hold(&name, index);
                        index
                    }
                    None => {
                        self.waiting.insert(name.clone());
                        report("reporting a full pod network", full(server, &name).await);
                        continue;
                    }
                },
            };
            report(
                "allocating a pod CIDR",
                assign(server, &name, &self.net.subnet(index)).await,
            );
        }
    }
}

/// Writes `cidr` as the node's `spec.podCIDR` and `spec.podCIDRs`, unless it has one already.
async fn assign(server: &Server, name: &str, cidr: &str) -> Result<(), ApiError> {
    let info = served(server, "Node")?;
    let set = |cur: &Value| {
        let mut node = cur.clone();
        if pod_cidr(cur).is_none() {
            node["spec"]["podCIDR"] = json!(cidr);
            node["spec"]["podCIDRs"] = json!([cidr]);
        }
        Ok(node)
    };
    update_with(
        server,
        &Update::internal(&info, None, name),
        set,
        &mut Vec::new(),
    )
    .await
    .map(|_| ())
}

/// A Warning Event on the node: no CIDR is left for it.
async fn full(server: &Server, name: &str) -> Result<(), ApiError> {
    // Kubernetes refers to nodes in Events by name, the name standing in for the uid.
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "uid": name}});
    events::record(
        server,
        "node-ipam-controller",
        &node,
        EventType::Warning,
        "CIDRNotAvailable",
        &format!("Node {name} status is now: CIDRNotAvailable"),
    )
    .await
}
