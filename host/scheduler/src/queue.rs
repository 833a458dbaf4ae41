//! The scheduling queue: an active heap by priority then age, a backoff queue (1 s doubling to
//! 10 s per attempt), and the unschedulable pods, retried on cluster events and every 60 s.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::cache::{PodKey, pod_key};

/// The first backoff; it doubles with each failed attempt up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Unschedulable pods are retried at least this often.
pub const UNSCHEDULABLE_RETRY: Duration = Duration::from_secs(60);

/// A pending pod and its history in the queue.
#[derive(Debug, Clone)]
pub struct QueuedPod {
    pub pod: Arc<Value>,
    pub priority: i32,
    /// When the pod first entered the queue: orders pods of equal priority, and starts the
    /// queue-to-bind latency.
    pub enqueued: Instant,
    /// Failed scheduling attempts so far.
    pub attempts: u32,
}

impl QueuedPod {
    pub fn key(&self) -> PodKey {
        pod_key(&self.pod)
    }

    fn backoff(&self) -> Duration {
        let doublings = self.attempts.saturating_sub(1).min(16);
        (INITIAL_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
    }
}

/// Where a pod is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Active,
    /// Backing off until then.
    Backoff(Instant),
    /// Unschedulable since then.
    Unschedulable(Instant),
    /// Popped: being scheduled or bound.
    InFlight,
}

/// One entry of the active heap; stale entries (pods moved or gone) are skipped on pop.
struct Entry {
    priority: i32,
    enqueued: Instant,
    seq: u64,
    key: PodKey,
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.enqueued.cmp(&self.enqueued))
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}

#[derive(Default)]
pub struct SchedulingQueue {
    pods: HashMap<PodKey, (QueuedPod, Place)>,
    active: BinaryHeap<Entry>,
    seq: u64,
}

impl SchedulingQueue {
    fn push_active(&mut self, key: PodKey) {
        let Some((queued, place)) = self.pods.get_mut(&key) else {
            return;
        };
        *place = Place::Active;
        self.seq += 1;
        self.active.push(Entry {
            priority: queued.priority,
            enqueued: queued.enqueued,
            seq: self.seq,
            key,
        });
    }

    /// A pending pod was added or changed. A new pod goes to the active queue; a changed
    /// unschedulable one is retried at once (its change may make it fit).
    pub fn add(&mut self, pod: Arc<Value>, priority: i32, now: Instant) {
        let key = pod_key(&pod);
        match self.pods.get_mut(&key) {
            Some((queued, place)) => {
                queued.pod = pod;
                queued.priority = priority;
                if matches!(place, Place::Unschedulable(_)) {
                    self.push_active(key);
                }
            }
            None => {
                let queued = QueuedPod {
                    pod,
                    priority,
                    enqueued: now,
                    attempts: 0,
                };
                self.pods.insert(key.clone(), (queued, Place::Active));
                self.push_active(key);
            }
        }
    }

    /// The pod is gone, bound, or no longer this scheduler's.
    pub fn remove(&mut self, key: &PodKey) {
        self.pods.remove(key);
    }

    /// The next pod to schedule: highest priority, then oldest.
    pub fn pop(&mut self) -> Option<QueuedPod> {
        while let Some(entry) = self.active.pop() {
            if let Some((queued, place @ Place::Active)) = self.pods.get_mut(&entry.key)
                && queued.enqueued == entry.enqueued
            {
                *place = Place::InFlight;
                return Some(queued.clone());
            }
        }
        None
    }

    /// A popped pod fit nowhere: it waits for a cluster event or [`UNSCHEDULABLE_RETRY`].
    pub fn unschedulable(&mut self, key: &PodKey, now: Instant) {
        if let Some((queued, place)) = self.pods.get_mut(key) {
            queued.attempts += 1;
            *place = Place::Unschedulable(now);
        }
    }

    /// A popped pod failed for another reason (its binding, a policy error): it backs off.
    pub fn backoff(&mut self, key: &PodKey, now: Instant) {
        if let Some((queued, place)) = self.pods.get_mut(key) {
            queued.attempts += 1;
            *place = Place::Backoff(now + queued.backoff());
        }
    }

    /// A cluster event that may make unschedulable pods fit (a node added or changed, a pod
    /// removed): they move to the active queue, or to backoff while their backoff lasts.
    pub fn move_unschedulable(&mut self, now: Instant) {
        let keys: Vec<PodKey> = self
            .pods
            .iter()
            .filter(|(_, (_, place))| matches!(place, Place::Unschedulable(_)))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.retry(key, now);
        }
    }

    fn retry(&mut self, key: PodKey, now: Instant) {
        let Some((queued, place)) = self.pods.get_mut(&key) else {
            return;
        };
        let Place::Unschedulable(since) = *place else {
            return;
        };
        let until = since + queued.backoff();
        if until > now {
            *place = Place::Backoff(until);
        } else {
            self.push_active(key);
        }
    }

    /// Moves pods whose backoff ended to the active queue, and pods unschedulable for
    /// [`UNSCHEDULABLE_RETRY`] too. Returns when to call again at the latest.
    pub fn flush(&mut self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut ready = Vec::new();
        for (key, (_, place)) in &self.pods {
            let due = match place {
                Place::Backoff(until) => *until,
                Place::Unschedulable(since) => *since + UNSCHEDULABLE_RETRY,
                Place::Active | Place::InFlight => continue,
            };
            if due <= now {
                ready.push(key.clone());
            } else {
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
        for key in ready {
            self.push_active(key);
        }
        next
    }

    /// Pods in the queue in any state.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// Pods waiting as unschedulable.
    pub fn unschedulable_count(&self) -> usize {
        self.pods
            .values()
            .filter(|(_, p)| matches!(p, Place::Unschedulable(_)))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(name: &str) -> Arc<Value> {
        Arc::new(json!({"metadata": {"name": name, "namespace": "default"}}))
    }

    fn name(q: &QueuedPod) -> String {
        q.key().1
    }

    #[test]
    fn priority_then_age() {
        let mut q = SchedulingQueue::default();
        let t = Instant::now();
        q.add(pod("old-low"), 0, t);
        q.add(pod("high"), 10, t + Duration::from_millis(2));
        q.add(pod("new-low"), 0, t + Duration::from_millis(1));
        let order: Vec<String> = std::iter::from_fn(|| q.pop()).map(|p| name(&p)).collect();
        assert_eq!(order, ["high", "old-low", "new-low"]);
    }

    #[test]
    fn backoff_doubles_to_ten_seconds_and_unschedulable_waits_for_events() {
        let mut q = SchedulingQueue::default();
        let t = Instant::now();
        q.add(pod("p"), 0, t);
        let key = q.pop().map(|p| p.key()).expect("popped");
        for (attempt, wait) in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (6, 10)] {
            let now = t + Duration::from_secs(100 * attempt);
            q.backoff(&key, now);
            assert!(q.pop().is_none());
            assert_eq!(q.flush(now), Some(now + Duration::from_secs(wait)));
            q.flush(now + Duration::from_secs(wait));
            assert!(q.pop().is_some(), "ready after {wait} s");
        }

        let mut q = SchedulingQueue::default();
        q.add(pod("u"), 0, t);
        let key = q.pop().map(|p| p.key()).expect("popped");
        q.unschedulable(&key, t);
        assert_eq!(q.unschedulable_count(), 1);
        // An event within the backoff moves it to backoff; after it, straight to active.
        q.move_unschedulable(t + Duration::from_millis(500));
        assert!(q.pop().is_none());
        q.flush(t + Duration::from_secs(1));
        assert!(q.pop().is_some());
        q.unschedulable(&key, t + Duration::from_secs(2));
        q.move_unschedulable(t + Duration::from_secs(10));
        assert!(q.pop().is_some());
        // Without events, the 60 s retry.
        q.unschedulable(&key, t + Duration::from_secs(20));
        assert_eq!(
            q.flush(t + Duration::from_secs(21)),
            Some(t + Duration::from_secs(80))
        );
        q.flush(t + Duration::from_secs(80));
        assert!(q.pop().is_some());
        q.remove(&key);
        assert!(q.is_empty());
    }
}
