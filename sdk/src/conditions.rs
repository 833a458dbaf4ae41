//! Status conditions: get, set (keeping lastTransitionTime while the status holds) and remove.

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{
    DaemonSetCondition, DeploymentCondition, ReplicaSetCondition, StatefulSetCondition,
};
use k8s_openapi::api::batch::v1::JobCondition;
use k8s_openapi::api::core::v1::{NodeCondition, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// A status condition of any kind: `type`, `status` and a `lastTransitionTime`.
pub trait StatusCondition {
    /// The condition's type, e.g. `Ready`.
    fn type_(&self) -> &str;
    /// `True`, `False` or `Unknown`.
    fn status(&self) -> &str;
    /// When the status last changed.
    fn last_transition_time(&self) -> Option<&Time>;
    /// Sets when the status last changed.
    fn set_last_transition_time(&mut self, time: Time);
}

macro_rules! optional_time_condition {
    ($($kind:ty),*) => {$(
        impl StatusCondition for $kind {
            fn type_(&self) -> &str {
                &self.type_
            }
            fn status(&self) -> &str {
                &self.status
            }
            fn last_transition_time(&self) -> Option<&Time> {
                self.last_transition_time.as_ref()
            }
            fn set_last_transition_time(&mut self, time: Time) {
                self.last_transition_time = Some(time);
            }
        }
    )*};
}

optional_time_condition!(
    DaemonSetCondition,
    DeploymentCondition,
    JobCondition,
    NodeCondition,
    PodCondition,
    ReplicaSetCondition,
    StatefulSetCondition
);

impl StatusCondition for Condition {
    fn type_(&self) -> &str {
        &self.type_
    }
    fn status(&self) -> &str {
        &self.status
    }
    fn last_transition_time(&self) -> Option<&Time> {
        Some(&self.last_transition_time)
    }
    fn set_last_transition_time(&mut self, time: Time) {
        self.last_transition_time = time;
    }
}

/// The condition of type `type_`, if present.
pub fn get_condition<'c, C: StatusCondition>(conditions: &'c [C], type_: &str) -> Option<&'c C> {
    conditions.iter().find(|c| c.type_() == type_)
}

/// Whether the condition of type `type_` is present with status `True`.
pub fn is_condition_true<C: StatusCondition>(conditions: &[C], type_: &str) -> bool {
    get_condition(conditions, type_).is_some_and(|c| c.status() == "True")
}

/// Adds or replaces the condition of `condition`'s type. `lastTransitionTime` becomes `now`
/// when the status changes (or the condition is new) and is kept otherwise. Returns whether
/// anything changed.
pub fn set_condition<C: StatusCondition + Clone + PartialEq>(
    conditions: &mut Vec<C>,
    mut condition: C,
    now: DateTime<Utc>,
) -> bool {
    let Some(existing) = conditions
        .iter_mut()
        .find(|c| c.type_() == condition.type_())
    else {
        condition.set_last_transition_time(Time(now));
        conditions.push(condition);
        return true;
    };
    match existing.last_transition_time() {
        Some(time) if existing.status() == condition.status() => {
            condition.set_last_transition_time(time.clone());
        }
        _ => condition.set_last_transition_time(Time(now)),
    }
    if *existing == condition {
        return false;
    }
    *existing = condition;
    true
}

/// Removes the condition of type `type_`; returns whether it was present.
pub fn remove_condition<C: StatusCondition>(conditions: &mut Vec<C>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_() != type_);
    conditions.len() != before
}
