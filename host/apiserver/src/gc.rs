//! Native controllers of the host: the garbage collector (owner references, propagation policies) and namespace lifecycle.
//!
//! They stay native rather than Wasm because they act on every kind at once through the
//! store's single watch, and must keep working even when no plugin is loaded.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use wasmkube_model::resource::ResourceInfo;
use wasmkube_store::{EventKind, Range, WatchItem};

use crate::Server;
use crate::error::ApiError;
use crate::handlers::{
    DeleteOptions, Propagation, Update, delete_object, remove_finalizer, update_with,
};
use crate::objects::decode;

const ROOT: &str = "/registry/";
/// The finalizer that holds a CRD until its custom resources are gone.
pub const CRD_CLEANUP: &str = "customresourcecleanup.apiextensions.k8s.io";

/// An object the collector knows: where it is and whom it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct ObjectRef {
    key: String,
    namespace: Option<String>,
    name: String,
}

#[derive(Default)]
struct Graph {
    /// uid → the object with that uid.
    alive: HashMap<String, ObjectRef>,
    /// owner uid → dependents.
    dependents: HashMap<String, BTreeSet<ObjectRef>>,
}

fn uid(obj: &Value) -> Option<String> {
    obj.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .map(String::from)
}

fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r["uid"].as_str().map(String::from))
        .collect()
}

fn object_ref(key: &str, obj: &Value) -> ObjectRef {
    ObjectRef {
        key: key.to_string(),
        namespace: obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(String::from),
        name: obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    }
}

fn has_finalizer(obj: &Value, f: &str) -> bool {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|l| l.iter().any(|x| x == f))
}

fn deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

impl Graph {
    fn insert(&mut self, r: &ObjectRef, obj: &Value) {
        if let Some(uid) = uid(obj) {
            self.alive.insert(uid, r.clone());
        }
        for owner in owner_uids(obj) {
            self.dependents.entry(owner).or_default().insert(r.clone());
        }
    }

    fn remove(&mut self, r: &ObjectRef, obj: &Value) {
        if let Some(uid) = uid(obj) {
            self.alive.remove(&uid);
        }
        for owner in owner_uids(obj) {
            if let Some(set) = self.dependents.get_mut(&owner) {
                set.remove(r);
                if set.is_empty() {
                    self.dependents.remove(&owner);
                }
            }
        }
    }
}

/// Runs the collector until the store's watch ends; restarts itself on errors.
pub fn spawn(server: Arc<Server>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(e) = run(&server).await {
                tracing::warn!(error = %e, "garbage collector restarting");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

async fn run(server: &Arc<Server>) -> Result<(), ApiError> {
    let store = server.objects.store().clone();
    let revision = store.revision().await?;
    let all = store
        .range(Range {
            prefix: ROOT.into(),
            start: None,
            limit: 0,
            revision,
        })
        .await?;
    let mut graph = Graph::default();
    let mut objects = Vec::new();
    for kv in &all.kvs {
        // Allocation claims (`/registry/ranges/…`) live beside the objects and are not objects.
        let Ok(obj) = decode(kv) else { continue };
        let r = object_ref(&kv.key, &obj);
        graph.insert(&r, &obj);
        objects.push((r, obj));
    }
    for (r, obj) in &objects {
        settle(server, &graph, r, obj).await;
    }
    let mut watch = store
        .watch(ROOT, revision + 1, Duration::from_secs(60))
        .await?;
    while let Some(item) = watch.next().await {
        let WatchItem::Event(event) = item? else {
            continue;
        };
        match event.kind {
            EventKind::Put => {
                let Ok(obj) = decode(&event.kv) else { continue };
                let r = object_ref(&event.kv.key, &obj);
                if let Some(prev) = event.prev.as_ref().and_then(|kv| decode(kv).ok()) {
                    graph.remove(&r, &prev);
                }
                graph.insert(&r, &obj);
                settle(server, &graph, &r, &obj).await;
            }
            EventKind::Delete => {
                let Some(prev) = event.prev.as_ref().and_then(|kv| decode(kv).ok()) else {
                    continue;
                };
                let r = object_ref(&event.kv.key, &prev);
                graph.remove(&r, &prev);
                if let Some(uid) = uid(&prev) {
                    for dependent in graph.dependents.get(&uid).cloned().unwrap_or_default() {
                        if let Some(obj) = current(server, &dependent).await {
                            settle(server, &graph, &dependent, &obj).await;
                        }
                    }
                }
                // An owner waiting in foreground deletion, or a terminating namespace, may now be done.
                for owner in owner_uids(&prev) {
                    if let Some(owner_ref) = graph.alive.get(&owner).cloned() {
                        if let Some(obj) = current(server, &owner_ref).await {
                            settle(server, &graph, &owner_ref, &obj).await;
                        }
                    }
                }
                // A CRD being deleted waits for its last custom resource to go.
                if info_of(server, &r.key).is_some_and(|i| i.custom) {
                    let crd_key = r
                        .key
                        .strip_prefix(ROOT)
                        .and_then(|k| k.split_once('/'))
                        .and_then(|(group, rest)| {
                            rest.split('/')
                                .next()
                                .map(|plural| format!("{plural}.{group}"))
                        });
                    if let Some(crd_name) = crd_key {
                        let crd_ref = ObjectRef {
                            key: format!(
                                "{ROOT}apiextensions.k8s.io/customresourcedefinitions/{crd_name}"
                            ),
                            namespace: None,
                            name: crd_name,
                        };
                        if let Some(obj) = current(server, &crd_ref).await.filter(deleting) {
                            settle(server, &graph, &crd_ref, &obj).await;
                        }
                    }
                }
                if let Some(ns) = &r.namespace {
                    let ns_ref = ObjectRef {
                        key: format!("{ROOT}core/namespaces/{ns}"),
                        namespace: None,
                        name: ns.clone(),
                    };
                    if let Some(obj) = current(server, &ns_ref).await.filter(deleting) {
                        settle(server, &graph, &ns_ref, &obj).await;
                    }
                }
            }
        }
    }
    Ok(())
}

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

/// Brings one object closer to where its owners and finalizers say it should be.
async fn settle(server: &Server, graph: &Graph, r: &ObjectRef, obj: &Value) {
    if let Err(e) = try_settle(server, graph, r, obj).await {
        if !matches!(e, ApiError::NotFound { .. } | ApiError::Conflict { .. }) {
            tracing::warn!(key = %r.key, error = %e, "garbage collection step failed");
        }
    }
}

async fn try_settle(
    server: &Server,
    graph: &Graph,
    r: &ObjectRef,
    obj: &Value,
) -> Result<(), ApiError> {
    let Some(info) = info_of(server, &r.key) else {
        return Ok(());
    };
    let ns = r.namespace.as_deref();
    let my_uid = uid(obj).unwrap_or_default();
    let dependents = graph.dependents.get(&my_uid).cloned().unwrap_or_default();
    if deleting(obj) && has_finalizer(obj, "orphan") {
        for dependent in &dependents {
            drop_owner(server, dependent, &my_uid).await?;
        }
        return remove_finalizer(server, &info, ns, &r.name, "orphan").await;
    }
    if deleting(obj) && has_finalizer(obj, "foregroundDeletion") {
        if dependents.is_empty() {
            return remove_finalizer(server, &info, ns, &r.name, "foregroundDeletion").await;
        }
        let opts = DeleteOptions {
            propagation: Propagation::Foreground,
            ..DeleteOptions::background()
        };
        for dependent in &dependents {
            delete(server, dependent, &opts).await?;
        }
        return Ok(());
    }
    if info.kind == "Namespace" && info.group.is_empty() && deleting(obj) {
        return finish_namespace(server, &info, &r.name).await;
    }
    if info.kind == "CustomResourceDefinition" && deleting(obj) && has_finalizer(obj, CRD_CLEANUP) {
        return finish_crd(server, &info, obj, &r.name).await;
    }
    let owners = owner_uids(obj);
    if owners.is_empty() || deleting(obj) {
        return Ok(());
    }
    let gone: HashSet<&String> = owners
        .iter()
        .filter(|o| !graph.alive.contains_key(*o))
        .collect();
    if gone.len() == owners.len() {
        delete(server, r, &DeleteOptions::background()).await
    } else {
        for owner in gone {
            drop_owner(server, r, owner).await?;
        }
        Ok(())
    }
}

async fn delete(server: &Server, r: &ObjectRef, opts: &DeleteOptions) -> Result<(), ApiError> {
    let Some(info) = info_of(server, &r.key) else {
        return Ok(());
    };
    delete_object(server, &info, r.namespace.as_deref(), &r.name, opts)
        .await
        .map(|_| ())
}

/// Removes the owner reference to `owner_uid` from `r`.
async fn drop_owner(server: &Server, r: &ObjectRef, owner_uid: &str) -> Result<(), ApiError> {
    let Some(info) = info_of(server, &r.key) else {
        return Ok(());
    };
    let update = Update::internal(&info, r.namespace.as_deref(), &r.name);
    update_with(
        server,
        &update,
        |cur| {
            let mut new = cur.clone();
            if let Some(refs) = new["metadata"]["ownerReferences"].as_array_mut() {
                refs.retain(|o| o["uid"] != owner_uid);
            }
            Ok(new)
        },
        &mut Vec::new(),
    )
    .await
    .map(|_| ())
}

/// Deletes everything in a terminating namespace; once it is empty, removes the `kubernetes`
/// finalizer so the namespace itself goes.
async fn finish_namespace(
    server: &Server,
    info: &ResourceInfo,
    name: &str,
) -> Result<(), ApiError> {
    let mut remaining = 0;
    let registry = server.registry();
    for resource in registry.all().iter().filter(|r| r.namespaced) {
        // Each group+plural once, whatever the number of served versions.
        if registry
            .all()
            .iter()
            .find(|r| r.group == resource.group && r.plural == resource.plural)
            .is_some_and(|first| !Arc::ptr_eq(first, resource))
        {
            continue;
        }
        let page = server
            .objects
            .list(resource, Some(name), None, None, None, |_| true)
            .await?;
        for obj in page.items {
            remaining += 1;
            let obj_name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !deleting(&obj) {
                match delete_object(
                    server,
                    resource,
                    Some(name),
                    obj_name,
                    &DeleteOptions::background(),
                )
                .await
                {
                    Ok(_) | Err(ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    if remaining > 0 {
        return Ok(());
    }
    let update = Update::internal(info, None, name);
    update_with(
        server,
        &update,
        |cur| {
            let mut new = cur.clone();
            new["spec"]["finalizers"] = json!([]);
            Ok(new)
        },
        &mut Vec::new(),
    )
    .await
    .map(|_| ())
}

/// Deletes every custom resource of a terminating CRD; once none is left, removes its cleanup
/// finalizer so the CRD itself goes.
async fn finish_crd(
    server: &Server,
    info: &ResourceInfo,
    crd: &Value,
    name: &str,
) -> Result<(), ApiError> {
    let group = crd
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let plural = crd
        .pointer("/spec/names/plural")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let registry = server.registry();
    if let Some(resource) = registry
        .all()
        .iter()
        .find(|r| r.custom && r.group == group && r.plural == plural)
    {
        let page = server
            .objects
            .list(resource, None, None, None, None, |_| true)
            .await?;
        if !page.items.is_empty() {
            for obj in page.items.iter().filter(|o| !deleting(o)) {
                let obj_name = obj
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str);
                match delete_object(server, resource, ns, obj_name, &DeleteOptions::background())
                    .await
                {
                    Ok(_) | Err(ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(());
        }
    }
    remove_finalizer(server, info, None, name, CRD_CLEANUP).await
}
