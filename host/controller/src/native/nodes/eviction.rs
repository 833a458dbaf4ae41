//! The NoExecute taint manager: a pod on a node with NoExecute taints is deleted (gracefully) at once if it does not tolerate one, else after the shortest `tolerationSeconds` of the tolerations that matched.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;
use tokio::time::Instant;
use wasmkube_apiserver::Server;
use wasmkube_apiserver::error::ApiError;
use wasmkube_apiserver::registry::events;
use wasmkube_apiserver::registry::{DeleteOptions, delete_object};
use wasmkube_model::event::EventType;
use wasmkube_model::meta::ResourceExt;

use super::taints::{self, Stay};
use super::{report, served};

/// A pod by namespace and name.
type PodKey = (String, String);

/// A live pod bound to a node.
struct Bound {
    node: String,
    uid: String,
    tolerations: Vec<Value>,
}

/// An eviction to come: counted from `since`, the first time the pod was found on a tainted
/// node, due at `due`.
#[derive(Clone, Copy)]
struct Timer {
    since: Instant,
    due: Instant,
}

#[derive(Default)]
pub struct Eviction {
    /// The NoExecute taints of each node that has some.
    tainted: HashMap<String, Vec<Value>>,
    pods: HashMap<PodKey, Bound>,
    on_node: HashMap<String, BTreeSet<PodKey>>,
    timers: HashMap<PodKey, Timer>,
    /// Evictions to come, soonest first.
    deadlines: BTreeSet<(Instant, PodKey)>,
    /// Pods whose stay must be worked out again.
    changed: BTreeSet<PodKey>,
}

impl Eviction {
    pub fn node(&mut self, node: &Value, deleted: bool) {
        let name = node.name();
        let taints = if deleted {
            Vec::new()
        } else {
            taints::no_execute(node)
        };
        if self.tainted.get(name).map_or(&[][..], Vec::as_slice) == taints.as_slice() {
            return;
        }
        if taints.is_empty() {
            self.tainted.remove(name);
        } else {
            self.tainted.insert(name.to_string(), taints);
        }
        self.changed
            .extend(self.on_node.get(name).into_iter().flatten().cloned());
    }

    pub fn pod(&mut self, pod: &Value, deleted: bool) {
        let meta = &pod["metadata"];
        let key = (
            meta["namespace"].as_str().unwrap_or_default().to_string(),
            pod.name().to_string(),
        );
        let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
        let terminating = meta.get("deletionTimestamp").is_some_and(|t| !t.is_null());
        if deleted || terminating || node.is_empty() {
            self.forget(&key);
            return;
        }
        if self.tainted.contains_key(node) {
            self.changed.insert(key.clone());
        }
        self.on_node
            .entry(node.to_string())
            .or_default()
            .insert(key.clone());
        let bound = Bound {
            node: node.to_string(),
            uid: meta["uid"].as_str().unwrap_or_default().to_string(),
            tolerations: pod["spec"]["tolerations"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        };
        self.pods.insert(key, bound);
    }

    fn forget(&mut self, key: &PodKey) {
        if let Some(bound) = self.pods.remove(key)
            && let Some(pods) = self.on_node.get_mut(&bound.node)
        {
            pods.remove(key);
            if pods.is_empty() {
                self.on_node.remove(&bound.node);
            }
        }
        self.cancel(key);
        self.changed.remove(key);
    }

    fn cancel(&mut self, key: &PodKey) {
        if let Some(timer) = self.timers.remove(key) {
            self.deadlines.remove(&(timer.due, key.clone()));
        }
    }

    /// Sets (or moves) the eviction of `key` to `since + stay`.
    fn schedule(&mut self, key: &PodKey, now: Instant, stay: std::time::Duration) {
        let since = self.timers.get(key).map_or(now, |t| t.since);
        self.cancel(key);
        let due = since + stay;
        self.timers.insert(key.clone(), Timer { since, due });
        self.deadlines.insert((due, key.clone()));
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// Works out the stay of the pods whose node or tolerations changed, and evicts those whose
    /// time is up.
    pub async fn act(&mut self, server: &Server) {
        let now = Instant::now();
        for key in std::mem::take(&mut self.changed) {
            let Some(bound) = self.pods.get(&key) else {
                continue;
            };
            let taints = self.tainted.get(&bound.node).map_or(&[][..], Vec::as_slice);
            match taints::stay(&bound.tolerations, taints) {
                Stay::Forever => self.cancel(&key),
                Stay::Untolerated => self.schedule(&key, now, std::time::Duration::ZERO),
                Stay::For(stay) => self.schedule(&key, now, stay),
            }
        }
        while let Some((at, key)) = self.deadlines.first().cloned()
            && at <= now
        {
            self.cancel(&key);
            if let Some(bound) = self.pods.get(&key) {
                report("evicting a pod", evict(server, &key, &bound.uid).await);
            }
        }
    }
}

/// Deletes a pod through the graceful path, with an Event saying why.
async fn evict(server: &Server, (ns, name): &PodKey, uid: &str) -> Result<(), ApiError> {
    let info = served(server, "Pod")?;
    let opts = DeleteOptions {
        uid: Some(uid.to_string()),
        ..DeleteOptions::background()
    };
    let pod = delete_object(server, &info, Some(ns), name, &opts).await?;
    events::record(
        server,
        "taint-eviction-controller",
        &pod,
        EventType::Normal,
        "TaintManagerEviction",
        &format!("Marking for deletion Pod {ns}/{name}"),
    )
    .await
}
