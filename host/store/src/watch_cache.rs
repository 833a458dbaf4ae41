//! The watch cache: a [`Store`] wrapper that serves watches from one upstream watch per resource.
//!
//! As kube-apiserver's cacher (`storage/cacher`): the first watch under a resource prefix (the
//! key's first [`WatchCacheConfig::depth`] segments, `/registry/GROUP/RESOURCE/` for the
//! apiserver) opens one upstream watch of the whole prefix (its [`reflector`]), whose events fill
//! a bounded [`ring`]; every watch of that resource, of one namespace or one object, reads the
//! ring from its own position, filtered by its prefix ([`watcher`]). A watch from a revision
//! older than the ring holds is served by the backend itself (correct, not cached; `Compacted`
//! if the backend says so). A watcher that falls behind the ring is ended with
//! [`StoreError::Compacted`], so that its client re-lists; memory stays bounded by the ring.
//! Reads and writes pass through. Design notes and figures: `docs/store.md`.

mod reflector;
mod ring;
mod watcher;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio::task::AbortHandle;

use self::reflector::{Reflector, Resource};
use self::ring::Ring;
pub use self::ring::RingLimits;
pub use self::watcher::BATCH as WATCHER_BUFFER;
use crate::{KeyValue, Range, RangeResult, Store, StoreError, Txn, TxnResult, WatchStream};

/// How a [`WatchCache`] is cut and sized.
#[derive(Clone, Copy, Debug)]
pub struct WatchCacheConfig {
    /// Path segments of a resource prefix: 3 for `/registry/GROUP/RESOURCE/`. A watch of a
    /// shorter prefix passes through to the backend.
    pub depth: usize,
    /// What each resource's ring holds.
    pub ring: RingLimits,
    /// How often a quiet upstream watch reports progress (what cached watches' bookmarks say).
    pub upstream_progress: Duration,
}

impl Default for WatchCacheConfig {
    fn default() -> Self {
        Self {
            depth: 3,
            ring: RingLimits {
                events: 4096,
                bytes: 16 << 20,
            },
            upstream_progress: Duration::from_secs(1),
        }
    }
}

/// What the cache holds for one resource prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceStats {
    pub root: String,
    /// Events and bytes in the ring.
    pub events: usize,
    pub bytes: usize,
    /// The oldest revision served from memory.
    pub from: i64,
    /// Watchers ended because they fell behind.
    pub too_slow: u64,
}

struct Cached {
    resource: Arc<Resource>,
    reflector: AbortHandle,
}

/// The watch cache. See the module documentation.
pub struct WatchCache {
    store: Arc<dyn Store>,
    config: WatchCacheConfig,
    resources: Mutex<HashMap<String, Cached>>,
}

impl std::fmt::Debug for WatchCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchCache")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The resource prefix `prefix` lies under: its first `depth` segments, `None` if it has fewer.
fn root(prefix: &str, depth: usize) -> Option<&str> {
    let end = prefix.match_indices('/').nth(depth).map(|(at, _)| at + 1)?;
    Some(&prefix[..end])
}

impl WatchCache {
    /// Wraps `store`. Needs a tokio runtime when watched (each resource's reflector is a task).
    pub fn new(store: Arc<dyn Store>, config: WatchCacheConfig) -> Arc<Self> {
        Arc::new(Self {
            store,
            config,
            resources: Mutex::new(HashMap::new()),
        })
    }

    /// What the cache holds, per resource prefix in key order.
    pub async fn stats(&self) -> Vec<ResourceStats> {
        let resources = self.resources.lock().await;
        let mut stats: Vec<ResourceStats> = resources
            .values()
            .map(|cached| {
                let resource = &cached.resource;
                let ring = resource.ring();
                let (events, bytes) = ring.held();
                ResourceStats {
                    root: resource.root.clone(),
                    events,
                    bytes,
                    from: ring.from(),
                    too_slow: resource.too_slow.load(Ordering::Relaxed),
                }
            })
            .collect();
        stats.sort_by(|a, b| a.root.cmp(&b.root));
        stats
    }

    /// The cached resource `root`, started at `start` or the next revision, whichever comes
    /// first (its upstream watch opened), if new.
    async fn resource(&self, root: &str, start: i64) -> Result<Arc<Resource>, StoreError> {
        if let Some(cached) = self.resources.lock().await.get(root) {
            return Ok(cached.resource.clone());
        }
        // Opened without the lock, so that a backend slow to answer delays no other resource.
        // Never from a future revision: the ring would not serve the watches of the present.
        let start = start.min(self.store.revision().await? + 1);
        let progress = self.config.upstream_progress;
        let upstream = self.store.watch(root, start, progress).await?;
        let mut resources = self.resources.lock().await;
        if let Some(cached) = resources.get(root) {
            // Another watch opened it meanwhile: this upstream watch is dropped.
            return Ok(cached.resource.clone());
        }
        let ring = Ring::new(start, self.config.ring);
        let (resource, reflector) =
            Reflector::new(self.store.clone(), root.to_owned(), ring, progress);
        let reflector = tokio::spawn(reflector.run(upstream)).abort_handle();
        tracing::debug!(root, start, "watch cache: new resource");
        resources.insert(
            root.to_owned(),
            Cached {
                resource: resource.clone(),
                reflector,
            },
        );
        Ok(resource)
    }
}

impl Drop for WatchCache {
    fn drop(&mut self) {
        // The reflectors hold the backend; their watchers end with `Closed`.
        for cached in self.resources.get_mut().values() {
            cached.reflector.abort();
        }
    }
}

#[async_trait]
impl Store for WatchCache {
    async fn get(&self, key: &str) -> Result<(Option<KeyValue>, i64), StoreError> {
        self.store.get(key).await
    }

    async fn range(&self, range: Range) -> Result<RangeResult, StoreError> {
        self.store.range(range).await
    }

    async fn count(&self, prefix: &str) -> Result<i64, StoreError> {
        self.store.count(prefix).await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError> {
        self.store.txn(txn).await
    }

    async fn watch(
        &self,
        prefix: &str,
        start_revision: i64,
        progress_interval: Duration,
    ) -> Result<WatchStream, StoreError> {
        let Some(root) = root(prefix, self.config.depth) else {
            return self
                .store
                .watch(prefix, start_revision, progress_interval)
                .await;
        };
        let start = match start_revision {
            0 => self.store.revision().await? + 1,
            given => given,
        };
        let resource = self.resource(root, start).await?;
        let position = resource.ring().position(start);
        match position {
            Some(position) => Ok(watcher::stream(
                resource,
                prefix.to_owned(),
                position,
                start,
                progress_interval,
            )),
            // Older than the ring: the backend replays it (or says it was compacted).
            None => self.store.watch(prefix, start, progress_interval).await,
        }
    }

    async fn compact(&self, revision: i64) -> Result<(), StoreError> {
        self.store.compact(revision).await
    }

    async fn revision(&self) -> Result<i64, StoreError> {
        self.store.revision().await
    }
}

#[cfg(test)]
mod tests {
    use super::root;

    #[test]
    fn resource_prefixes() {
        assert_eq!(
            root("/registry/core/pods/", 3),
            Some("/registry/core/pods/")
        );
        assert_eq!(
            root("/registry/core/pods/default/web", 3),
            Some("/registry/core/pods/")
        );
        assert_eq!(root("/registry/core/pods", 3), None);
        assert_eq!(root("/registry/", 3), None);
        assert_eq!(root("/w/0", 1), Some("/w/"));
        assert_eq!(root("", 1), None);
    }
}
