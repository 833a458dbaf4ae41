//! When a pod's ConfigMaps, Secrets and claims are read again: soon after something the pod
//! needs was missing (backing off to a bound), and once a sync period while it runs, so that
//! changed values reach its volumes (the kubelet's `syncFrequency` of 60 s, with jitter that
//! spreads the pods of a node over time).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use tokio::time::Instant;

/// How often a pod's sources are read again while nothing is missing.
pub const SYNC_PERIOD: Duration = Duration::from_secs(60);
/// The most a pod's period is lengthened by (from its uid): a change reaches its volumes
/// within `SYNC_PERIOD + SYNC_JITTER` of being written.
pub const SYNC_JITTER: Duration = Duration::from_secs(20);
/// The first wait after a failure; it doubles up to [`MAX_RETRY`] (the kubelet retries a pod
/// that could not start every 10 s).
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
pub const MAX_RETRY: Duration = Duration::from_secs(10);

/// One pod's schedule of reads.
#[derive(Debug)]
pub struct Refresh {
    period: Duration,
    /// When to read next; `None`: now.
    due: Option<Instant>,
    backoff: Duration,
    /// The retry the last failure asked for, while it is ahead.
    retry_at: Option<Instant>,
}

impl Refresh {
    /// The schedule of the pod with `uid`: read at once, then every period.
    pub fn new(uid: &str) -> Refresh {
        Refresh {
            period: period(uid),
            due: None,
            backoff: Duration::ZERO,
            retry_at: None,
        }
    }

    pub fn due(&self, now: Instant) -> bool {
        self.due.is_none_or(|due| due <= now)
    }

    /// When to read next.
    pub fn next(&self) -> Option<Instant> {
        self.due
    }

    /// The sources were read at `now`: next after a period, unless a retry comes first.
    pub fn read(&mut self, now: Instant) {
        let next = now + self.period;
        self.due = Some(
            self.retry_at
                .filter(|at| *at > now)
                .map_or(next, |at| at.min(next)),
        );
    }

    /// Something the pod needs was missing or could not be read: read again, and try again,
    /// after the back-off (1 s doubling to 10 s). Failures at the same moment (several
    /// containers of one step) share one retry. Returns when.
    pub fn retry(&mut self, now: Instant) -> Instant {
        if let Some(at) = self.retry_at.filter(|at| *at > now) {
            return at;
        }
        self.backoff = if self.backoff.is_zero() {
            FIRST_RETRY
        } else {
            (self.backoff * 2).min(MAX_RETRY)
        };
        let at = now + self.backoff;
        self.retry_at = Some(at);
        self.due = Some(self.due.map_or(at, |due| due.min(at)));
        at
    }

    /// A container started with what it needed: the next failure backs off afresh.
    pub fn settled(&mut self) {
        self.backoff = Duration::ZERO;
        self.retry_at = None;
    }
}

/// The pod's sync period: [`SYNC_PERIOD`] and a part of [`SYNC_JITTER`] chosen by its uid,
/// the same across agent restarts.
fn period(uid: &str) -> Duration {
    let mut hasher = DefaultHasher::new();
    uid.hash(&mut hasher);
    let jitter_ms = u64::try_from(SYNC_JITTER.as_millis()).unwrap_or(u64::MAX);
    SYNC_PERIOD + Duration::from_millis(hasher.finish() % jitter_ms.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_is_read_at_once_then_every_period() {
        let now = Instant::now();
        let mut refresh = Refresh::new("uid-1");
        assert!(refresh.due(now));
        refresh.read(now);
        let next = refresh.next().expect("a next read");
        let period = next - now;
        assert!(
            period >= SYNC_PERIOD && period < SYNC_PERIOD + SYNC_JITTER,
            "{period:?}"
        );
        assert!(!refresh.due(now + SYNC_PERIOD - Duration::from_secs(1)));
        assert!(refresh.due(now + SYNC_PERIOD + SYNC_JITTER));
        let periods: std::collections::BTreeSet<Duration> =
            (0..20).map(|i| period_of(&format!("uid-{i}"))).collect();
        assert!(periods.len() > 10, "pods spread over the jitter");
        assert_eq!(period_of("uid-1"), period, "the same for the same pod");
    }

    fn period_of(uid: &str) -> Duration {
        let now = Instant::now();
        let mut refresh = Refresh::new(uid);
        refresh.read(now);
        refresh.next().expect("a next read") - now
    }

    #[test]
    fn a_missing_source_is_retried_with_a_bounded_back_off() {
        let mut now = Instant::now();
        let mut refresh = Refresh::new("uid");
        refresh.read(now);
        let mut waits = Vec::new();
        for _ in 0..6 {
            let at = refresh.retry(now);
            assert_eq!(
                refresh.retry(now),
                at,
                "one retry for failures at one moment"
            );
            assert_eq!(refresh.next(), Some(at), "sooner than the period");
            waits.push((at - now).as_secs());
            now = at;
            assert!(refresh.due(now));
            // Read again at the retry; the next failure comes with it.
            refresh.read(now);
        }
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
        refresh.settled();
        assert_eq!(refresh.retry(now) - now, FIRST_RETRY);
    }

    #[test]
    fn a_read_before_a_pending_retry_keeps_it() {
        let now = Instant::now();
        let mut refresh = Refresh::new("uid");
        let at = refresh.retry(now);
        refresh.read(now);
        assert_eq!(refresh.next(), Some(at));
    }
}
