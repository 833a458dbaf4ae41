//! A fresh embedded store written from a snapshot: every key as it was, at the revision the
//! snapshot was taken, history before it compacted.

use std::path::Path;

use redb::Database;

use super::tables::{COMPACTED, HISTORY, LATEST, LOG, META, PURGED, REVISION, db_err};
use super::{EmbeddedStore, private_file};
use crate::StoreError;
use crate::snapshot::Snapshot;

impl EmbeddedStore {
    /// Writes `snapshot` into a new store file at `path`, which must not exist yet (a restore
    /// never overwrites a store). The store's next write gets the revision after the
    /// snapshot's, so every resourceVersion a client saw stays in the past.
    pub fn restore(path: &Path, snapshot: &Snapshot) -> Result<(), StoreError> {
        let exists = |what: String| StoreError::Embedded(format!("{}: {what}", path.display()));
        if path.exists() {
            return Err(exists(
                "already exists: restore into a fresh data directory".into(),
            ));
        }
        private_file(path).map_err(|e| exists(e.to_string()))?;
        let db = Database::create(path).map_err(db_err)?;
        let wtx = db.begin_write().map_err(db_err)?;
        {
            let mut latest = wtx.open_table(LATEST).map_err(db_err)?;
            let mut history = wtx.open_table(HISTORY).map_err(db_err)?;
            wtx.open_table(LOG).map_err(db_err)?;
            for kv in &snapshot.kvs {
                let (key, created, modified) =
                    (kv.key.as_str(), kv.create_revision, kv.mod_revision);
                latest
                    .insert(key, (created, modified, kv.version))
                    .map_err(db_err)?;
                history
                    .insert((key, modified), (created, kv.version, kv.value.as_ref()))
                    .map_err(db_err)?;
            }
            let mut meta = wtx.open_table(META).map_err(db_err)?;
            for counter in [REVISION, COMPACTED, PURGED] {
                meta.insert(counter, snapshot.revision).map_err(db_err)?;
            }
        }
        wtx.commit().map_err(db_err)?;
        Ok(())
    }
}
