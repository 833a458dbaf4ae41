//! The scheduler's view of the cluster: nodes and placed pods (bound or assumed), reduced to
//! what scheduling reads, and the feeds of deltas that keep each policy's own view up to date.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};

use serde_json::{Map, Value, json};
use wasmkube_runtime::{Delta, ObjectKey};

/// The deltas a policy has not seen yet, in order.
#[derive(Default)]
pub struct Feed(Mutex<Vec<Delta>>);

impl Feed {
    /// Takes the pending deltas.
    pub fn drain(&self) -> Vec<Delta> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn push(&self, delta: Delta) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(delta);
    }

    /// Adds deltas drained from another feed.
    pub fn extend(&self, deltas: Vec<Delta>) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(deltas);
    }
}

/// `(namespace, name)` of a pod.
pub type PodKey = (String, String);

pub fn pod_key(pod: &Value) -> PodKey {
    let text = |p: &str| pod.pointer(p).and_then(Value::as_str).unwrap_or_default();
    (
        text("/metadata/namespace").to_string(),
        text("/metadata/name").to_string(),
    )
}

/// A pod on a node, as the policies were told.
struct Placed {
    node: String,
    text: String,
    /// Assumed by the scheduler; the informer has not confirmed the binding yet.
    assumed: bool,
}

/// Nodes and placed pods, as JSON reduced to what scheduling reads.
#[derive(Default)]
pub struct Cache {
    nodes: BTreeMap<String, String>,
    pods: HashMap<PodKey, Placed>,
    feeds: Vec<Weak<Feed>>,
}

/// What a node change means for pods waiting as unschedulable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeChange {
    /// Nothing scheduling reads changed (a heartbeat).
    None,
    Added,
    Updated,
}

impl Cache {
    /// A feed holding the whole view as deltas (nodes, then pods), then every later change: what
    /// a new policy instance applies before it serves.
    pub fn subscribe(&mut self) -> Arc<Feed> {
        let feed = Arc::new(Feed::default());
        for text in self.nodes.values() {
            feed.push(Delta::NodeUpsert(text.clone()));
        }
        for placed in self.pods.values() {
            feed.push(Delta::PodUpsert(placed.text.clone()));
        }
        self.feeds.push(Arc::downgrade(&feed));
        feed
    }

    fn broadcast(&mut self, delta: Delta) {
        self.feeds.retain(|f| f.strong_count() > 0);
        for feed in self.feeds.iter().filter_map(Weak::upgrade) {
            feed.push(delta.clone());
        }
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// A node from the informer.
    pub fn node_upsert(&mut self, node: &Value) -> NodeChange {
        let name = text(node, "/metadata/name").to_string();
        let reduced = reduce_node(node).to_string();
        let change = match self.nodes.get(&name) {
            Some(old) if *old == reduced => return NodeChange::None,
            Some(_) => NodeChange::Updated,
            None => NodeChange::Added,
        };
        self.nodes.insert(name, reduced.clone());
        self.broadcast(Delta::NodeUpsert(reduced));
        change
    }

    pub fn node_remove(&mut self, name: &str) {
        if self.nodes.remove(name).is_some() {
            self.broadcast(Delta::NodeRemove(name.to_string()));
        }
    }

    /// A pod from the informer that is on a node and not finished; returns whether it is new to
    /// the cache.
    pub fn pod_placed(&mut self, pod: &Value) -> bool {
        let key = pod_key(pod);
        let reduced = reduce_pod(pod).to_string();
        let node = text(pod, "/spec/nodeName").to_string();
        if let Some(placed) = self.pods.get_mut(&key) {
            placed.assumed = false;
            if placed.node == node && placed.text == reduced {
                return false;
            }
        }
        let new = self
            .pods
            .insert(
                key,
                Placed {
                    node,
                    text: reduced.clone(),
                    assumed: false,
                },
            )
            .is_none();
        self.broadcast(Delta::PodUpsert(reduced));
        new
    }

    /// A pod the scheduler chose `node` for, before its binding is confirmed.
    /// `reduced` is the pod as [`reduce_pod`] gives it (the cycle has it already).
    pub fn assume(&mut self, mut reduced: Value, node: &str) {
        let key = pod_key(&reduced);
        reduced["spec"]["nodeName"] = json!(node);
        let reduced = reduced.to_string();
        self.pods.insert(
            key,
            Placed {
                node: node.to_string(),
                text: reduced.clone(),
                assumed: true,
            },
        );
        self.broadcast(Delta::PodUpsert(reduced));
    }

    /// Whether the pod is on a node, assumed or bound.
    pub fn is_placed(&self, key: &PodKey) -> bool {
        self.pods.contains_key(key)
    }

    /// Takes back an assumption whose binding failed.
    pub fn forget(&mut self, key: &PodKey) {
        if self.pods.get(key).is_some_and(|p| p.assumed) {
            self.remove_pod(key);
        }
    }

    /// A pod left its node (deleted or finished); returns whether it was placed.
    pub fn remove_pod(&mut self, key: &PodKey) -> bool {
        if self.pods.remove(key).is_none() {
            return false;
        }
        self.broadcast(Delta::PodRemove(ObjectKey {
            namespace: key.0.clone(),
            name: key.1.clone(),
        }));
        true
    }
}

fn text<'v>(obj: &'v Value, pointer: &str) -> &'v str {
    obj.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Copies the listed top-level fields of `obj` that are present.
fn pick(obj: &Value, fields: &[&str]) -> Value {
    let mut out = Map::new();
    for field in fields {
        if let Some(v) = obj.get(*field).filter(|v| !v.is_null()) {
            out.insert((*field).to_string(), v.clone());
        }
    }
    Value::Object(out)
}

/// What scheduling reads of a node: name, labels, taints, unschedulable, capacity and
/// allocatable. Heartbeats change none of it.
pub fn reduce_node(node: &Value) -> Value {
    json!({
        "metadata": pick(&node["metadata"], &["name", "labels"]),
        "spec": pick(&node["spec"], &["unschedulable", "taints"]),
        "status": pick(&node["status"], &["capacity", "allocatable"]),
    })
}

/// What scheduling reads of a pod: identity, labels, owners and deletion, the containers'
/// resources, ports and restart policy (sidecars), placement constraints, volumes, and the phase.
pub fn reduce_pod(pod: &Value) -> Value {
    let containers = |field: &str| -> Value {
        pod["spec"][field]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|c| pick(c, &["name", "resources", "ports", "restartPolicy"]))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut spec = pick(
        &pod["spec"],
        &[
            "nodeName",
            "nodeSelector",
            "affinity",
            "tolerations",
            "topologySpreadConstraints",
            "overhead",
            "volumes",
            "priority",
            "schedulerName",
        ],
    );
    spec["containers"] = containers("containers");
    if pod["spec"]["initContainers"].is_array() {
        spec["initContainers"] = containers("initContainers");
    }
    json!({
        "metadata": pick(
            &pod["metadata"],
            &["name", "namespace", "uid", "labels", "ownerReferences", "deletionTimestamp"]
        ),
        "spec": spec,
        "status": pick(&pod["status"], &["phase"]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cpu: &str) -> Value {
        json!({"metadata": {"name": name, "resourceVersion": "1"}, "spec": {},
            "status": {"allocatable": {"cpu": cpu}, "conditions": [{"type": "Ready", "status": "True"}]}})
    }

    #[test]
    fn feeds_get_the_snapshot_then_changes_and_heartbeats_are_ignored() {
        let mut cache = Cache::default();
        assert_eq!(cache.node_upsert(&node("a", "2")), NodeChange::Added);
        let pod = json!({"metadata": {"name": "p", "namespace": "default", "managedFields": []},
            "spec": {"nodeName": "a", "containers": [{"name": "c", "image": "x", "env": []}]}});
        assert!(cache.pod_placed(&pod));
        let feed = cache.subscribe();
        assert_eq!(feed.drain().len(), 2);

        let mut heartbeat = node("a", "2");
        heartbeat["status"]["conditions"][0]["lastHeartbeatTime"] = json!("now");
        heartbeat["metadata"]["resourceVersion"] = json!("2");
        assert_eq!(cache.node_upsert(&heartbeat), NodeChange::None);
        assert!(!cache.pod_placed(&pod), "no delta for an unchanged pod");
        assert!(feed.drain().is_empty());

        assert_eq!(cache.node_upsert(&node("a", "4")), NodeChange::Updated);
        let assumed =
            json!({"metadata": {"name": "q", "namespace": "default"}, "spec": {"containers": []}});
        cache.assume(reduce_pod(&assumed), "a");
        cache.forget(&pod_key(&assumed));
        cache.forget(&pod_key(&pod)); // bound, not assumed: stays
        let deltas = feed.drain();
        assert_eq!(deltas.len(), 3, "{deltas:?}");
        match &deltas[1] {
            Delta::PodUpsert(text) => {
                assert!(text.contains("\"nodeName\":\"a\"") && !text.contains("managedFields"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&deltas[2], Delta::PodRemove(k) if k.name == "q"));
        drop(feed);
        cache.node_remove("a");
        assert!(cache.feeds.is_empty());
    }
}
