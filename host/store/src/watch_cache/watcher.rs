//! One cached watch: a position in its resource's ring, read as the consumer asks for more.
//!
//! The watcher holds no queue of its own beyond one batch ([`BATCH`], events shared with the
//! ring): a consumer that stops reading only stops moving its position. When the ring drops
//! events the watcher has not read, it is ended with [`StoreError::Compacted`] (410 "too old
//! resource version" over HTTP), as kube-apiserver ends a watcher whose buffer is full, and the
//! client re-lists.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::{Instant, sleep_until};

use super::reflector::Resource;
use super::ring::{Read, RingLimits};
use crate::{Event, StoreError, WatchItem, WatchStream};

/// What a watcher takes from the ring at once, its whole buffer: this many events, and beyond
/// the first no more than this many bytes.
pub const BATCH: RingLimits = RingLimits {
    events: 64,
    bytes: 1 << 20,
};
/// Events looked at per read, matching or not, so that the ring's lock is held briefly.
const SCAN: usize = 1024;

struct Watcher {
    resource: Arc<Resource>,
    changes: tokio::sync::watch::Receiver<u64>,
    prefix: String,
    position: u64,
    /// The first revision asked for: a watcher from a revision the ring has not reached yet
    /// skips the events before it.
    start: i64,
    /// The revision the next event must have at least: everything before was delivered.
    next: i64,
    progress: Duration,
    quiet_until: Instant,
    pending: VecDeque<Arc<Event>>,
    ended: bool,
}

/// A watch of `prefix` (under the resource's root) from `position`, the first event at or after
/// revision `start`.
pub(super) fn stream(
    resource: Arc<Resource>,
    prefix: String,
    position: u64,
    start: i64,
    progress: Duration,
) -> WatchStream {
    let watcher = Watcher {
        changes: resource.changes.clone(),
        resource,
        prefix,
        position,
        start,
        next: start,
        progress,
        quiet_until: Instant::now() + progress,
        pending: VecDeque::new(),
        ended: false,
    };
    Box::pin(futures::stream::unfold(watcher, |mut w| async move {
        let item = w.next().await?;
        Some((item, w))
    }))
}

impl Watcher {
    async fn next(&mut self) -> Option<Result<WatchItem, StoreError>> {
        if self.ended {
            return None;
        }
        loop {
            if let Some(event) = self.pending.pop_front() {
                if event.revision() < self.start {
                    continue;
                }
                self.next = event.revision();
                self.quiet_until = Instant::now() + self.progress;
                return Some(Ok(WatchItem::Event(Event::clone(&event))));
            }
            // Seen before reading, so a change after the read wakes the wait below.
            self.changes.borrow_and_update();
            let read = self
                .resource
                .ring()
                .read(self.position, &self.prefix, BATCH, SCAN);
            match read {
                Read::Events(events, position) => {
                    self.position = position;
                    self.pending.extend(events);
                    continue;
                }
                Read::Behind { from } => return Some(Err(self.too_slow(from))),
                Read::Nothing => {}
            }
            tokio::select! {
                changed = self.changes.changed() => if changed.is_err() {
                    self.ended = true;
                    return Some(Err(StoreError::Closed));
                },
                () = sleep_until(self.quiet_until), if !self.progress.is_zero() => {
                    self.quiet_until = Instant::now() + self.progress;
                    let known = self.resource.ring().known();
                    return Some(Ok(WatchItem::Progress { revision: known.max(self.next - 1) }));
                }
            }
        }
    }

    fn too_slow(&mut self, from: i64) -> StoreError {
        self.ended = true;
        self.resource.too_slow.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            prefix = self.prefix,
            next = self.next,
            from,
            "watcher fell behind the watch cache: ended as too old"
        );
        StoreError::Compacted {
            requested: self.next,
            compacted: from,
        }
    }
}
