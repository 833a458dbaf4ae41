//! The embedded backend: an MVCC store with etcd's semantics on a local redb file.
//!
//! Layout and design are described in `docs/store.md`. In short: a table of the latest state,
//! a table of every version of every key, a revision log, and counters; a single writer thread
//! group-commits transactions (one fsync per batch) and broadcasts each committed batch to
//! watchers, which replay older revisions from the log.

mod restore;
mod tables;
mod watch;
mod writer;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use redb::{Database, ReadTransaction, ReadableDatabase};
use tokio::sync::{broadcast, mpsc, oneshot};

use self::tables::{COMPACTED, HISTORY, LATEST, LOG, META, PURGED, REVISION, db_err, meta};
use self::writer::{Batch, Counters, Request, Writer};
use crate::{
    KeyValue, MAX_VALUE_BYTES, Op, Range, RangeResult, StoreError, Txn, TxnResult, WatchStream,
};

/// Transactions waiting for the writer before callers are made to wait.
const QUEUE: usize = 4096;
/// Committed batches kept for watchers that fall behind before they re-read the log.
const LIVE_BUFFER: usize = 256;
/// redb's page cache (reads and the write buffer). redb's default, 1 GiB, lets it keep every
/// page it ever read, the whole file; beyond this the kernel's page cache serves the reads.
const CACHE_BYTES: usize = 8 << 20;

/// The embedded store. See the module documentation.
pub struct EmbeddedStore {
    db: Arc<Database>,
    requests: Option<mpsc::Sender<Request>>,
    live: broadcast::Sender<Arc<Batch>>,
    counters: Arc<Counters>,
    writer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

/// Creates `path` with mode 0600 when missing (redb then initialises the empty file), or sets
/// an existing one to 0600.
fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

impl EmbeddedStore {
    /// Opens (or creates) the store in the redb file at `path` and starts its writer thread.
    /// The file stays locked until the store is dropped. It holds every Secret: it is made (or
    /// made again) readable by its owner only.
    pub fn open(path: &Path) -> Result<Arc<Self>, StoreError> {
        private_file(path).map_err(|e| StoreError::Embedded(format!("{}: {e}", path.display())))?;
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(db_err)?;
        let db = Arc::new(db);
        let wtx = db.begin_write().map_err(db_err)?;
        wtx.open_table(META).map_err(db_err)?;
        wtx.open_table(LATEST).map_err(db_err)?;
        wtx.open_table(HISTORY).map_err(db_err)?;
        wtx.open_table(LOG).map_err(db_err)?;
        wtx.commit().map_err(db_err)?;
        let rtx = db.begin_read().map_err(db_err)?;
        let (revision, compacted, purged) = (
            meta(&rtx, REVISION)?,
            meta(&rtx, COMPACTED)?,
            meta(&rtx, PURGED)?,
        );
        drop(rtx);
        let counters = Arc::new(Counters::default());
        counters.revision.store(revision, Ordering::SeqCst);
        counters.compacted.store(compacted, Ordering::SeqCst);
        let (requests, receiver) = mpsc::channel(QUEUE);
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        let writer = Writer {
            db: db.clone(),
            requests: receiver,
            events: live.clone(),
            counters: counters.clone(),
            revision,
            compacted,
            purged,
        };
        let writer = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run())
            .map_err(|err| StoreError::Embedded(format!("starting the writer thread: {err}")))?;
        tracing::debug!(path = %path.display(), revision, compacted, "embedded store open");
        Ok(Arc::new(Self {
            db,
            requests: Some(requests),
            live,
            counters,
            writer: Some(writer),
        }))
    }

    /// Runs `read` on a fresh snapshot on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&ReadTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || read(&db.begin_read().map_err(db_err)?))
            .await
            .map_err(|err| StoreError::Embedded(err.to_string()))?
    }

    async fn request<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Request,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let requests = self.requests.as_ref().ok_or(StoreError::Closed)?;
        requests
            .send(request(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // Closing the queue stops the writer once it has answered what it holds; joining it
        // releases its handle on the database so that the file can be opened again at once.
        self.requests = None;
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("the embedded store's writer thread panicked");
        }
    }
}

/// Rejects what etcd would reject: empty keys, a key written twice, oversized values.
fn validate(txn: &Txn) -> Result<(), StoreError> {
    let mut keys = HashSet::new();
    for op in &txn.success {
        let (key, size) = match op {
            Op::Put { key, value } => (key, value.len()),
            Op::Delete { key } => (key, 0),
        };
        if key.is_empty() {
            return Err(StoreError::Embedded("empty key in a transaction".into()));
        }
        if !keys.insert(key.as_str()) {
            return Err(StoreError::Embedded(format!(
                "key {key} written twice in one transaction"
            )));
        }
        if size > MAX_VALUE_BYTES {
            return Err(StoreError::TooLarge {
                key: key.clone(),
                size,
                limit: MAX_VALUE_BYTES,
            });
        }
    }
    Ok(())
}

#[async_trait]
impl crate::Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<(Option<KeyValue>, i64), StoreError> {
        let key = key.to_owned();
        self.read(move |rtx| {
            let latest = rtx.open_table(LATEST).map_err(db_err)?;
            let history = rtx.open_table(HISTORY).map_err(db_err)?;
            let kv = tables::kv_latest(&latest, &history, &key)?;
            Ok((kv, meta(rtx, REVISION)?))
        })
        .await
    }

    async fn range(&self, range: Range) -> Result<RangeResult, StoreError> {
        if let Some(start) = &range.start
            && !start.starts_with(&range.prefix)
        {
            return Err(StoreError::Embedded(format!(
                "range start {start} is not under the prefix {}",
                range.prefix
            )));
        }
        self.read(move |rtx| tables::range(rtx, &range)).await
    }

    async fn count(&self, prefix: &str) -> Result<i64, StoreError> {
        let prefix = prefix.to_owned();
        self.read(move |rtx| tables::count(rtx, &prefix)).await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError> {
        validate(&txn)?;
        self.request(|reply| Request::Txn(txn, reply)).await
    }

    async fn watch(
        &self,
        prefix: &str,
        start_revision: i64,
        progress_interval: Duration,
    ) -> Result<WatchStream, StoreError> {
        // Subscribe first: every batch committed after the revision read below is received.
        let live = self.live.subscribe();
        let next = if start_revision == 0 {
            self.counters.revision.load(Ordering::SeqCst) + 1
        } else {
            let compacted = self.counters.compacted.load(Ordering::SeqCst);
            if start_revision < compacted {
                return Err(StoreError::Compacted {
                    requested: start_revision,
                    compacted,
                });
            }
            start_revision
        };
        let db = Arc::downgrade(&self.db);
        Ok(watch::spawn(
            db,
            live,
            prefix.to_owned(),
            next,
            progress_interval,
        ))
    }

    async fn compact(&self, revision: i64) -> Result<(), StoreError> {
        self.request(|reply| Request::Compact(revision, reply))
            .await
    }

    async fn revision(&self) -> Result<i64, StoreError> {
        Ok(self.counters.revision.load(Ordering::SeqCst))
    }
}
