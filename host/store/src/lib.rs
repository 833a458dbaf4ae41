//! The revisioned key-value store the apiserver keeps every object in, with etcd's semantics.
//!
//! One trait, [`Store`], and two backends: [`embedded::EmbeddedStore`] (redb on local disk, the
//! default) and [`etcd::EtcdStore`] (a real etcd cluster through `etcd-client`). Both pass the same
//! conformance suite (`tests/conformance.rs`). Also: [`compactor`] (periodic compaction),
//! [`bench`](mod@bench) (a benchmark of any backend) and [`etcd::testing`] (a throwaway etcd for tests).
//! Design notes: `docs/store.md`.
//!
//! Semantics, as in etcd:
//! - every successful write transaction bumps one global revision (`i64`, starting at 1 for the
//!   first write; an empty store is at revision 0 or 1 depending on backend, callers must not care);
//! - each key carries `create_revision`, `mod_revision` and `version` (writes since creation);
//! - reads can be served at an older revision until it is compacted;
//! - watches deliver every change under a prefix, in revision order, starting at any revision not
//!   yet compacted; a compacted revision is answered with [`StoreError::Compacted`] (the apiserver
//!   turns it into 410 Gone).

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

pub mod bench;
pub mod compactor;
pub mod embedded;
pub mod etcd;
pub mod snapshot;
pub mod watch_cache;

/// A key with its value and revisions, as etcd's `mvccpb.KeyValue`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
}

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For `Put`, the new key-value. For `Delete`, the key with an empty value and
    /// `mod_revision` set to the revision of the deletion.
    pub kv: KeyValue,
    /// The value before this change (`None` for a creation).
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The revision at which this change happened.
    pub fn revision(&self) -> i64 {
        self.kv.mod_revision
    }
}

/// An item of a watch stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchItem {
    Event(Event),
    /// Every change under the watched prefix up to and including `revision` has been delivered.
    /// Sent when the stream has been quiet for the `progress_interval` given to [`Store::watch`].
    Progress {
        revision: i64,
    },
}

/// The largest value a backend accepts (etcd is started with `--max-request-bytes` 32 MiB).
pub const MAX_VALUE_BYTES: usize = 30 << 20;

pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchItem, StoreError>> + Send>>;

/// The answer to a range read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResult {
    /// Keys in ascending byte order.
    pub kvs: Vec<KeyValue>,
    /// More keys matched beyond `limit`.
    pub more: bool,
    /// The revision the read was served at.
    pub revision: i64,
}

/// A range read: every key starting with `prefix`, from `start` (inclusive, must itself start
/// with `prefix`) if given, at most `limit` keys (0 = no limit), at `revision` (0 = latest).
#[derive(Clone, Debug, Default)]
pub struct Range {
    pub prefix: String,
    pub start: Option<String>,
    pub limit: usize,
    pub revision: i64,
}

/// A condition of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compare {
    /// The key's `mod_revision` equals this; 0 means "the key does not exist".
    ModRevision { key: String, revision: i64 },
}

/// A write of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put { key: String, value: Bytes },
    Delete { key: String },
}

/// Compare-and-swap: if every compare holds, apply every op atomically at one new revision.
#[derive(Clone, Debug, Default)]
pub struct Txn {
    pub compare: Vec<Compare>,
    pub success: Vec<Op>,
}

/// The outcome of a [`Txn`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnResult {
    /// Applied. `revision` is the new revision; `prev` holds, per op in order, the value the key
    /// had before (`None` if absent).
    Succeeded {
        revision: i64,
        prev: Vec<Option<KeyValue>>,
    },
    /// A compare failed; nothing was written. `current` holds, per compare in order, the key's
    /// current value (`None` if absent), so the caller can report the conflict without a re-read.
    Failed {
        revision: i64,
        current: Vec<Option<KeyValue>>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("required revision {requested} has been compacted (compacted up to {compacted})")]
    Compacted { requested: i64, compacted: i64 },
    #[error("required revision {requested} is a future revision (current {current})")]
    FutureRevision { requested: i64, current: i64 },
    #[error("value of {size} bytes for key {key} exceeds the store's limit of {limit} bytes")]
    TooLarge {
        key: String,
        size: usize,
        limit: usize,
    },
    #[error("embedded store: {0}")]
    Embedded(String),
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("the store is shutting down")]
    Closed,
}

/// The store every backend implements. Cheap to share as `Arc<dyn Store>`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// One key at the latest revision, with the store's current revision.
    async fn get(&self, key: &str) -> Result<(Option<KeyValue>, i64), StoreError>;

    /// Keys under a prefix; see [`Range`].
    async fn range(&self, range: Range) -> Result<RangeResult, StoreError>;

    /// Number of keys under a prefix at the latest revision.
    async fn count(&self, prefix: &str) -> Result<i64, StoreError>;

    /// Compare-and-swap. Returns once the write is durable.
    async fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError>;

    /// Every change under `prefix` with revision ≥ `start_revision` (0 = changes after the
    /// current revision), in order, with previous values. Fails with `Compacted` if
    /// `start_revision` is older than the compacted revision. The stream emits
    /// [`WatchItem::Progress`] after `progress_interval` without events.
    async fn watch(
        &self,
        prefix: &str,
        start_revision: i64,
        progress_interval: Duration,
    ) -> Result<WatchStream, StoreError>;

    /// Drop history older than `revision`: reads and watches before it fail with `Compacted`.
    async fn compact(&self, revision: i64) -> Result<(), StoreError>;

    /// The current revision.
    async fn revision(&self) -> Result<i64, StoreError>;
}
