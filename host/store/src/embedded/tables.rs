//! The redb tables of the embedded store and the reads every other part shares.

use std::ops::Bound;

use bytes::Bytes;
use redb::{ReadTransaction, ReadableTable, TableDefinition};

use crate::{Event, EventKind, KeyValue, Range, RangeResult, StoreError};

/// Counters: [`REVISION`], [`COMPACTED`] and [`PURGED`].
pub(super) const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
/// The current revision (0 for an empty store).
pub(super) const REVISION: &str = "revision";
/// Reads and watches before this revision fail with `Compacted`.
pub(super) const COMPACTED: &str = "compacted";
/// History before this revision has been physically removed (trails `COMPACTED`).
pub(super) const PURGED: &str = "purged";

/// Every live key: `key -> (create_revision, mod_revision, version)`. The value is in [`HISTORY`].
pub(super) const LATEST: TableDefinition<&str, (i64, i64, i64)> = TableDefinition::new("latest");

/// Every version of every key: `(key, mod_revision) -> (create_revision, version, value)`.
/// A deletion is stored as a tombstone with version 0.
pub(super) const HISTORY: TableDefinition<(&str, i64), (i64, i64, &[u8])> =
    TableDefinition::new("history");

/// The revision log: `(revision, op index) -> key` for every key changed at that revision.
pub(super) const LOG: TableDefinition<(i64, u32), &str> = TableDefinition::new("log");

/// Turns any redb error into a [`StoreError`].
pub(super) fn db_err(err: impl Into<redb::Error>) -> StoreError {
    StoreError::Embedded(err.into().to_string())
}

/// The history table, read-only or inside a write transaction.
pub(super) trait History:
    ReadableTable<(&'static str, i64), (i64, i64, &'static [u8])>
{
}
impl<T: ReadableTable<(&'static str, i64), (i64, i64, &'static [u8])>> History for T {}

/// The latest-state table, read-only or inside a write transaction.
pub(super) trait Latest: ReadableTable<&'static str, (i64, i64, i64)> {}
impl<T: ReadableTable<&'static str, (i64, i64, i64)>> Latest for T {}

/// The version of `key` visible at `revision`, if the key existed then.
pub(super) fn kv_at(
    history: &impl History,
    key: &str,
    revision: i64,
) -> Result<Option<KeyValue>, StoreError> {
    let mut versions = history.range((key, 0)..=(key, revision)).map_err(db_err)?;
    let Some(entry) = versions.next_back() else {
        return Ok(None);
    };
    let (k, v) = entry.map_err(db_err)?;
    let (create_revision, version, value) = v.value();
    if version == 0 {
        return Ok(None);
    }
    Ok(Some(KeyValue {
        key: key.to_owned(),
        value: Bytes::copy_from_slice(value),
        create_revision,
        mod_revision: k.value().1,
        version,
    }))
}

/// The current version of `key`.
pub(super) fn kv_latest(
    latest: &impl Latest,
    history: &impl History,
    key: &str,
) -> Result<Option<KeyValue>, StoreError> {
    match latest.get(key).map_err(db_err)? {
        Some(meta) => kv_at(history, key, meta.value().1),
        None => Ok(None),
    }
}

/// The change to `key` at `revision`, with the previous value, as a watch reports it.
pub(super) fn event_at(
    history: &impl History,
    key: &str,
    revision: i64,
) -> Result<Event, StoreError> {
    let prev = kv_at(history, key, revision - 1)?;
    Ok(match kv_at(history, key, revision)? {
        Some(kv) => Event {
            kind: EventKind::Put,
            kv,
            prev,
        },
        None => Event {
            kind: EventKind::Delete,
            kv: tombstone(key, revision),
            prev,
        },
    })
}

/// The key-value a delete event carries, as etcd reports it.
pub(super) fn tombstone(key: &str, revision: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Bytes::new(),
        create_revision: 0,
        mod_revision: revision,
        version: 0,
    }
}

/// A counter of [`META`] (0 when unset).
pub(super) fn meta(rtx: &ReadTransaction, name: &str) -> Result<i64, StoreError> {
    let table = rtx.open_table(META).map_err(db_err)?;
    Ok(table.get(name).map_err(db_err)?.map_or(0, |v| v.value()))
}

/// Fails unless `revision` can still be read: not compacted, not in the future.
pub(super) fn check_readable(rtx: &ReadTransaction, revision: i64) -> Result<i64, StoreError> {
    let current = meta(rtx, REVISION)?;
    let compacted = meta(rtx, COMPACTED)?;
    if revision < compacted {
        return Err(StoreError::Compacted {
            requested: revision,
            compacted,
        });
    }
    if revision > current {
        return Err(StoreError::FutureRevision {
            requested: revision,
            current,
        });
    }
    Ok(current)
}

/// Serves a [`Range`] from a read snapshot.
pub(super) fn range(rtx: &ReadTransaction, range: &Range) -> Result<RangeResult, StoreError> {
    let current = meta(rtx, REVISION)?;
    let at = if range.revision == 0 {
        current
    } else {
        check_readable(rtx, range.revision)?;
        range.revision
    };
    let start = range.start.as_deref().unwrap_or(&range.prefix);
    let limit = if range.limit == 0 {
        usize::MAX
    } else {
        range.limit
    };
    let history = rtx.open_table(HISTORY).map_err(db_err)?;
    let mut result = RangeResult {
        revision: at,
        ..RangeResult::default()
    };
    if at == current {
        let latest = rtx.open_table(LATEST).map_err(db_err)?;
        for entry in latest.range(start..).map_err(db_err)? {
            let (key, meta) = entry.map_err(db_err)?;
            let key = key.value();
            if !key.starts_with(&range.prefix) {
                break;
            }
            if result.kvs.len() == limit {
                result.more = true;
                break;
            }
            if let Some(kv) = kv_at(&history, key, meta.value().1)? {
                result.kvs.push(kv);
            }
        }
        return Ok(result);
    }
    // An older revision: visit each distinct key of the history once, newest version ≤ `at`.
    let mut cursor = start.to_owned();
    let mut lower = Bound::Included((cursor.as_str(), 0));
    loop {
        let next = history
            .range::<(&str, i64)>((lower, Bound::Unbounded))
            .map_err(db_err)?
            .next();
        let Some(entry) = next else { break };
        let key = entry.map_err(db_err)?.0.value().0.to_owned();
        if !key.starts_with(&range.prefix) {
            break;
        }
        if let Some(kv) = kv_at(&history, &key, at)? {
            if result.kvs.len() == limit {
                result.more = true;
                break;
            }
            result.kvs.push(kv);
        }
        cursor = key;
        lower = Bound::Excluded((cursor.as_str(), i64::MAX));
    }
    Ok(result)
}

/// Number of live keys under `prefix`.
pub(super) fn count(rtx: &ReadTransaction, prefix: &str) -> Result<i64, StoreError> {
    let latest = rtx.open_table(LATEST).map_err(db_err)?;
    let mut n = 0;
    for entry in latest.range(prefix..).map_err(db_err)? {
        if !entry.map_err(db_err)?.0.value().starts_with(prefix) {
            break;
        }
        n += 1;
    }
    Ok(n)
}
