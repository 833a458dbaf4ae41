//! Native controllers of the host: garbage collection, namespace lifecycle, CRD cleanup, legacy ServiceAccount token Secrets and the node controllers.
//!
//! They stay native rather than Wasm because they act on every kind at once through one watch
//! of the whole store, and must keep working even when no plugin is loaded.

mod crd;
mod events;
mod garbage;
mod graph;
mod namespace;
mod nodes;
mod tokens;

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt as _, StreamExt};
use serde_json::Value;
use wasmkube_apiserver::Server;
use wasmkube_apiserver::error::ApiError;
use wasmkube_apiserver::objects::decode;
use wasmkube_apiserver::registry::events as event_log;
use wasmkube_model::event::EventType;
use wasmkube_model::meta::ResourceExt;
use wasmkube_model::names::CRD_CLEANUP;
use wasmkube_model::resource::ResourceInfo;
use wasmkube_store::{EventKind, Range, WatchItem};

use self::graph::{Graph, ObjectRef};
use self::nodes::Nodes;

const ROOT: &str = "/registry/";
/// Where ServiceAccounts are stored.
const SERVICE_ACCOUNTS: &str = "/registry/core/serviceaccounts/";

/// The resource an object key belongs to (any served version of its group and plural).
fn info_of(server: &Server, key: &str) -> Option<Arc<ResourceInfo>> {
    let rest = key.strip_prefix(ROOT)?;
    let mut parts = rest.splitn(3, '/');
    let (group, plural) = (parts.next()?, parts.next()?);
    let group = if group == "core" { "" } else { group };
    server
        .registry()
        .all()
        .iter()
        .find(|i| i.group == group && i.plural == plural)
        .cloned()
}

async fn current(server: &Server, r: &ObjectRef) -> Option<Value> {
    let info = info_of(server, &r.key)?;
    server
        .objects
        .get(&info, r.namespace.as_deref(), &r.name)
        .await
        .ok()
        .flatten()
        .map(|s| s.object)
}

/// Runs the controllers and Event expiry until the task is aborted; restarts the controllers
/// on errors and panics.
pub fn spawn(server: Arc<Server>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let controllers = async {
            loop {
                // A panic on some object's data must not end the controllers for good: it is
                // logged and they start again from a fresh read, as after an error.
                match std::panic::AssertUnwindSafe(run(&server))
                    .catch_unwind()
                    .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "host controllers restarting"),
                    Err(_) => tracing::error!("host controllers panicked; restarting"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        };
        tokio::join!(events::run(server.clone()), controllers);
    })
}

/// Sleeps until `deadline`, or for ever without one.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Reads every object at one revision, settles each, then follows the watch from there. The
/// node controllers also act when one of their deadlines comes.
async fn run(server: &Arc<Server>) -> Result<(), ApiError> {
    let store = server.objects.store().clone();
    let revision = store.revision().await?;
    let mut graph = Graph::default();
    let mut nodes = Nodes::new(&server.cluster);
    settle_all(server, revision, &mut graph, &mut nodes).await?;
    let mut watch = store
        .watch(ROOT, revision + 1, Duration::from_secs(60))
        .await?;
    loop {
        let item = tokio::select! {
            item = watch.next() => item,
            () = until(nodes.next_deadline()) => {
                nodes.act(server).await;
                continue;
            }
        };
        let Some(item) = item else { break };
        let WatchItem::Event(event) = item? else {
            continue;
        };
        let prev = event.prev.as_ref().and_then(|kv| decode(kv).ok());
        match event.kind {
            EventKind::Put => {
                let Ok(obj) = decode(&event.kv) else { continue };
                let r = ObjectRef::of(&event.kv.key, &obj);
                if let Some(prev) = &prev {
                    graph.remove(&r, prev);
                }
                graph.insert(&r, &obj);
                nodes.observe(&event.kv.key, &obj, false);
                settle(server, &graph, &r, &obj).await;
            }
            EventKind::Delete => {
                let Some(prev) = prev else { continue };
                let r = ObjectRef::of(&event.kv.key, &prev);
                graph.remove(&r, &prev);
                nodes.observe(&event.kv.key, &prev, true);
                if let Some(ns) = &r.namespace
                    && event.kv.key.starts_with(SERVICE_ACCOUNTS)
                    && let Err(e) = tokens::revoke(server, ns, &r.name).await
                {
                    tracing::warn!(key = %r.key, error = %e, "revoking token Secrets");
                }
                for waiting in waiting_on(server, &graph, &r, &prev) {
                    if let Some(obj) = current(server, &waiting).await {
                        settle(server, &graph, &waiting, &obj).await;
                    }
                }
            }
        }
        nodes.act(server).await;
    }
    Ok(())
}

/// Reads every object at `revision` into the graph and the node controllers, then settles each.
/// The objects are dropped when it returns, not kept for the life of the watch: they are the
/// whole store's values (the plugins' module chunks among them, megabytes).
async fn settle_all(
    server: &Arc<Server>,
    revision: i64,
    graph: &mut Graph,
    nodes: &mut Nodes,
) -> Result<(), ApiError> {
    let all = server
        .objects
        .store()
        .range(Range {
            prefix: ROOT.into(),
            start: None,
            limit: 0,
            revision,
        })
        .await?;
    let mut objects = Vec::new();
    for kv in &all.kvs {
        // Allocation claims (`/registry/ranges/…`) live beside the objects and are not objects.
        let Ok(obj) = decode(kv) else { continue };
        let r = ObjectRef::of(&kv.key, &obj);
        graph.insert(&r, &obj);
        nodes.observe(&kv.key, &obj, false);
        objects.push((r, obj));
    }
    nodes.act(server).await;
    for (r, obj) in &objects {
        settle(server, graph, r, obj).await;
    }
    Ok(())
}

/// The objects a deletion may unblock: the gone object's dependents and owners, its terminating
/// namespace, and the CRD of a custom resource.
fn waiting_on(server: &Server, graph: &Graph, gone: &ObjectRef, prev: &Value) -> Vec<ObjectRef> {
    let mut refs: Vec<ObjectRef> = graph::uid(prev)
        .map(|uid| graph.dependents_of(&uid))
        .unwrap_or_default();
    refs.extend(
        graph::owner_uids(prev)
            .iter()
            .filter_map(|owner| graph.alive.get(owner).cloned()),
    );
    if let Some(ns) = &gone.namespace {
        refs.push(ObjectRef {
            key: format!("{ROOT}core/namespaces/{ns}"),
            namespace: None,
            name: ns.clone(),
        });
    }
    if info_of(server, &gone.key).is_some_and(|i| i.custom) {
        refs.extend(crd::crd_of(&gone.key));
    }
    refs
}

/// Brings one object closer to where its owners and finalizers say it should be. A panic on
/// this object's data is caught here: the object is skipped with an Event and the others go on.
async fn settle(server: &Server, graph: &Graph, r: &ObjectRef, obj: &Value) {
    guarded(server, obj, settle_unguarded(server, graph, r, obj)).await;
}

/// The longest panic message an Event repeats.
const PANIC_MESSAGE_LIMIT: usize = 512;

/// Runs `step` about `obj`; a panic in it is logged and recorded as a Warning Event
/// `FailedSync` on the object instead of ending the controllers (which would stop every other
/// object's progress until the loop started over, and meet the same object again).
async fn guarded(server: &Server, obj: &Value, step: impl Future<Output = ()>) {
    let Err(panic) = std::panic::AssertUnwindSafe(step).catch_unwind().await else {
        return;
    };
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into());
    let mut what = what.as_str();
    if what.len() > PANIC_MESSAGE_LIMIT {
        let mut end = PANIC_MESSAGE_LIMIT;
        while !what.is_char_boundary(end) {
            end -= 1;
        }
        what = &what[..end];
    }
    tracing::error!(
        name = obj.name(),
        panic = what,
        "host controllers panicked on an object; skipped"
    );
    let message = format!("The host controllers failed on this object and skipped it: {what}");
    let recorded = event_log::record(
        server,
        "wasmkube-controller-manager",
        obj,
        EventType::Warning,
        "FailedSync",
        &message,
    )
    .await;
    if let Err(e) = recorded {
        tracing::warn!(error = %e, "recording a FailedSync event");
    }
}

async fn settle_unguarded(server: &Server, graph: &Graph, r: &ObjectRef, obj: &Value) {
    let Some(info) = info_of(server, &r.key) else {
        return;
    };
    let result = async {
        match (info.group.as_str(), info.kind.as_str()) {
            ("", "Namespace") => namespace::settle(server, &info, &r.name, obj).await?,
            ("", "ConfigMap") if r.name == namespace::ROOT_CA => {
                if let Some(ns) = &r.namespace {
                    namespace::publish_root_ca(server, ns).await?
                }
            }
            ("", "Secret") => {
                if let Some(ns) = &r.namespace {
                    tokens::settle(server, &info, ns, obj).await?
                }
            }
            ("apiextensions.k8s.io", "CustomResourceDefinition")
                if obj.is_deleting() && obj.has_finalizer(CRD_CLEANUP) =>
            {
                crd::finish(server, &info, obj, &r.name).await?
            }
            _ => {}
        }
        garbage::settle(server, graph, &info, r, obj).await
    }
    .await;
    if let Err(e) = result
        && !matches!(e, ApiError::NotFound { .. } | ApiError::Conflict { .. })
    {
        tracing::warn!(key = %r.key, error = %e, "host controller step failed");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasmkube_apiserver::registry::{WriteOptions, create_object};
    use wasmkube_store::embedded::EmbeddedStore;

    use super::*;

    /// A step that panics on an object leaves an Event on it and returns, instead of unwinding
    /// through the controllers' loop.
    #[tokio::test]
    async fn a_panic_on_one_object_becomes_an_event() {
        let dir = tempfile::tempdir().expect("test setup");
        let store = EmbeddedStore::open(&dir.path().join("store.redb")).expect("test setup");
        let server = Server::new(store, None).await.expect("test setup");
        let namespaces = server
            .registry()
            .by_kind("v1", "Namespace")
            .cloned()
            .expect("test setup");
        let default =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
        create_object(
            &server,
            &namespaces,
            None,
            default,
            WriteOptions::INTERNAL,
            &mut Vec::new(),
        )
        .await
        .expect("test setup");
        let obj = json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "odd", "uid": "u-1"}});
        guarded(&server, &obj, async { panic!("index out of range") }).await;
        let info = server
            .registry()
            .by_kind("v1", "Event")
            .cloned()
            .expect("test setup");
        let events = server
            .objects
            .list(&info, Some("default"), None, None, None, |_| true)
            .await
            .expect("test setup");
        let event = &events.items[0];
        assert_eq!(event["reason"], "FailedSync");
        assert_eq!(event["involvedObject"]["name"], "odd");
        assert!(
            event["message"]
                .as_str()
                .expect("test setup")
                .contains("index out of range")
        );
    }
}
