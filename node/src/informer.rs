//! Informers: a list-and-watch cache of one kind of object that the agent's controllers (the
//! service proxy, the cluster DNS) read from and are told about changes by key.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::Metadata;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use crate::api::Api;
use crate::watcher::{Change, Watcher};

/// An object's key: `namespace/name`, or `name` for a cluster-scoped kind.
pub type Key = String;

/// How many changed keys a slow subscriber may fall behind before it is told to resync all.
const BACKLOG: usize = 4096;

/// The key of an object from its metadata.
pub fn key_of(meta: &ObjectMeta) -> Key {
    let name = meta.name.as_deref().unwrap_or_default();
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_string(),
    }
}

/// The Services and EndpointSlices of the cluster, watched once for the proxy and the DNS server.
#[derive(Clone)]
pub struct ServiceCaches {
    pub services: Arc<Informer<Service>>,
    pub slices: Arc<Informer<EndpointSlice>>,
}

impl ServiceCaches {
    /// Starts both informers.
    pub fn start(api: &Api) -> ServiceCaches {
        ServiceCaches {
            services: Informer::start(api.clone(), "/api/v1/services"),
            slices: Informer::start(api.clone(), "/apis/discovery.k8s.io/v1/endpointslices"),
        }
    }
}

/// The cache of one kind, kept current by a task that lists and watches one API path.
pub struct Informer<T> {
    objects: RwLock<HashMap<Key, Arc<T>>>,
    changes: broadcast::Sender<Key>,
    synced: watch::Sender<bool>,
}

impl<T> Informer<T>
where
    T: Metadata<Ty = ObjectMeta> + DeserializeOwned + Send + Sync + 'static,
{
    /// An empty informer, not yet listing (tests feed it with [`Informer::replace`] and
    /// [`Informer::apply`]).
    pub fn new() -> Arc<Informer<T>> {
        Arc::new(Informer {
            objects: RwLock::new(HashMap::new()),
            changes: broadcast::channel(BACKLOG).0,
            synced: watch::channel(false).0,
        })
    }

    /// An informer of the objects at `path` (a collection, e.g. `/api/v1/services`), listing
    /// and watching in a task of its own for as long as the process runs.
    pub fn start(api: Api, path: impl Into<String>) -> Arc<Informer<T>> {
        let informer = Informer::new();
        tokio::spawn(informer.clone().run(api, path.into()));
        informer
    }

    /// The object with this key.
    pub fn get(&self, key: &str) -> Option<Arc<T>> {
        self.read().get(key).cloned()
    }

    /// Every object, in no particular order.
    pub fn list(&self) -> Vec<Arc<T>> {
        self.read().values().cloned().collect()
    }

    /// The keys that change from now on. A receiver that falls behind gets `Lagged` and should
    /// look at every object again.
    pub fn subscribe(&self) -> broadcast::Receiver<Key> {
        self.changes.subscribe()
    }

    /// Waits until the first list is in the cache.
    pub async fn synced(&self) {
        let mut synced = self.synced.subscribe();
        let _ = synced.wait_for(|s| *s).await;
    }

    /// Takes a fresh list: objects gone from it are removed, new and changed ones (by
    /// resourceVersion) stored, and each of their keys announced.
    pub fn replace(&self, items: Vec<T>) {
        let mut fresh: HashMap<Key, Arc<T>> = items
            .into_iter()
            .map(|o| (key_of(o.metadata()), Arc::new(o)))
            .collect();
        let mut changed = Vec::new();
        {
            let mut objects = self.objects.write().unwrap_or_else(|e| e.into_inner());
            for (key, old) in objects.iter() {
                match fresh.get(key) {
                    Some(new)
                        if new.metadata().resource_version == old.metadata().resource_version =>
                    {
                        fresh.insert(key.clone(), old.clone());
                    }
                    _ => changed.push(key.clone()),
                }
            }
            changed.extend(fresh.keys().filter(|k| !objects.contains_key(*k)).cloned());
            *objects = fresh;
        }
        self.synced.send_replace(true);
        for key in changed {
            let _ = self.changes.send(key);
        }
    }

    /// Applies one watch event (`ADDED`, `MODIFIED` or `DELETED`) and announces its key.
    pub fn apply(&self, kind: &str, object: T) {
        let key = key_of(object.metadata());
        {
            let mut objects = self.objects.write().unwrap_or_else(|e| e.into_inner());
            if kind == "DELETED" {
                objects.remove(&key);
            } else {
                objects.insert(key.clone(), Arc::new(object));
            }
        }
        let _ = self.changes.send(key);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Key, Arc<T>>> {
        self.objects.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Lists, then watches (see [`Watcher`]).
    async fn run(self: Arc<Self>, api: Api, path: String) {
        let mut watcher = Watcher::new(api, path);
        loop {
            match watcher.next().await {
                Change::Listed(items) => {
                    self.replace(items.into_iter().filter_map(decode).collect())
                }
                Change::Event(event) => {
                    if let Some(object) = decode(event.object) {
                        self.apply(&event.kind, object);
                    }
                }
            }
        }
    }
}

/// An object off the wire; one that does not decode is skipped (and logged).
fn decode<T: DeserializeOwned>(value: Value) -> Option<T> {
    serde_json::from_value(value)
        .inspect_err(|e| tracing::warn!(error = %e, "an object the informer cannot read"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn cm(ns: &str, name: &str, version: &str) -> ConfigMap {
        serde_json::from_value(serde_json::json!({"metadata": {
            "namespace": ns, "name": name, "resourceVersion": version}}))
        .expect("test setup")
    }

    fn drain(rx: &mut broadcast::Receiver<Key>) -> Vec<Key> {
        let mut keys = Vec::new();
        while let Ok(key) = rx.try_recv() {
            keys.push(key);
        }
        keys.sort();
        keys
    }

    #[test]
    fn a_relist_announces_only_what_changed() {
        let informer = Informer::<ConfigMap>::new();
        let mut rx = informer.subscribe();
        informer.replace(vec![cm("a", "x", "1"), cm("a", "y", "1")]);
        assert_eq!(drain(&mut rx), ["a/x", "a/y"]);
        informer.replace(vec![cm("a", "x", "1"), cm("b", "z", "2")]);
        assert_eq!(drain(&mut rx), ["a/y", "b/z"]);
        assert!(informer.get("a/y").is_none());
        assert_eq!(informer.list().len(), 2);
    }

    #[test]
    fn watch_events_update_the_cache() {
        let informer = Informer::<ConfigMap>::new();
        let mut rx = informer.subscribe();
        informer.apply("ADDED", cm("a", "x", "1"));
        informer.apply("MODIFIED", cm("a", "x", "2"));
        let version = informer
            .get("a/x")
            .expect("test setup")
            .metadata
            .resource_version
            .clone();
        assert_eq!(version.as_deref(), Some("2"));
        informer.apply("DELETED", cm("a", "x", "2"));
        assert!(informer.get("a/x").is_none());
        assert_eq!(drain(&mut rx), ["a/x", "a/x", "a/x"]);
    }
}
