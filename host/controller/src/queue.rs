//! The work queue: deduplicated keys, never one key twice at once, per-key exponential backoff and an overall rate limit.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Per-key backoff: 5 ms doubling up to 1000 s (client-go's defaults).
const BASE_DELAY: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_secs(1000);
/// Overall limit on retries: 10 per second with bursts of 100.
const RATE: f64 = 10.0;
const BURST: f64 = 100.0;

struct State<K> {
    /// Keys ready to be handed out, in order.
    ready: VecDeque<K>,
    /// Keys waiting (in `ready`, or to be put back when their processing ends).
    dirty: HashSet<K>,
    /// Keys handed out and not yet `done`.
    processing: HashSet<K>,
    /// Consecutive failures per key.
    failures: HashMap<K, u32>,
    /// The overall token bucket: tokens left and when it was last filled.
    tokens: f64,
    filled: Instant,
    shut_down: bool,
}

/// A queue of keys to reconcile, shared by a controller's workers.
pub struct WorkQueue<K> {
    state: Mutex<State<K>>,
    notify: Notify,
}

impl<K: Clone + Eq + Hash + Send + 'static> WorkQueue<K> {
    pub fn new() -> Arc<Self> {
        Arc::new(WorkQueue {
            state: Mutex::new(State {
                ready: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                failures: HashMap::new(),
                tokens: BURST,
                filled: Instant::now(),
                shut_down: false,
            }),
            notify: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `key` unless it is already waiting; a key being processed is queued again when
    /// its processing ends.
    pub fn add(&self, key: K) {
        let mut state = self.lock();
        if state.shut_down || !state.dirty.insert(key.clone()) {
            return;
        }
        if !state.processing.contains(&key) {
            state.ready.push_back(key);
            drop(state);
            self.notify.notify_one();
        }
    }

    /// Queues `key` after `delay`.
    pub fn add_after(self: &Arc<Self>, key: K, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(key);
        });
    }

    /// Queues `key` again after a failure: the later of its own backoff and the overall limit.
    pub fn add_rate_limited(self: &Arc<Self>, key: K) {
        let delay = {
            let mut state = self.lock();
            let failures = state.failures.entry(key.clone()).or_insert(0);
            *failures += 1;
            let exponent = (*failures - 1).min(30);
            let backoff = BASE_DELAY
                .saturating_mul(1u32 << exponent.min(31))
                .min(MAX_DELAY);
            backoff.max(take_token(&mut state))
        };
        self.add_after(key, delay);
    }

    /// How many times `key` has failed in a row.
    pub fn failures(&self, key: &K) -> u32 {
        self.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// Forgets `key`'s failures (after a success).
    pub fn forget(&self, key: &K) {
        self.lock().failures.remove(key);
    }

    /// The next key to process, waiting for one; `None` once shut down.
    pub async fn get(&self) -> Option<K> {
        loop {
            let notified = self.notify.notified();
            {
                let mut state = self.lock();
                if let Some(key) = state.ready.pop_front() {
                    state.dirty.remove(&key);
                    state.processing.insert(key.clone());
                    return Some(key);
                }
                if state.shut_down {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Ends the processing of `key`; if it was added meanwhile, it is ready again.
    pub fn done(&self, key: &K) {
        let mut state = self.lock();
        state.processing.remove(key);
        if state.dirty.contains(key) {
            state.ready.push_back(key.clone());
            drop(state);
            self.notify.notify_one();
        }
    }

    /// Keys waiting or being processed.
    pub fn len(&self) -> usize {
        let state = self.lock();
        state.dirty.len() + state.processing.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wakes every worker; `get` answers `None` from now on.
    pub fn shut_down(&self) {
        self.lock().shut_down = true;
        self.notify.notify_waiters();
    }
}

/// Takes a token from the overall bucket; returns how long until it is really available.
fn take_token<K>(state: &mut State<K>) -> Duration {
    let now = Instant::now();
    let elapsed = now.duration_since(state.filled).as_secs_f64();
    state.tokens = (state.tokens + elapsed * RATE).min(BURST) - 1.0;
    state.filled = now;
    if state.tokens >= 0.0 {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(-state.tokens / RATE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn deduplicates_and_never_hands_out_a_key_twice_at_once() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.get().await, Some("a"));
        q.add("a"); // while processing: waits for done
        assert_eq!(q.get().await, Some("b"));
        q.done(&"b");
        assert!(
            q.lock().ready.is_empty(),
            "a is not ready while it is processed"
        );
        q.done(&"a");
        assert_eq!(q.get().await, Some("a"));
        q.done(&"a");
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_exponentially() {
        let q = WorkQueue::new();
        let start = Instant::now();
        for expected_ms in [5u64, 10, 20, 40] {
            q.add_rate_limited("k");
            assert_eq!(q.get().await, Some("k"));
            q.done(&"k");
            assert!(start.elapsed().as_millis() as u64 >= expected_ms);
        }
        assert_eq!(q.failures(&"k"), 4);
        q.forget(&"k");
        assert_eq!(q.failures(&"k"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_is_capped() {
        let q: Arc<WorkQueue<&str>> = WorkQueue::new();
        q.lock().failures.insert("k", 39);
        let before = Instant::now();
        q.add_rate_limited("k");
        assert_eq!(q.get().await, Some("k"));
        assert!(before.elapsed() <= MAX_DELAY + Duration::from_millis(1));
    }

    #[tokio::test(start_paused = true)]
    async fn overall_rate_limit_after_the_burst() {
        let q = WorkQueue::new();
        for i in 0..150u32 {
            q.add_rate_limited(i);
        }
        let start = Instant::now();
        for _ in 0..150 {
            let k = q.get().await.expect("key");
            q.done(&k);
        }
        // 100 come at once (after their 5 ms backoff), the other 50 at 10/s.
        assert!(
            start.elapsed() >= Duration::from_secs(4),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn shut_down_releases_workers() {
        let q: Arc<WorkQueue<&str>> = WorkQueue::new();
        let worker = tokio::spawn({
            let q = q.clone();
            async move { q.get().await }
        });
        tokio::task::yield_now().await;
        q.shut_down();
        assert_eq!(worker.await.expect("joins"), None);
    }
}
