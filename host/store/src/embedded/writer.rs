//! The single writer thread: group commit of transactions and compactions, then broadcast.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use redb::{Database, Durability, ReadableTable, Table, WriteTransaction};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::tables::{
    COMPACTED, HISTORY, LATEST, LOG, META, PURGED, REVISION, db_err, kv_latest, tombstone,
};
use crate::{Compare, Event, EventKind, KeyValue, Op, StoreError, Txn, TxnResult};

/// Most requests committed together.
const MAX_BATCH: usize = 1024;
/// Most value bytes committed together (a batch always takes at least one request).
const MAX_BATCH_BYTES: usize = 64 << 20;
/// Most value bytes of a batch broadcast with its events; a bigger batch is broadcast without
/// them and watchers read it from the log. Bounds the memory of the broadcast buffer.
const MAX_INLINE_BYTES: usize = 1 << 20;
/// Biggest value (or previous value) of a batch broadcast with its events. A batch holding a
/// bigger one (a `PluginModule` chunk, a large ConfigMap) is read from the log by its watchers,
/// so the broadcast buffer, which keeps its last batches until newer ones push them out, does not
/// pin those values long after every watcher has read them.
const MAX_INLINE_VALUE: usize = 64 << 10;
/// Pause after a failed commit.
const FAILURE_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);
/// Log entries (changes) purged per commit, so a big compaction does not stall writers.
const PURGE_CHUNK: usize = 1024;

/// A request to the writer thread.
pub(super) enum Request {
    Txn(Txn, oneshot::Sender<Result<TxnResult, StoreError>>),
    Compact(i64, oneshot::Sender<Result<(), StoreError>>),
}

/// The changes of one commit, revisions `first..=last`, as broadcast to watchers.
#[derive(Debug)]
pub(super) struct Batch {
    pub first: i64,
    pub last: i64,
    /// `None` when the values are too big to keep in the broadcast buffer: read the log.
    pub events: Option<Vec<Event>>,
}

/// Revision counters shared between the writer and readers, updated after each commit.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub revision: AtomicI64,
    pub compacted: AtomicI64,
}

/// The writer's state; owned by its thread.
pub(super) struct Writer {
    pub db: Arc<Database>,
    pub requests: mpsc::Receiver<Request>,
    pub events: broadcast::Sender<Arc<Batch>>,
    pub counters: Arc<Counters>,
    pub revision: i64,
    pub compacted: i64,
    pub purged: i64,
}

/// The answer to a request, sent once its batch is committed.
enum Answer {
    Txn(Result<TxnResult, StoreError>),
    Compact(Result<(), StoreError>),
}

impl Request {
    fn answer(self, answer: Answer) {
        // A caller that gave up waiting is not an error.
        match (self, answer) {
            (Request::Txn(_, reply), Answer::Txn(result)) => drop(reply.send(result)),
            (Request::Compact(_, reply), Answer::Compact(result)) => drop(reply.send(result)),
            // `write` answers each request in kind; this cannot happen.
            (request, _) => request.fail(&StoreError::Embedded("answer of the wrong kind".into())),
        }
    }

    fn fail(self, err: &StoreError) {
        let err = StoreError::Embedded(match err {
            StoreError::Embedded(message) => message.clone(),
            other => other.to_string(),
        });
        match self {
            Request::Txn(_, reply) => drop(reply.send(Err(err))),
            Request::Compact(_, reply) => drop(reply.send(Err(err))),
        }
    }
}

/// The tables a batch writes, opened once per commit.
struct Tables<'t> {
    latest: Table<'t, &'static str, (i64, i64, i64)>,
    history: Table<'t, (&'static str, i64), (i64, i64, &'static [u8])>,
    log: Table<'t, (i64, u32), &'static str>,
}

impl Writer {
    /// Runs until every sender of requests is dropped.
    pub fn run(mut self) {
        loop {
            let first = if self.purged < self.compacted {
                match self.requests.try_recv() {
                    Ok(request) => Some(request),
                    Err(mpsc::error::TryRecvError::Empty) => None,
                    Err(mpsc::error::TryRecvError::Disconnected) => return,
                }
            } else {
                match self.requests.blocking_recv() {
                    Some(request) => Some(request),
                    None => return,
                }
            };
            let mut batch: Vec<Request> = first.into_iter().collect();
            let mut bytes = batch.iter().map(request_bytes).sum::<usize>();
            while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                let Ok(request) = self.requests.try_recv() else {
                    break;
                };
                bytes += request_bytes(&request);
                batch.push(request);
            }
            if !self.commit(batch) {
                // Do not spin on a failing disk (the purge would retry at once).
                std::thread::sleep(FAILURE_BACKOFF);
            }
        }
    }

    /// Applies a batch in one redb commit, then publishes and answers it. False if it failed.
    fn commit(&mut self, batch: Vec<Request>) -> bool {
        let before = (self.revision, self.compacted, self.purged);
        let mut events = Vec::new();
        let answers = match self.write(&batch, &mut events) {
            Ok(answers) => answers,
            Err(err) => {
                // Nothing of the batch was committed: every request fails with the error.
                tracing::error!(error = %err, "embedded store commit failed");
                (self.revision, self.compacted, self.purged) = before;
                batch.into_iter().for_each(|request| request.fail(&err));
                return false;
            }
        };
        self.counters
            .compacted
            .store(self.compacted, Ordering::SeqCst);
        self.counters
            .revision
            .store(self.revision, Ordering::SeqCst);
        if before.0 < self.revision {
            let values = || {
                events
                    .iter()
                    .flat_map(|e| std::iter::once(&e.kv).chain(&e.prev))
                    .map(|kv| kv.value.len())
            };
            let inline = values().sum::<usize>() <= MAX_INLINE_BYTES
                && values().all(|len| len <= MAX_INLINE_VALUE);
            let batch = Batch {
                first: before.0 + 1,
                last: self.revision,
                events: inline.then_some(events),
            };
            // No receiver is fine: nobody watches.
            let _ = self.events.send(Arc::new(batch));
        }
        for (request, answer) in batch.into_iter().zip(answers) {
            request.answer(answer);
        }
        true
    }

    /// Applies a batch in one redb write transaction and commits it durably.
    fn write(
        &mut self,
        batch: &[Request],
        events: &mut Vec<Event>,
    ) -> Result<Vec<Answer>, StoreError> {
        let mut wtx = self.db.begin_write().map_err(db_err)?;
        wtx.set_durability(Durability::Immediate).map_err(db_err)?;
        let mut answers = Vec::with_capacity(batch.len());
        {
            let mut tables = Tables {
                latest: wtx.open_table(LATEST).map_err(db_err)?,
                history: wtx.open_table(HISTORY).map_err(db_err)?,
                log: wtx.open_table(LOG).map_err(db_err)?,
            };
            for request in batch {
                answers.push(match request {
                    // A storage error aborts the whole batch.
                    Request::Txn(txn, _) => {
                        Answer::Txn(Ok(self.apply(&mut tables, txn, events)?))
                    }
                    Request::Compact(revision, _) => Answer::Compact(self.compact(*revision)),
                });
            }
            if self.purged < self.compacted {
                self.purge(&mut tables)?;
            }
        }
        self.save_meta(&wtx)?;
        wtx.commit().map_err(db_err)?;
        Ok(answers)
    }

    /// Records a compaction; the history is purged in the background.
    fn compact(&mut self, revision: i64) -> Result<(), StoreError> {
        if revision > self.revision {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: self.revision,
            });
        }
        self.compacted = self.compacted.max(revision);
        Ok(())
    }

    fn save_meta(&self, wtx: &WriteTransaction) -> Result<(), StoreError> {
        let mut meta = wtx.open_table(META).map_err(db_err)?;
        meta.insert(REVISION, self.revision).map_err(db_err)?;
        meta.insert(COMPACTED, self.compacted).map_err(db_err)?;
        meta.insert(PURGED, self.purged).map_err(db_err)?;
        Ok(())
    }

    /// Evaluates and applies one transaction at the next revision.
    fn apply(
        &mut self,
        t: &mut Tables<'_>,
        txn: &Txn,
        events: &mut Vec<Event>,
    ) -> Result<TxnResult, StoreError> {
        let mut holds = true;
        for Compare::ModRevision { key, revision } in &txn.compare {
            let current = t.latest.get(key.as_str()).map_err(db_err)?;
            holds &= current.map_or(0, |m| m.value().1) == *revision;
        }
        if !holds {
            let current = txn
                .compare
                .iter()
                .map(|Compare::ModRevision { key, .. }| kv_latest(&t.latest, &t.history, key))
                .collect::<Result<_, _>>()?;
            return Ok(TxnResult::Failed {
                revision: self.revision,
                current,
            });
        }
        let revision = self.revision + 1;
        let mut prev = Vec::with_capacity(txn.success.len());
        let mut changed = false;
        for (index, op) in txn.success.iter().enumerate() {
            let key = match op {
                Op::Put { key, .. } | Op::Delete { key } => key.as_str(),
            };
            let before = kv_latest(&t.latest, &t.history, key)?;
            let event = match op {
                Op::Put { value, .. } => {
                    let (create_revision, version) = before
                        .as_ref()
                        .map_or((revision, 1), |kv| (kv.create_revision, kv.version + 1));
                    let meta = (create_revision, revision, version);
                    t.latest.insert(key, meta).map_err(db_err)?;
                    let record = (create_revision, version, value.as_ref());
                    t.history.insert((key, revision), record).map_err(db_err)?;
                    Event {
                        kind: EventKind::Put,
                        kv: KeyValue {
                            key: key.to_owned(),
                            value: value.clone(),
                            create_revision,
                            mod_revision: revision,
                            version,
                        },
                        prev: before.clone(),
                    }
                }
                Op::Delete { .. } if before.is_none() => {
                    prev.push(None);
                    continue;
                }
                Op::Delete { .. } => {
                    t.latest.remove(key).map_err(db_err)?;
                    let record = (0, 0, &[][..]);
                    t.history.insert((key, revision), record).map_err(db_err)?;
                    Event {
                        kind: EventKind::Delete,
                        kv: tombstone(key, revision),
                        prev: before.clone(),
                    }
                }
            };
            let index = u32::try_from(index).map_err(|_| too_many_ops())?;
            t.log.insert((revision, index), key).map_err(db_err)?;
            events.push(event);
            prev.push(before);
            changed = true;
        }
        if changed {
            self.revision = revision;
        }
        Ok(TxnResult::Succeeded {
            revision: self.revision,
            prev,
        })
    }

    /// Physically removes one chunk of the history older than the compacted revision: for every
    /// key changed in the chunk of the log, every version older than its newest one before
    /// `compacted`, and that one too if it is a deletion; then the chunk of the log.
    fn purge(&mut self, t: &mut Tables<'_>) -> Result<(), StoreError> {
        let mut keys = BTreeSet::new();
        let (mut last, mut taken) = (None, 0);
        for entry in t
            .log
            .range((self.purged, 0)..(self.compacted, 0))
            .map_err(db_err)?
            .take(PURGE_CHUNK)
        {
            let (at, key) = entry.map_err(db_err)?;
            keys.insert(key.value().to_owned());
            last = Some(at.value());
            taken += 1;
        }
        for key in &keys {
            let key = key.as_str();
            let newest = {
                let mut older = t
                    .history
                    .range((key, 0)..(key, self.compacted))
                    .map_err(db_err)?;
                match older.next_back() {
                    Some(entry) => {
                        let (k, v) = entry.map_err(db_err)?;
                        Some((k.value().1, v.value().1 == 0))
                    }
                    None => None,
                }
            };
            let Some((newest, deleted)) = newest else {
                continue;
            };
            let upper = if deleted { newest + 1 } else { newest };
            t.history
                .retain_in((key, 0)..(key, upper), |_, _| false)
                .map_err(db_err)?;
        }
        match last {
            // A full chunk may end inside a revision: its remaining entries come next time.
            Some(last) if taken == PURGE_CHUNK => {
                t.log
                    .retain_in((self.purged, 0)..=last, |_, _| false)
                    .map_err(db_err)?;
                self.purged = last.0;
            }
            _ => {
                t.log
                    .retain_in((self.purged, 0)..(self.compacted, 0), |_, _| false)
                    .map_err(db_err)?;
                self.purged = self.compacted;
            }
        }
        Ok(())
    }
}

fn too_many_ops() -> StoreError {
    StoreError::Embedded("too many operations in one transaction".into())
}

fn request_bytes(request: &Request) -> usize {
    match request {
        Request::Txn(txn, _) => txn
            .success
            .iter()
            .map(|op| match op {
                Op::Put { value, .. } => value.len(),
                Op::Delete { .. } => 0,
            })
            .sum(),
        Request::Compact(..) => 0,
    }
}
