//! The bounded ring of one resource's recent events that every cached watch of it reads from.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::Event;

/// How many events and bytes (keys and values, previous values included) a ring keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingLimits {
    pub events: usize,
    pub bytes: usize,
}

/// What a watcher gets when it reads at its position.
#[derive(Debug)]
pub(super) enum Read {
    /// Events in order, and the position after the last one looked at.
    Events(Vec<Arc<Event>>, u64),
    /// Nothing new; the position stays.
    Nothing,
    /// Events at the position were dropped before the watcher read them: it fell behind by more
    /// than the ring holds (or the upstream watch lost history). `from` is the oldest revision
    /// the ring still holds in full.
    Behind { from: i64 },
}

/// Every event under one resource prefix from revision `from` on, the oldest dropped first.
///
/// Watchers hold a position (a sequence number of the events pushed, not a revision: the events
/// of one transaction share a revision and may arrive one by one), so each event is delivered to
/// each watcher once and in order.
#[derive(Debug)]
pub(super) struct Ring {
    events: VecDeque<Arc<Event>>,
    /// The position of `events[0]`.
    first: u64,
    bytes: usize,
    limits: RingLimits,
    /// Every event with a revision ≥ `from` is held or yet to come.
    from: i64,
    /// Every event with a revision ≤ `known` has been pushed.
    known: i64,
}

fn size(event: &Event) -> usize {
    let kv = |kv: &crate::KeyValue| kv.key.len() + kv.value.len();
    kv(&event.kv) + event.prev.as_ref().map_or(0, kv)
}

impl Ring {
    /// An empty ring that holds every event from `from` on.
    pub(super) fn new(from: i64, limits: RingLimits) -> Self {
        Self {
            events: VecDeque::new(),
            first: 0,
            bytes: 0,
            limits,
            from,
            known: from - 1,
        }
    }

    /// The oldest revision held in full.
    pub(super) fn from(&self) -> i64 {
        self.from
    }

    /// Every event up to this revision has been pushed.
    pub(super) fn known(&self) -> i64 {
        self.known
    }

    /// The position after the newest event.
    pub(super) fn end(&self) -> u64 {
        self.first + self.events.len() as u64
    }

    /// The revision of the newest event, if any.
    pub(super) fn last_revision(&self) -> Option<i64> {
        self.events.back().map(|e| e.revision())
    }

    /// The position of the first event at or after `revision`; `None` if older events than
    /// `revision` were dropped.
    pub(super) fn position(&self, revision: i64) -> Option<u64> {
        if revision < self.from {
            return None;
        }
        let skipped = self.events.partition_point(|e| e.revision() < revision);
        Some(self.first + skipped as u64)
    }

    /// Whether the ring already holds this event, or newer ones (a re-established upstream
    /// watch replays the last revision).
    fn holds(&self, event: &Event) -> bool {
        let newest = self.last_revision().unwrap_or(i64::MIN);
        event.revision() < newest
            || self
                .events
                .iter()
                .rev()
                .take_while(|e| e.revision() == event.revision())
                .any(|e| e.kv.key == event.kv.key)
    }

    /// Appends an event unless already held, dropping the oldest beyond the limits (the newest
    /// always stays).
    pub(super) fn push(&mut self, event: Event) {
        if self.holds(&event) {
            return;
        }
        // Another event of the same transaction may follow: only the revision before is complete.
        self.known = self.known.max(event.revision() - 1);
        self.bytes += size(&event);
        self.events.push_back(Arc::new(event));
        while self.events.len() > 1
            && (self.events.len() > self.limits.events || self.bytes > self.limits.bytes)
        {
            let Some(old) = self.events.pop_front() else {
                break;
            };
            self.first += 1;
            self.bytes -= size(&old);
            self.from = self.from.max(old.revision() + 1);
        }
    }

    /// The upstream says every event up to `revision` has been delivered.
    pub(super) fn progress(&mut self, revision: i64) {
        self.known = self.known.max(revision);
    }

    /// History was lost upstream: drops every event and holds events from `from` on. Every
    /// watcher reading at a position of before is [`Read::Behind`].
    pub(super) fn reset(&mut self, from: i64) {
        self.first = self.end() + 1;
        self.events.clear();
        self.bytes = 0;
        self.from = from;
        self.known = from - 1;
    }

    /// Events under `prefix` from `position`: up to `limit.events` and, beyond the first, up to
    /// `limit.bytes`, looking at no more than `scan` events (so that the lock is held briefly).
    pub(super) fn read(&self, position: u64, prefix: &str, limit: RingLimits, scan: usize) -> Read {
        if position < self.first {
            return Read::Behind { from: self.from };
        }
        let start = usize::try_from(position - self.first).unwrap_or(usize::MAX);
        if start >= self.events.len() {
            return Read::Nothing;
        }
        let (mut out, mut bytes) = (Vec::new(), 0);
        let mut next = position;
        for event in self.events.range(start..).take(scan) {
            if event.kv.key.starts_with(prefix) {
                bytes += size(event);
                if !out.is_empty() && bytes > limit.bytes {
                    break;
                }
                out.push(event.clone());
            }
            next += 1;
            if out.len() == limit.events {
                break;
            }
        }
        Read::Events(out, next)
    }

    /// How many events and bytes the ring holds.
    pub(super) fn held(&self) -> (usize, usize) {
        (self.events.len(), self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{EventKind, KeyValue};

    fn put(key: &str, revision: i64, value: &str) -> Event {
        Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: key.into(),
                value: Bytes::from(value.to_owned()),
                create_revision: revision,
                mod_revision: revision,
                version: 1,
            },
            prev: None,
        }
    }

    fn revisions(read: Read) -> (Vec<i64>, u64) {
        match read {
            Read::Events(events, next) => (events.iter().map(|e| e.revision()).collect(), next),
            other => panic!("expected events, got {other:?}"),
        }
    }

    fn most(events: usize) -> RingLimits {
        RingLimits {
            events,
            bytes: 1 << 20,
        }
    }

    const ROOMY: RingLimits = RingLimits {
        events: 100,
        bytes: 1 << 20,
    };

    #[test]
    fn reads_in_order_filtered_and_resumes() {
        let mut ring = Ring::new(5, ROOMY);
        ring.push(put("/a/1", 5, "x"));
        ring.push(put("/b/1", 6, "x"));
        ring.push(put("/a/2", 7, "x"));
        assert_eq!(ring.position(6), Some(1));
        assert_eq!(ring.position(4), None);
        assert_eq!(
            revisions(ring.read(0, "/a/", most(10), 10)),
            (vec![5, 7], 3)
        );
        assert_eq!(revisions(ring.read(0, "/a/", most(1), 10)), (vec![5], 1));
        // A scan limit stops early; the position says where to go on.
        assert_eq!(revisions(ring.read(1, "/a/", most(10), 1)), (vec![], 2));
        // A byte limit too, beyond the first event.
        let tiny = RingLimits {
            events: 10,
            bytes: 1,
        };
        assert_eq!(revisions(ring.read(0, "/a/", tiny, 10)), (vec![5], 2));
        assert!(matches!(ring.read(3, "/a/", most(10), 10), Read::Nothing));
        assert_eq!(ring.known(), 6);
        ring.progress(9);
        assert_eq!(ring.known(), 9);
    }

    #[test]
    fn drops_the_oldest_beyond_the_limits_and_readers_behind_learn_it() {
        let mut ring = Ring::new(
            1,
            RingLimits {
                events: 3,
                bytes: 1 << 20,
            },
        );
        for revision in 1..=5 {
            ring.push(put("/a/k", revision, "x"));
        }
        assert_eq!(ring.held().0, 3);
        assert_eq!(ring.from(), 3);
        assert!(matches!(
            ring.read(1, "/a/", most(10), 10),
            Read::Behind { from: 3 }
        ));
        assert_eq!(
            revisions(ring.read(2, "/a/", most(10), 10)),
            (vec![3, 4, 5], 5)
        );
        let mut small = Ring::new(
            1,
            RingLimits {
                events: 100,
                bytes: 10,
            },
        );
        small.push(put("/a/k", 1, "0123456789"));
        small.push(put("/a/k", 2, "0123456789"));
        assert_eq!(
            small.held().0,
            1,
            "the newest stays even when alone over the limit"
        );
        assert_eq!(small.from(), 2);
    }

    #[test]
    fn a_transaction_split_across_pushes_is_read_whole() {
        let mut ring = Ring::new(1, ROOMY);
        ring.push(put("/a/1", 4, "x"));
        assert_eq!(ring.known(), 3);
        assert_eq!(revisions(ring.read(0, "/a/", most(10), 10)), (vec![4], 1));
        ring.push(put("/a/2", 4, "x"));
        assert_eq!(revisions(ring.read(1, "/a/", most(10), 10)), (vec![4], 2));
        // Replayed by a re-established upstream watch: held already.
        ring.push(put("/a/1", 4, "x"));
        ring.push(put("/a/0", 3, "x"));
        assert_eq!(ring.end(), 2);
    }

    #[test]
    fn a_reset_puts_every_reader_behind() {
        let mut ring = Ring::new(1, ROOMY);
        ring.push(put("/a/1", 1, "x"));
        let caught_up = ring.end();
        ring.reset(10);
        assert!(matches!(
            ring.read(caught_up, "/a/", most(10), 10),
            Read::Behind { from: 10 }
        ));
        assert_eq!(ring.position(10), Some(ring.end()));
        ring.push(put("/a/1", 10, "x"));
        assert_eq!(
            revisions(ring.read(ring.end() - 1, "/a/", most(10), 10)),
            (vec![10], ring.end())
        );
    }
}
