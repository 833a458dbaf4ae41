//! Graceful deletion, as kube-apiserver's pod strategy does it: a pod on a node is marked and gets its grace period; its node deletes it once stopped.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::Value;
use wasmkube_model::meta::{self, ResourceExt};
use wasmkube_model::resource::ResourceInfo;

/// The grace period of a pod that sets none.
const DEFAULT_GRACE_SECONDS: i64 = 30;

/// The longest grace period a deletion gives: a year. Kubernetes sets no bound (its Go
/// `time.Duration` wraps past 292 years); ours keeps every `deletionTimestamp` a date clients
/// parse (years up to 9999) and the arithmetic in range.
pub const MAX_GRACE_SECONDS: i64 = 365 * 24 * 60 * 60;

/// What a delete does to an object's deletion mark.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Already waiting for its node, no sooner than asked: the delete changes nothing.
    Pending,
    /// Marked with this `deletionTimestamp` and `deletionGracePeriodSeconds`. A grace period of
    /// 0 deletes it at once, unless finalizers hold it.
    Mark { timestamp: String, grace: i64 },
}

/// Whether `obj` is marked for deletion with no grace period to wait for: only finalizers may
/// hold it.
pub fn marked_without_grace(obj: &Value) -> bool {
    obj.is_deleting()
        && obj["metadata"]["deletionGracePeriodSeconds"]
            .as_i64()
            .is_none_or(|g| g == 0)
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The grace period a delete asking for `requested` gives a pod that is not marked yet: none
/// when it is not on a node or has finished; else what was asked, the pod's own
/// `terminationGracePeriodSeconds`, or 30 s (a negative period is 1 s, as in Kubernetes), at
/// most [`MAX_GRACE_SECONDS`].
fn pod_grace(pod: &Value, requested: Option<i64>) -> i64 {
    let unscheduled = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    let finished = matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    if unscheduled || finished {
        return 0;
    }
    let grace = requested
        .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(DEFAULT_GRACE_SECONDS);
    if grace < 0 {
        1
    } else {
        grace.min(MAX_GRACE_SECONDS)
    }
}

/// `at` moved by `seconds`, which callers keep within [`MAX_GRACE_SECONDS`] of it; a sum out
/// of chrono's range stays at `at` rather than panic.
fn shifted(at: DateTime<Utc>, seconds: i64) -> String {
    let moved = TimeDelta::try_seconds(seconds).and_then(|d| at.checked_add_signed(d));
    time(moved.unwrap_or(at))
}

/// How a delete asking for a grace period of `requested` seconds marks `obj`, at `now`. Only
/// pods have grace periods; a pod already marked may only be brought forward (its timestamp
/// moves by the difference).
pub fn plan(info: &ResourceInfo, obj: &Value, requested: Option<i64>, now: DateTime<Utc>) -> Plan {
    let meta = &obj["metadata"];
    let marked = meta["deletionTimestamp"]
        .as_str()
        .and_then(meta::parse_time);
    let current = meta["deletionGracePeriodSeconds"]
        .as_i64()
        .unwrap_or(0)
        .clamp(0, MAX_GRACE_SECONDS);
    match marked {
        Some(at) if current > 0 => match requested.map(|g| g.max(0)) {
            Some(shorter) if shorter < current => Plan::Mark {
                timestamp: shifted(at, shorter - current),
                grace: shorter,
            },
            _ => Plan::Pending,
        },
        Some(at) => Plan::Mark {
            timestamp: time(at),
            grace: 0,
        },
        None => {
            let grace = if info.group.is_empty() && info.kind == "Pod" {
                pod_grace(obj, requested)
            } else {
                0
            };
            Plan::Mark {
                timestamp: shifted(now, grace),
                grace,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasmkube_model::resource::{Registry, builtins};

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        meta::parse_time(text).expect("valid")
    }

    fn mark(timestamp: &str, grace: i64) -> Plan {
        Plan::Mark {
            timestamp: timestamp.into(),
            grace,
        }
    }

    #[test]
    fn pods_on_nodes_get_a_grace_period_others_go_at_once() {
        let registry = Registry::new(builtins());
        let pods = registry.by_kind("v1", "Pod").expect("served");
        let maps = registry.by_kind("v1", "ConfigMap").expect("served");
        let now = at("2024-01-01T00:00:00Z");
        let running = json!({"metadata": {}, "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 10},
            "status": {"phase": "Running"}});
        assert_eq!(
            plan(pods, &running, None, now),
            mark("2024-01-01T00:00:10Z", 10)
        );
        assert_eq!(
            plan(pods, &running, Some(3), now),
            mark("2024-01-01T00:00:03Z", 3)
        );
        assert_eq!(
            plan(pods, &running, Some(-5), now),
            mark("2024-01-01T00:00:01Z", 1)
        );
        assert_eq!(
            plan(pods, &running, Some(0), now),
            mark("2024-01-01T00:00:00Z", 0)
        );
        let unscheduled = json!({"metadata": {}, "spec": {}});
        assert_eq!(
            plan(pods, &unscheduled, Some(9), now),
            mark("2024-01-01T00:00:00Z", 0)
        );
        let done =
            json!({"metadata": {}, "spec": {"nodeName": "n1"}, "status": {"phase": "Succeeded"}});
        assert_eq!(
            plan(pods, &done, None, now),
            mark("2024-01-01T00:00:00Z", 0)
        );
        let no_spec_grace = json!({"metadata": {}, "spec": {"nodeName": "n1"}});
        assert_eq!(
            plan(pods, &no_spec_grace, None, now),
            mark("2024-01-01T00:00:30Z", 30)
        );
        assert_eq!(
            plan(maps, &json!({"metadata": {}}), Some(9), now),
            mark("2024-01-01T00:00:00Z", 0)
        );
    }

    #[test]
    fn huge_grace_periods_are_capped_not_a_panic() {
        let registry = Registry::new(builtins());
        let pods = registry.by_kind("v1", "Pod").expect("served");
        let now = at("2024-01-01T00:00:00Z");
        let huge = json!({"metadata": {}, "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": i64::MAX}});
        assert_eq!(
            plan(pods, &huge, None, now),
            mark("2024-12-31T00:00:00Z", MAX_GRACE_SECONDS)
        );
        assert_eq!(
            plan(pods, &huge, Some(i64::MAX), now),
            mark("2024-12-31T00:00:00Z", MAX_GRACE_SECONDS)
        );
        let marked = json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:30Z",
            "deletionGracePeriodSeconds": i64::MAX}, "spec": {"nodeName": "n1"}});
        assert_eq!(
            plan(pods, &marked, Some(i64::MIN), now),
            mark("2023-01-01T00:00:30Z", 0)
        );
    }

    #[test]
    fn a_marked_pod_may_only_be_brought_forward() {
        let registry = Registry::new(builtins());
        let pods = registry.by_kind("v1", "Pod").expect("served");
        let now = at("2024-01-01T00:00:05Z");
        let marked = json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:30Z", "deletionGracePeriodSeconds": 30},
            "spec": {"nodeName": "n1"}});
        assert_eq!(plan(pods, &marked, None, now), Plan::Pending);
        assert_eq!(plan(pods, &marked, Some(30), now), Plan::Pending);
        assert_eq!(plan(pods, &marked, Some(45), now), Plan::Pending);
        assert_eq!(
            plan(pods, &marked, Some(10), now),
            mark("2024-01-01T00:00:10Z", 10)
        );
        assert_eq!(
            plan(pods, &marked, Some(0), now),
            mark("2024-01-01T00:00:00Z", 0)
        );
        // Marked with no grace period (held by finalizers): stays as it is.
        let held = json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z", "deletionGracePeriodSeconds": 0}});
        assert_eq!(
            plan(pods, &held, Some(10), now),
            mark("2024-01-01T00:00:00Z", 0)
        );
    }
}
