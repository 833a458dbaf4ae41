//! Expectations: the pod creates and deletes a sync made, so the next sync waits for the host's cache.
//!
//! Reads come from the host's informer cache, which may not show a sync's own writes yet; like
//! Kubernetes' `ControllerExpectations`, an owner (a ReplicaSet, a Job, …) does not create or
//! delete pods again until its last creates and deletes are visible (or five minutes have passed).
//! They live in the instance's memory: a host that recreates the instance between calls only
//! loses that protection.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::core::v1::Pod;

use crate::ObjectKey;

/// How long unmet expectations block a sync, as Kubernetes' `ExpectationsTimeout`.
const TIMEOUT: TimeDelta = TimeDelta::minutes(5);

/// What one owner (by uid) is waiting to see.
struct Pending {
    uid: String,
    created: BTreeSet<String>,
    deleted: BTreeSet<String>,
    since: DateTime<Utc>,
}

thread_local! {
    static PENDING: RefCell<BTreeMap<ObjectKey, Pending>> = const { RefCell::new(BTreeMap::new()) };
}

/// Whether the owner at `key` (with `uid`) may create or delete pods: its last creates are all listed
/// in `pods` and its last deletes are gone or terminating. Forgets met expectations.
pub fn satisfied(key: &ObjectKey, uid: &str, pods: &[Pod], now: DateTime<Utc>) -> bool {
    PENDING.with_borrow_mut(|pending| {
        let Some(p) = pending.get(key) else {
            return true;
        };
        let name = |pod: &Pod| pod.metadata.name.clone().unwrap_or_default();
        let seen = |n: &String| pods.iter().any(|pod| name(pod) == *n);
        let gone = |uid: &String| {
            !pods.iter().any(|pod| {
                pod.metadata.uid.as_ref() == Some(uid) && pod.metadata.deletion_timestamp.is_none()
            })
        };
        let met = p.uid != uid
            || now - p.since > TIMEOUT
            || (p.created.iter().all(seen) && p.deleted.iter().all(gone));
        if met {
            pending.remove(key);
        }
        met
    })
}

/// Records what a sync of the owner at `key` created (pod names) and deleted (pod uids).
pub fn expect(
    key: &ObjectKey,
    uid: &str,
    created: BTreeSet<String>,
    deleted: BTreeSet<String>,
    now: DateTime<Utc>,
) {
    if created.is_empty() && deleted.is_empty() {
        return;
    }
    PENDING.with_borrow_mut(|pending| {
        let p = Pending {
            uid: uid.to_string(),
            created,
            deleted,
            since: now,
        };
        pending.insert(key.clone(), p);
    });
}

/// Forgets an owner that no longer exists.
pub fn forget(key: &ObjectKey) {
    PENDING.with_borrow_mut(|pending| pending.remove(key));
}
