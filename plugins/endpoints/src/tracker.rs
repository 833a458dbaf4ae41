//! The slices each Service's last sync created and deleted, so the next sync waits for the host's cache.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use wasmkube_sdk::ObjectKey;
use wasmkube_sdk::chrono::{DateTime, TimeDelta, Utc};
use wasmkube_sdk::k8s_openapi::api::discovery::v1::EndpointSlice;

/// How long unseen writes hold a Service back.
const TIMEOUT: TimeDelta = TimeDelta::minutes(1);

/// What one Service (by uid) is waiting to see.
struct Pending {
    uid: String,
    created: BTreeSet<String>,
    deleted: BTreeSet<String>,
    since: DateTime<Utc>,
}

// Reads come from the host's informer cache, which may not show a sync's own writes yet; like
// Kubernetes' `EndpointSliceTracker`, a Service's slices are not planned again until its last
// creates and deletes are visible (or a minute has passed), so a stale cache makes no duplicate.
// This lives in the instance's memory: a host that recreates instances only loses that guard.
thread_local! {
    static PENDING: RefCell<BTreeMap<ObjectKey, Pending>> = const { RefCell::new(BTreeMap::new()) };
}

/// Whether `slices` show the last sync of the Service at `key` (with `uid`); forgets met ones.
pub fn is_current(
    key: &ObjectKey,
    uid: &str,
    slices: &[EndpointSlice],
    now: DateTime<Utc>,
) -> bool {
    PENDING.with_borrow_mut(|pending| {
        let Some(p) = pending.get(key) else {
            return true;
        };
        let listed = |name: &String| {
            slices.iter().any(|s| {
                s.metadata.name.as_ref() == Some(name) && s.metadata.deletion_timestamp.is_none()
            })
        };
        let met = p.uid != uid
            || now - p.since > TIMEOUT
            || (p.created.iter().all(listed) && !p.deleted.iter().any(listed));
        if met {
            pending.remove(key);
        }
        met
    })
}

/// Records the slices a sync of the Service at `key` created and deleted (by name).
pub fn expect(
    key: &ObjectKey,
    uid: &str,
    created: Vec<String>,
    deleted: Vec<String>,
    now: DateTime<Utc>,
) {
    if created.is_empty() && deleted.is_empty() {
        return;
    }
    let p = Pending {
        uid: uid.to_string(),
        created: created.into_iter().collect(),
        deleted: deleted.into_iter().collect(),
        since: now,
    };
    PENDING.with_borrow_mut(|pending| pending.insert(key.clone(), p));
}

/// Forgets a Service that no longer exists.
pub fn forget(key: &ObjectKey) {
    PENDING.with_borrow_mut(|pending| pending.remove(key));
}
