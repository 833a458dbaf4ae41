//! The reflector: the one upstream watch of a resource prefix, feeding its ring, re-established
//! when it breaks.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio::sync::watch;

use super::ring::Ring;
use crate::{Store, StoreError, WatchItem, WatchStream};

/// The first wait before re-establishing a broken upstream watch, doubled up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Upstream items applied to the ring before watchers are woken (those already arrived only).
const BATCH: usize = 256;

/// One cached resource prefix: its ring and the signal that it changed.
#[derive(Debug)]
pub(super) struct Resource {
    pub(super) root: String,
    ring: Mutex<Ring>,
    /// Changes each time the ring does; closed when the reflector stops.
    pub(super) changes: watch::Receiver<u64>,
    /// Watchers ended because they fell behind the ring.
    pub(super) too_slow: AtomicU64,
}

impl Resource {
    pub(super) fn ring(&self) -> MutexGuard<'_, Ring> {
        // A panic while holding the lock cannot leave the ring half-changed in a way readers
        // could not cope with: take it over.
        self.ring
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Feeds a [`Resource`] from `upstream` until aborted.
pub(super) struct Reflector {
    store: Arc<dyn Store>,
    resource: Arc<Resource>,
    changed: watch::Sender<u64>,
    progress: Duration,
}

impl Reflector {
    /// A resource whose ring starts empty at `ring`, and the reflector to feed it.
    pub(super) fn new(
        store: Arc<dyn Store>,
        root: String,
        ring: Ring,
        progress: Duration,
    ) -> (Arc<Resource>, Self) {
        let (changed, changes) = watch::channel(0);
        let resource = Arc::new(Resource {
            root,
            ring: Mutex::new(ring),
            changes,
            too_slow: AtomicU64::new(0),
        });
        let reflector = Self {
            store,
            resource: resource.clone(),
            changed,
            progress,
        };
        (resource, reflector)
    }

    /// Follows `upstream`, and a new upstream watch from where it stopped whenever it breaks.
    pub(super) async fn run(self, mut upstream: WatchStream) {
        let root = &self.resource.root;
        loop {
            match self.follow(&mut upstream).await {
                Some(err) => tracing::warn!(root, error = %err, "upstream watch failed"),
                None => tracing::warn!(root, "upstream watch ended"),
            }
            let mut backoff = MIN_BACKOFF;
            upstream = loop {
                tokio::time::sleep(backoff).await;
                match self.reopen().await {
                    Ok(stream) => break stream,
                    Err(err) => {
                        tracing::warn!(root, error = %err, "re-establishing the upstream watch");
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            };
        }
    }

    /// Applies upstream items to the ring until the stream fails (`Some`) or ends (`None`).
    async fn follow(&self, upstream: &mut WatchStream) -> Option<StoreError> {
        while let Some(item) = upstream.next().await {
            let mut failed = self.apply(item).err();
            // Apply whatever else has already arrived before waking the watchers.
            for _ in 0..BATCH {
                if failed.is_some() {
                    break;
                }
                match upstream.next().now_or_never() {
                    Some(Some(item)) => failed = self.apply(item).err(),
                    Some(None) => {
                        self.wake();
                        return None;
                    }
                    None => break,
                }
            }
            self.wake();
            if failed.is_some() {
                return failed;
            }
        }
        None
    }

    fn apply(&self, item: Result<WatchItem, StoreError>) -> Result<(), StoreError> {
        match item? {
            WatchItem::Event(event) => self.resource.ring().push(event),
            WatchItem::Progress { revision } => self.resource.ring().progress(revision),
        }
        Ok(())
    }

    fn wake(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A new upstream watch from the first revision not known to be complete. If the store
    /// compacted it meanwhile, the events in between are lost: the ring starts again at the
    /// current revision and every watcher is ended as too old, to re-list.
    async fn reopen(&self) -> Result<WatchStream, StoreError> {
        let root = &self.resource.root;
        let resume = self.resource.ring().known() + 1;
        match self.store.watch(root, resume, self.progress).await {
            Err(StoreError::Compacted { compacted, .. }) => {
                let now = self.store.revision().await? + 1;
                tracing::warn!(
                    root,
                    resume,
                    compacted,
                    "history lost while the upstream watch was down: watchers re-list"
                );
                self.resource.ring().reset(now);
                self.wake();
                self.store.watch(root, now, self.progress).await
            }
            other => other,
        }
    }
}
