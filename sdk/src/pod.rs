//! Pod state as controllers judge it: readiness, availability, activity.

use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::core::v1::{Pod, PodCondition};

use crate::conditions::get_condition;

/// The pod's `Ready` condition, if reported.
pub fn ready_condition(pod: &Pod) -> Option<&PodCondition> {
    let conditions = pod.status.as_ref()?.conditions.as_deref()?;
    get_condition(conditions, "Ready")
}

/// Whether the pod's `Ready` condition is `True`.
pub fn is_pod_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// Whether the pod has been ready for more than `min_ready_seconds` at `now` (just ready when
/// zero), as Kubernetes' `IsPodAvailable` decides.
pub fn is_pod_available(pod: &Pod, min_ready_seconds: i32, now: DateTime<Utc>) -> bool {
    let Some(ready) = ready_condition(pod).filter(|c| c.status == "True") else {
        return false;
    };
    if min_ready_seconds <= 0 {
        return true;
    }
    ready
        .last_transition_time
        .as_ref()
        .is_some_and(|since| since.0 + TimeDelta::seconds(i64::from(min_ready_seconds)) < now)
}

/// When `pod` becomes available, if it is ready but not yet available at `now`.
pub fn available_at(
    pod: &Pod,
    min_ready_seconds: i32,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if !is_pod_ready(pod) || is_pod_available(pod, min_ready_seconds, now) {
        return None;
    }
    let since = ready_condition(pod)?.last_transition_time.as_ref()?;
    Some(since.0 + TimeDelta::seconds(i64::from(min_ready_seconds)))
}

/// Whether the pod is being deleted (`metadata.deletionTimestamp` set).
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// The pod's phase (`Pending` when unreported).
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Whether the pod counts for its controller: not succeeded, not failed, not terminating
/// (Kubernetes' `IsPodActive`).
pub fn is_active(pod: &Pod) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && !is_terminating(pod)
}

/// Whether the pod has been bound to a node.
pub fn is_scheduled(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    use k8s_openapi::api::core::v1::PodStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ready_since(since: DateTime<Utc>) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(since)),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let t0 = DateTime::<Utc>::UNIX_EPOCH;
        let pod = ready_since(t0);
        assert!(is_pod_ready(&pod));
        assert!(is_pod_available(&pod, 0, t0));
        assert!(!is_pod_available(&pod, 10, t0 + TimeDelta::seconds(10)));
        assert!(is_pod_available(&pod, 10, t0 + TimeDelta::seconds(11)));
        assert_eq!(
            available_at(&pod, 10, t0),
            Some(t0 + TimeDelta::seconds(10))
        );
        assert!(!is_pod_ready(&Pod::default()));
        assert!(is_active(&pod));
        assert!(!is_scheduled(&pod));
    }
}
