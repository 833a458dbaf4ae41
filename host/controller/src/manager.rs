//! The manager: runs controllers over shared informers, one work queue each, and swaps a controller's reconciler without losing its queue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde_json::Value;
use wasmkube_apiserver::Server;
use wasmkube_model::meta::ResourceExt;
use wasmkube_model::resource::ResourceInfo;
use wasmkube_model::selector::LabelSelector;

use crate::informer::{Change, Informer};
use crate::queue::WorkQueue;

/// The object a reconcile is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn of(obj: &Value) -> ObjectKey {
        let text = |p: &str| {
            obj.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        ObjectKey {
            namespace: text("/metadata/namespace"),
            name: text("/metadata/name"),
        }
    }
}

/// What a reconcile asks for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    RequeueAfter(Duration),
}

/// Anything that reconciles one key at a time: a Wasm controller, or a native one in tests.
#[async_trait::async_trait]
pub trait Reconciler: Send + Sync + 'static {
    async fn reconcile(&self, key: ObjectKey) -> Result<Outcome, String>;
}

/// A reconciler shared with its owner (who may wrap it in another one later).
#[async_trait::async_trait]
impl<R: Reconciler> Reconciler for Arc<R> {
    async fn reconcile(&self, key: ObjectKey) -> Result<Outcome, String> {
        R::reconcile(self, key).await
    }
}

/// What a controller reconciles and watches.
#[derive(Clone, Debug)]
pub struct Controller {
    pub name: String,
    pub primary: Arc<ResourceInfo>,
    /// Changes to these enqueue their controlling owner of the primary kind.
    pub owns: Vec<Arc<ResourceInfo>>,
    /// Cached for reads, enqueue nothing.
    pub reads: Vec<Arc<ResourceInfo>>,
    /// Cached for reads; their creation, deletion, or change of labels or spec enqueues every
    /// primary object.
    pub triggers: Vec<Arc<ResourceInfo>>,
    /// Keys reconciled at once (never the same key twice).
    pub workers: usize,
}

/// A running controller.
pub struct Running {
    pub queue: Arc<WorkQueue<ObjectKey>>,
    /// The informer of the objects it reconciles.
    primary: Arc<Informer>,
    reconciler: Arc<ArcSwap<Box<dyn Reconciler>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Puts `reconciler` in place of the current one: reconciles in flight finish on the old
    /// one, every key still queued goes to the new one, and every object is queued once, as a
    /// restarted controller reconciles each (a new version brings what exists in line with it).
    pub fn swap(&self, reconciler: Box<dyn Reconciler>) {
        self.reconciler.store(Arc::new(reconciler));
        for object in self.primary.list(None) {
            self.queue.add(ObjectKey::of(&object));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.queue.shut_down();
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// An informer and the task that feeds it.
type RunningInformer = (Arc<Informer>, tokio::task::JoinHandle<()>);

/// Runs controllers over informers shared by all of them.
pub struct Manager {
    server: Arc<Server>,
    informers: Mutex<HashMap<(String, String), RunningInformer>>,
}

impl Drop for Manager {
    fn drop(&mut self) {
        for (_, task) in self
            .informers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            task.abort();
        }
    }
}

/// The key of the controlling owner of `obj` if that owner is of `owner`'s kind.
fn controller_of(obj: &Value, owner: &ResourceInfo) -> Option<ObjectKey> {
    let owner_ref = obj
        .owner_references()
        .iter()
        .find(|r| r["controller"] == true)?;
    let api_version = owner_ref["apiVersion"].as_str().unwrap_or_default();
    let group = api_version.split_once('/').map_or("", |(g, _)| g);
    (owner_ref["kind"] == owner.kind.as_str() && group == owner.group).then(|| ObjectKey {
        namespace: obj.namespace().unwrap_or_default().to_string(),
        name: owner_ref["name"].as_str().unwrap_or_default().to_string(),
    })
}

/// The primaries in `obj`'s namespace whose `spec.selector` selects it.
fn selecting(primaries: &Informer, obj: &Value) -> Vec<ObjectKey> {
    let (namespace, labels) = (obj.namespace(), obj.labels());
    primaries
        .list(namespace)
        .iter()
        .filter(|p| spec_selector(p).is_some_and(|s| !s.is_empty() && s.matches_value(labels)))
        .map(|p| ObjectKey::of(p))
        .collect()
}

/// Whether a change of a trigger resource matters: a creation, a deletion, or a change of
/// labels or spec (heartbeats and other status-only updates do not).
fn triggers_all(change: &Change) -> bool {
    let Some(old) = &change.old else {
        return true;
    };
    change.deleted
        || ["/metadata/labels", "/spec"]
            .iter()
            .any(|p| old.pointer(p) != change.object.pointer(p))
}

/// A primary's `spec.selector`: a structured `LabelSelector` (`matchLabels`, `matchExpressions`)
/// or, as a Service has it, a plain map of labels (every value a string).
fn spec_selector(primary: &Value) -> Option<LabelSelector> {
    let selector = primary.pointer("/spec/selector")?;
    let plain = selector
        .as_object()
        .is_some_and(|m| !m.is_empty() && m.values().all(Value::is_string));
    let structured = if plain {
        serde_json::json!({ "matchLabels": selector })
    } else {
        selector.clone()
    };
    LabelSelector::from_k8s(&serde_json::from_value(structured).ok()?).ok()
}

impl Manager {
    pub fn new(server: Arc<Server>) -> Arc<Self> {
        Arc::new(Manager {
            server,
            informers: Mutex::new(HashMap::new()),
        })
    }

    /// The shared informer of a resource, started on first use.
    pub fn informer(&self, info: &Arc<ResourceInfo>) -> Arc<Informer> {
        let mut informers = self.informers.lock().unwrap_or_else(|p| p.into_inner());
        let entry = informers
            .entry((info.group.clone(), info.plural.clone()))
            .or_insert_with(|| {
                let informer = Informer::new(info.clone());
                let task = tokio::spawn(informer.clone().run(self.server.clone()));
                (informer, task)
            });
        entry.0.clone()
    }

    /// Starts the informers of every resource `controller` names and waits until they are synced
    /// (for a controller that reads them but is fed keys by another one).
    pub async fn cache(&self, controller: &Controller) {
        let resources = std::iter::once(&controller.primary)
            .chain(&controller.owns)
            .chain(&controller.reads)
            .chain(&controller.triggers);
        for info in resources {
            self.informer(info).wait_synced().await;
        }
    }

    /// Starts a controller; its informers are synced before the first reconcile.
    pub async fn start(&self, controller: Controller, reconciler: Box<dyn Reconciler>) -> Running {
        let queue: Arc<WorkQueue<ObjectKey>> = WorkQueue::new();
        let primary = self.informer(&controller.primary);
        let owned: Vec<Arc<Informer>> = controller
            .owns
            .iter()
            .map(|info| self.informer(info))
            .collect();
        let triggers: Vec<Arc<Informer>> = controller
            .triggers
            .iter()
            .map(|info| self.informer(info))
            .collect();
        for info in &controller.reads {
            self.informer(info);
        }
        for informer in std::iter::once(&primary).chain(&owned).chain(&triggers) {
            informer.wait_synced().await;
        }
        let q = queue.clone();
        primary.add_handler(Arc::new(move |change: &Change| {
            q.add(ObjectKey::of(&change.object))
        }));
        for informer in owned {
            let (q, owner, primaries) =
                (queue.clone(), controller.primary.clone(), primary.clone());
            informer.add_handler(Arc::new(move |change: &Change| {
                // A dependent that changed owner enqueues both owners; an orphan enqueues every
                // owner whose selector matches it, which may adopt it.
                for obj in std::iter::once(&change.object).chain(change.old.as_ref()) {
                    match controller_of(obj, &owner) {
                        Some(key) => q.add(key),
                        None => selecting(&primaries, obj)
                            .into_iter()
                            .for_each(|key| q.add(key)),
                    }
                }
            }));
        }
        for informer in triggers {
            let (q, primaries) = (queue.clone(), primary.clone());
            informer.add_handler(Arc::new(move |change: &Change| {
                if triggers_all(change) {
                    for p in primaries.list(None) {
                        q.add(ObjectKey::of(&p));
                    }
                }
            }));
        }
        let reconciler = Arc::new(ArcSwap::from_pointee(reconciler));
        let tasks = (0..controller.workers.max(1))
            .map(|_| {
                tokio::spawn(work(
                    controller.name.clone(),
                    queue.clone(),
                    reconciler.clone(),
                ))
            })
            .collect();
        Running {
            queue,
            primary,
            reconciler,
            tasks,
        }
    }
}

/// One worker: takes keys off the queue until it shuts down.
async fn work(
    name: String,
    queue: Arc<WorkQueue<ObjectKey>>,
    reconciler: Arc<ArcSwap<Box<dyn Reconciler>>>,
) {
    while let Some(key) = queue.get().await {
        let current = reconciler.load_full();
        match current.reconcile(key.clone()).await {
            Ok(Outcome::Done) => queue.forget(&key),
            Ok(Outcome::RequeueAfter(delay)) => {
                queue.forget(&key);
                queue.add_after(key.clone(), delay);
            }
            Err(error) => {
                tracing::warn!(controller = %name, namespace = %key.namespace, name = %key.name, %error, "reconcile failed");
                queue.add_rate_limited(key.clone());
            }
        }
        queue.done(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn selects(primary: Value, labels: Value) -> bool {
        spec_selector(&primary).is_some_and(|s| !s.is_empty() && s.matches_value(Some(&labels)))
    }

    #[test]
    fn triggers_ignore_status_only_changes() {
        let node = json!({"metadata": {"name": "n", "labels": {"a": "1"}}, "spec": {}});
        let change = |old: Option<Value>, new: Value, deleted: bool| Change {
            object: Arc::new(new),
            old: old.map(Arc::new),
            deleted,
        };
        assert!(triggers_all(&change(None, node.clone(), false)));
        let mut heartbeat = node.clone();
        heartbeat["status"] = json!({"conditions": []});
        assert!(!triggers_all(&change(Some(node.clone()), heartbeat, false)));
        let mut relabelled = node.clone();
        relabelled["metadata"]["labels"]["a"] = json!("2");
        assert!(triggers_all(&change(Some(node.clone()), relabelled, false)));
        let mut tainted = node.clone();
        tainted["spec"]["taints"] = json!([{"key": "k", "effect": "NoSchedule"}]);
        assert!(triggers_all(&change(Some(node.clone()), tainted, false)));
        assert!(triggers_all(&change(Some(node.clone()), node, true)));
    }

    #[test]
    fn structured_and_plain_map_selectors_select() {
        let web = json!({"app": "web", "tier": "front"});
        let rs = json!({"spec": {"selector": {"matchLabels": {"app": "web"}}}});
        assert!(selects(rs, web.clone()));
        let expr = json!({"spec": {"selector": {"matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["front"]}]}}});
        assert!(selects(expr, web.clone()));
        let service = json!({"spec": {"selector": {"app": "web"}}});
        assert!(selects(service.clone(), web.clone()));
        assert!(!selects(service, json!({"app": "db"})));
        // No selector, or an empty one, selects nothing.
        assert!(!selects(json!({"spec": {}}), web.clone()));
        assert!(!selects(json!({"spec": {"selector": {}}}), web));
    }
}
