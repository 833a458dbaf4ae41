//! Snapshots: every live key of a store at one revision, in a checksummed file that
//! [`crate::EmbeddedStore::restore`] turns into a fresh embedded store.
//!
//! The format, all integers little-endian: `WKSNAP1\n`, the revision (i64), then per key in
//! ascending order the byte 1, the key (u32 length, UTF-8), its create revision, mod revision
//! and version (i64 each) and its value (u32 length, bytes); then the byte 0 and the SHA-256
//! of everything before it.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::{KeyValue, MAX_VALUE_BYTES, Range, Store, StoreError};

const MAGIC: &[u8; 8] = b"WKSNAP1\n";
/// Keys read from the store at a time while a snapshot is taken.
const PAGE: usize = 500;
/// The longest key a snapshot may hold (the apiserver's keys are far shorter).
const MAX_KEY_BYTES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("not a wasmkube snapshot (no `WKSNAP1` header)")]
    Magic,
    #[error("the snapshot's checksum does not match: the file is damaged or cut short")]
    Checksum,
    #[error("the snapshot is malformed: {0}")]
    Malformed(String),
}

/// What a snapshot holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The store's revision when it was taken.
    pub revision: i64,
    /// Every live key at that revision, in ascending order.
    pub kvs: Vec<KeyValue>,
}

impl Snapshot {
    /// Reads every live key of `store` at its current revision: one consistent view, however
    /// many writes go on meanwhile.
    pub async fn take(store: &dyn Store) -> Result<Snapshot, SnapshotError> {
        let revision = store.revision().await?;
        let mut kvs = Vec::new();
        let mut start = None;
        loop {
            let page = store
                .range(Range {
                    prefix: String::new(),
                    start: start.take(),
                    limit: PAGE,
                    revision,
                })
                .await?;
            let next = page.kvs.last().map(|kv| format!("{}\0", kv.key));
            kvs.extend(page.kvs);
            match next {
                Some(next) if page.more => start = Some(next),
                _ => break,
            }
        }
        Ok(Snapshot { revision, kvs })
    }

    /// The snapshot as a file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend(self.revision.to_le_bytes());
        for kv in &self.kvs {
            out.push(1);
            put_bytes(&mut out, kv.key.as_bytes());
            for n in [kv.create_revision, kv.mod_revision, kv.version] {
                out.extend(n.to_le_bytes());
            }
            put_bytes(&mut out, &kv.value);
        }
        out.push(0);
        let digest = Sha256::digest(&out);
        out.extend(digest);
        out
    }

    /// Reads a file's bytes back, checking the checksum first and every field after: keys
    /// ascending and bounded, revisions within the snapshot's, values within the store's limit.
    pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
        if !bytes.starts_with(MAGIC) {
            return Err(SnapshotError::Magic);
        }
        let body_len = bytes.len().checked_sub(32).ok_or(SnapshotError::Checksum)?;
        let (body, digest) = bytes.split_at(body_len);
        if Sha256::digest(body).as_slice() != digest {
            return Err(SnapshotError::Checksum);
        }
        let mut reader = Reader {
            bytes: body,
            at: MAGIC.len(),
        };
        let revision = reader.i64()?;
        if revision < 0 {
            return Err(malformed("a negative revision"));
        }
        let mut kvs: Vec<KeyValue> = Vec::new();
        loop {
            match reader.take(1)?[0] {
                0 => break,
                1 => {}
                tag => return Err(malformed(&format!("record tag {tag}"))),
            }
            let key = String::from_utf8(reader.bytes(MAX_KEY_BYTES)?.to_vec())
                .map_err(|_| malformed("a key that is not UTF-8"))?;
            if kvs.last().is_some_and(|last| last.key >= key) {
                return Err(malformed(&format!("key {key:?} out of order")));
            }
            let (create_revision, mod_revision, version) =
                (reader.i64()?, reader.i64()?, reader.i64()?);
            if !(1 <= create_revision
                && create_revision <= mod_revision
                && mod_revision <= revision)
                || version < 1
            {
                return Err(malformed(&format!("the revisions of {key:?}")));
            }
            let value = Bytes::copy_from_slice(reader.bytes(MAX_VALUE_BYTES)?);
            kvs.push(KeyValue {
                key,
                value,
                create_revision,
                mod_revision,
                version,
            });
        }
        if reader.at != body.len() {
            return Err(malformed("bytes after the last record"));
        }
        Ok(Snapshot { revision, kvs })
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Keys and values are bounded far below 4 GiB by the store.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend(len.to_le_bytes());
    out.extend(bytes);
}

fn malformed(what: &str) -> SnapshotError {
    SnapshotError::Malformed(what.to_string())
}

/// A cursor over a snapshot's body that never reads past its end.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| malformed("cut short"))?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn i64(&mut self) -> Result<i64, SnapshotError> {
        let mut n = [0; 8];
        n.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(n))
    }

    /// A length-prefixed field of at most `max` bytes.
    fn bytes(&mut self, max: usize) -> Result<&'a [u8], SnapshotError> {
        let mut len = [0; 4];
        len.copy_from_slice(self.take(4)?);
        let len = usize::try_from(u32::from_le_bytes(len)).unwrap_or(usize::MAX);
        if len > max {
            return Err(malformed(&format!(
                "a field of {len} bytes (at most {max})"
            )));
        }
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        let kv = |key: &str, value: &[u8], created, modified, version| KeyValue {
            key: key.to_string(),
            value: Bytes::copy_from_slice(value),
            create_revision: created,
            mod_revision: modified,
            version,
        };
        Snapshot {
            revision: 9,
            kvs: vec![kv("/a", b"one", 1, 4, 2), kv("/b", &[0, 255, 7], 5, 5, 1)],
        }
    }

    #[test]
    fn a_snapshot_reads_back_as_it_was_written() {
        let s = snapshot();
        assert_eq!(Snapshot::decode(&s.encode()).expect("decodes"), s);
    }

    #[test]
    fn a_damaged_or_cut_snapshot_is_refused() {
        let bytes = snapshot().encode();
        for cut in [0, 7, 20, bytes.len() - 1] {
            assert!(Snapshot::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for at in [10, 30, bytes.len() - 40, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 1;
            assert!(
                matches!(Snapshot::decode(&damaged), Err(SnapshotError::Checksum)),
                "byte {at}"
            );
        }
        assert!(matches!(
            Snapshot::decode(b"PK\x03\x04 not a snapshot"),
            Err(SnapshotError::Magic)
        ));
    }

    /// A file whose checksum is right but whose fields lie (written by hand, not by `encode`).
    #[test]
    fn a_well_summed_but_lying_snapshot_is_refused() {
        let seal = |mut body: Vec<u8>| {
            let digest = Sha256::digest(&body);
            body.extend(digest);
            body
        };
        let mut out_of_order = snapshot();
        out_of_order.kvs.reverse();
        assert!(Snapshot::decode(&out_of_order.encode()).is_err());
        let mut future = snapshot();
        future.kvs[0].mod_revision = 10;
        assert!(Snapshot::decode(&future.encode()).is_err());
        let mut huge = MAGIC.to_vec();
        huge.extend(1i64.to_le_bytes());
        huge.push(1);
        huge.extend(u32::MAX.to_le_bytes());
        assert!(matches!(
            Snapshot::decode(&seal(huge)),
            Err(SnapshotError::Malformed(_))
        ));
        let mut trailing = snapshot().encode();
        trailing.truncate(trailing.len() - 32);
        trailing.push(0);
        assert!(Snapshot::decode(&seal(trailing)).is_err());
    }
}
