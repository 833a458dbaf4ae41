//! Jobs this instance created lately, which the host's informer cache may not show yet.

use std::cell::RefCell;
use std::collections::BTreeMap;

use wasmkube_sdk::chrono::{DateTime, TimeDelta, Utc};

/// How long a created Job is expected to be missing from the cache at most.
const GRACE: TimeDelta = TimeDelta::seconds(30);

thread_local! {
    static CREATED: RefCell<BTreeMap<(String, String), DateTime<Utc>>> =
        const { RefCell::new(BTreeMap::new()) };
}

/// Records that the Job `namespace/name` was created at `now`.
pub fn remember(namespace: &str, name: &str, now: DateTime<Utc>) {
    CREATED.with_borrow_mut(|created| {
        created.retain(|_, at| now - *at < GRACE);
        created.insert((namespace.to_string(), name.to_string()), now);
    });
}

/// Whether the Job `namespace/name` was created less than [`GRACE`] before `now`, so its
/// absence from a list (or from the CronJob's status) may just be the cache lagging.
pub fn is_recent(namespace: &str, name: &str, now: DateTime<Utc>) -> bool {
    CREATED.with_borrow(|created| {
        created
            .get(&(namespace.to_string(), name.to_string()))
            .is_some_and(|at| now - *at < GRACE)
    })
}
