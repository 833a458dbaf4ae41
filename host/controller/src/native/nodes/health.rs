//! Node health, as kube-controller-manager's node lifecycle controller keeps it: a node whose heartbeat stops for the grace period gets its conditions set Unknown; the Ready condition decides the not-ready and unreachable taints.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::time::Instant;
use wasmkube_apiserver::Server;
use wasmkube_apiserver::error::ApiError;
use wasmkube_apiserver::registry::{Update, update_with};
use wasmkube_model::meta::{self, ResourceExt, now};

use super::taints::{self, condition};
use super::{report, served};

/// The conditions a silent node no longer vouches for.
const REPORTED: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    meta::parse_time(v.as_str()?)
}

/// The heartbeat a node's Ready condition carries.
fn ready_heartbeat(node: &Value) -> Option<DateTime<Utc>> {
    condition(node, "Ready").and_then(|c| parse_time(&c["lastHeartbeatTime"]))
}

/// What is known of one node's heartbeat.
struct Heartbeat {
    /// The newest heartbeat seen (Lease renewal or Ready condition).
    last: Option<DateTime<Utc>>,
    /// When it runs out.
    deadline: Instant,
}

/// The health of every node.
pub struct Health {
    grace: Duration,
    /// The last renewal of each node's Lease, by node name (a Lease may come before its Node).
    leases: HashMap<String, DateTime<Utc>>,
    nodes: HashMap<String, Heartbeat>,
    /// Heartbeats that have not run out yet, soonest first.
    deadlines: BTreeSet<(Instant, String)>,
    /// Nodes whose taints do not follow their Ready condition.
    to_taint: BTreeSet<String>,
}

impl Health {
    pub fn new(grace: Duration) -> Self {
        Health {
            grace,
            leases: HashMap::new(),
            nodes: HashMap::new(),
            deadlines: BTreeSet::new(),
            to_taint: BTreeSet::new(),
        }
    }

    /// A heartbeat `last` of `name` seen now (a newer one than before): it runs out a grace
    /// period from now. As in Kubernetes, a node seen for the first time (after a restart too)
    /// gets a whole grace period, unless it never reported: then its grace period counts from
    /// its creation, `created`.
    fn beat(&mut self, name: &str, last: Option<DateTime<Utc>>, created: Option<DateTime<Utc>>) {
        let now = Instant::now();
        let deadline = match self.nodes.get(name) {
            Some(known) if known.last >= last => return,
            Some(_) => now + self.grace,
            None => {
                let age = created
                    .filter(|_| last.is_none())
                    .and_then(|t| (Utc::now() - t).to_std().ok())
                    .unwrap_or_default();
                now + self.grace.saturating_sub(age)
            }
        };
        if let Some(old) = self
            .nodes
            .insert(name.to_string(), Heartbeat { last, deadline })
        {
            self.deadlines.remove(&(old.deadline, name.to_string()));
        }
        self.deadlines.insert((deadline, name.to_string()));
    }

    pub fn lease(&mut self, lease: &Value, deleted: bool) {
        let name = lease.name();
        if deleted {
            self.leases.remove(name);
            return;
        }
        let Some(renewed) = parse_time(&lease["spec"]["renewTime"]) else {
            return;
        };
        self.leases.insert(name.to_string(), renewed);
        if self.nodes.contains_key(name) {
            self.beat(name, Some(renewed), None);
        }
    }

    pub fn node(&mut self, node: &Value, deleted: bool) {
        let name = node.name().to_string();
        if deleted {
            if let Some(old) = self.nodes.remove(&name) {
                self.deadlines.remove(&(old.deadline, name.clone()));
            }
            self.to_taint.remove(&name);
            return;
        }
        let last = self.leases.get(&name).copied().max(ready_heartbeat(node));
        let created = parse_time(&node["metadata"]["creationTimestamp"]);
        self.beat(&name, last, created);
        if !taints::follow_ready_already(node) {
            self.to_taint.insert(name);
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// Marks the nodes whose heartbeat ran out, and taints the nodes that need it.
    pub async fn act(&mut self, server: &Server) {
        let now = Instant::now();
        while let Some((at, name)) = self.deadlines.first().cloned()
            && at <= now
        {
            self.deadlines.pop_first();
            let last = self.nodes.get(&name).and_then(|n| n.last);
            report(
                "marking a silent node",
                mark_unknown(server, &name, last).await,
            );
        }
        for name in std::mem::take(&mut self.to_taint) {
            report("tainting a node", taint(server, &name).await);
        }
    }
}

/// Sets the reported conditions of a node silent since `last` to Unknown, keeping their
/// heartbeats; conditions it never reported are added as Unknown. A node that reported after
/// `last` meanwhile is left alone.
async fn mark_unknown(
    server: &Server,
    name: &str,
    last: Option<DateTime<Utc>>,
) -> Result<(), ApiError> {
    let info = served(server, "Node")?;
    let update = Update {
        subresource: Some("status"),
        ..Update::internal(&info, None, name)
    };
    let now = now();
    let silence = |cur: &Value| {
        if ready_heartbeat(cur) > last {
            return Ok(cur.clone());
        }
        let mut node = cur.clone();
        let mut conditions = cur
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for kind in REPORTED {
            match conditions.iter_mut().find(|c| c["type"] == kind) {
                Some(c) if c["status"] == "Unknown" => {}
                Some(c) => {
                    c["status"] = json!("Unknown");
                    c["reason"] = json!("NodeStatusUnknown");
                    c["message"] = json!("Kubelet stopped posting node status.");
                    c["lastTransitionTime"] = json!(now);
                }
                None => conditions.push(json!({"type": kind, "status": "Unknown",
                    "reason": "NodeStatusNeverUpdated", "message": "Kubelet never posted node status.",
                    "lastHeartbeatTime": cur["metadata"]["creationTimestamp"], "lastTransitionTime": now})),
            }
        }
        node["status"]["conditions"] = Value::Array(conditions);
        Ok(node)
    };
    update_with(server, &update, silence, &mut Vec::new())
        .await
        .map(|_| ())
}

/// Makes a node's not-ready and unreachable taints follow its Ready condition.
async fn taint(server: &Server, name: &str) -> Result<(), ApiError> {
    let info = served(server, "Node")?;
    let now = now();
    let follow = |cur: &Value| {
        let mut node = cur.clone();
        if !taints::follow_ready_already(cur) {
            node["spec"]["taints"] = Value::Array(taints::follow_ready(cur, &now));
        }
        Ok(node)
    };
    update_with(
        server,
        &Update::internal(&info, None, name),
        follow,
        &mut Vec::new(),
    )
    .await
    .map(|_| ())
}
