//! Shared informers: one cached, continuously watched copy of a resource's objects, with handlers called on every change.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use wasmkube_apiserver::Server;
use wasmkube_apiserver::error::ApiError;
use wasmkube_apiserver::objects::decode_as;
use wasmkube_model::resource::ResourceInfo;
use wasmkube_store::{EventKind, StoreError, WatchItem};

/// How often every cached object is handed to the handlers again, to heal missed work.
const RESYNC: Duration = Duration::from_secs(600);

/// A change seen by an informer. `old` is the previous version (for updates and deletions).
#[derive(Clone, Debug)]
pub struct Change {
    pub object: Arc<Value>,
    pub old: Option<Arc<Value>>,
    pub deleted: bool,
}

pub type Handler = Arc<dyn Fn(&Change) + Send + Sync>;

/// `namespace/name` (or `name` for cluster-scoped objects), as the cache keys objects.
pub fn cache_key(obj: &Value) -> String {
    let text = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or_default();
    match text("/metadata/namespace") {
        "" => text("/metadata/name").to_string(),
        ns => format!("{ns}/{}", text("/metadata/name")),
    }
}

/// The cached objects of one resource, kept current by list + watch.
pub struct Informer {
    info: Arc<ResourceInfo>,
    cache: RwLock<BTreeMap<String, Arc<Value>>>,
    handlers: Mutex<Vec<Handler>>,
    synced: tokio::sync::watch::Sender<bool>,
}

impl Informer {
    pub fn new(info: Arc<ResourceInfo>) -> Arc<Self> {
        Arc::new(Informer {
            info,
            cache: RwLock::new(BTreeMap::new()),
            handlers: Mutex::new(Vec::new()),
            synced: tokio::sync::watch::channel(false).0,
        })
    }

    pub fn info(&self) -> &Arc<ResourceInfo> {
        &self.info
    }

    /// Calls `handler` for every change from now on (and for the objects already cached).
    pub fn add_handler(&self, handler: Handler) {
        for object in self.list(None) {
            handler(&Change {
                object,
                old: None,
                deleted: false,
            });
        }
        self.handlers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(handler);
    }

    /// One cached object.
    pub fn get(&self, namespace: Option<&str>, name: &str) -> Option<Arc<Value>> {
        let key = match namespace.filter(|ns| !ns.is_empty() && self.info.namespaced) {
            Some(ns) => format!("{ns}/{name}"),
            None => name.to_string(),
        };
        self.cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned()
    }

    /// Cached objects, in one namespace or all.
    pub fn list(&self, namespace: Option<&str>) -> Vec<Arc<Value>> {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        match namespace.filter(|ns| !ns.is_empty() && self.info.namespaced) {
            Some(ns) => {
                let prefix = format!("{ns}/");
                cache
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .map(|(_, v)| v.clone())
                    .collect()
            }
            None => cache.values().cloned().collect(),
        }
    }

    /// Waits until the first list has been cached.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|synced| *synced).await;
    }

    fn notify(&self, change: &Change) {
        let handlers = self
            .handlers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for handler in handlers {
            handler(change);
        }
    }

    /// Lists, then watches from the list's revision; relists when the watch falls behind
    /// compaction (410) or ends. Runs until the task is dropped.
    pub async fn run(self: Arc<Self>, server: Arc<Server>) {
        loop {
            match self.list_and_watch(&server).await {
                Err(ApiError::Store(e)) => {
                    tracing::warn!(resource = %self.info.qualified_resource(), error = %e, "informer relisting")
                }
                Err(e) => {
                    tracing::debug!(resource = %self.info.qualified_resource(), error = %e, "informer relisting")
                }
                Ok(()) => {}
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn list_and_watch(&self, server: &Server) -> Result<(), ApiError> {
        let page = server
            .objects
            .list(&self.info, None, None, None, None, |_| true)
            .await?;
        let fresh: BTreeMap<String, Arc<Value>> = page
            .items
            .into_iter()
            .map(|o| (cache_key(&o), Arc::new(o)))
            .collect();
        let old = std::mem::replace(
            &mut *self.cache.write().unwrap_or_else(|p| p.into_inner()),
            fresh.clone(),
        );
        // The store is swapped in whole; handlers hear what changed across the gap.
        for (key, object) in &fresh {
            let previous = old.get(key).cloned();
            if previous.as_ref().is_none_or(|p| p != object) {
                self.notify(&Change {
                    object: object.clone(),
                    old: previous,
                    deleted: false,
                });
            }
        }
        for object in old
            .iter()
            .filter(|(k, _)| !fresh.contains_key(*k))
            .map(|(_, o)| o)
        {
            self.notify(&Change {
                object: object.clone(),
                old: Some(object.clone()),
                deleted: true,
            });
        }
        self.synced.send_replace(true);
        let mut watch = server
            .objects
            .store()
            .watch(&self.info.key_prefix(), page.revision + 1, RESYNC)
            .await?;
        while let Some(item) = watch.next().await {
            match item {
                Ok(WatchItem::Event(event)) => {
                    let Ok(object) = decode_as(
                        &self.info,
                        if event.kind == EventKind::Put {
                            &event.kv
                        } else {
                            event.prev.as_ref().unwrap_or(&event.kv)
                        },
                    ) else {
                        continue;
                    };
                    let key = cache_key(&object);
                    let object = Arc::new(object);
                    let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
                    let change = match event.kind {
                        EventKind::Put => Change {
                            old: cache.insert(key, object.clone()),
                            object,
                            deleted: false,
                        },
                        EventKind::Delete => Change {
                            old: cache.remove(&key),
                            object,
                            deleted: true,
                        },
                    };
                    drop(cache);
                    self.notify(&change);
                }
                Ok(WatchItem::Progress { .. }) => {
                    // Quiet for a resync period: hand every object to the handlers again.
                    for object in self.list(None) {
                        self.notify(&Change {
                            old: Some(object.clone()),
                            object,
                            deleted: false,
                        });
                    }
                }
                Err(StoreError::Compacted { .. }) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}
