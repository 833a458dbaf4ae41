//! Kubernetes' `progress.go` and status: replica counts, Available and Progressing conditions.

use std::time::Duration;

use wasmkube_sdk::Error;
use wasmkube_sdk::chrono::{DateTime, TimeDelta, Utc};
use wasmkube_sdk::k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus, ReplicaSet};
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::replicasets::{self, actual, available, name, ready, replicas};
use crate::rollout::Rollout;

/// The Progressing condition type.
pub const PROGRESSING: &str = "Progressing";
const AVAILABLE: &str = "Available";
const REPLICA_FAILURE: &str = "ReplicaFailure";

/// Progressing reasons, as Kubernetes names them.
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
const RS_UPDATED: &str = "ReplicaSetUpdated";
const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
const TIMED_OUT: &str = "ProgressDeadlineExceeded";
const PAUSED: &str = "DeploymentPaused";
const RESUMED: &str = "DeploymentResumed";

/// Kubernetes' `NewDeploymentCondition`.
pub fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: DateTime<Utc>,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

fn get<'s>(status: &'s DeploymentStatus, type_: &str) -> Option<&'s DeploymentCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
}

fn remove(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != type_);
    }
}

/// Kubernetes' `SetDeploymentCondition`: a condition with the same status and reason stays as
/// it is; a status change moves `lastTransitionTime`; the condition goes last.
pub fn set_condition(status: &mut DeploymentStatus, mut condition: DeploymentCondition) {
    if let Some(current) = get(status, &condition.type_) {
        if current.status == condition.status && current.reason == condition.reason {
            return;
        }
        if current.status == condition.status {
            condition.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove(status, &condition.type_);
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(condition);
}

impl Rollout<'_, '_> {
    /// Kubernetes' `HasProgressDeadline`.
    pub fn has_progress_deadline(&self) -> bool {
        self.spec
            .progress_deadline_seconds
            .is_some_and(|s| s != i32::MAX)
    }

    /// Sets the Progressing condition on the status being built.
    pub fn set_progressing(&mut self, status: &str, reason: &str, message: String) {
        let condition = condition(PROGRESSING, status, reason, message, self.now);
        set_condition(self.status_mut(), condition);
    }

    /// Kubernetes' `checkPausedConditions`: Progressing is Unknown while paused (unless the
    /// deadline already passed) and says DeploymentResumed once resumed.
    pub fn check_paused_conditions(&mut self) {
        if !self.has_progress_deadline() {
            return;
        }
        let status = self.status();
        let reason = get(&status, PROGRESSING).and_then(|c| c.reason.as_deref());
        if reason == Some(TIMED_OUT) {
            return;
        }
        if self.paused() && reason != Some(PAUSED) {
            self.set_progressing("Unknown", PAUSED, "Deployment is paused".into());
        } else if !self.paused() && reason == Some(PAUSED) {
            self.set_progressing("Unknown", RESUMED, "Deployment is resumed".into());
        }
    }

    /// Kubernetes' `calculateStatus`: counts from the ReplicaSets, and Available.
    fn calculate_status(
        &self,
        new_rs: Option<&ReplicaSet>,
        old_rss: &[ReplicaSet],
    ) -> DeploymentStatus {
        let all = || old_rss.iter().chain(new_rs);
        let available_replicas = replicasets::sum(all(), available);
        let total = replicasets::sum(all(), replicas);
        let mut status = DeploymentStatus {
            observed_generation: self.d.metadata.generation,
            replicas: Some(replicasets::sum(all(), actual)),
            updated_replicas: Some(new_rs.map_or(0, actual)),
            ready_replicas: Some(replicasets::sum(all(), ready)),
            available_replicas: Some(available_replicas),
            unavailable_replicas: Some((total - available_replicas).max(0)),
            collision_count: self.d.status.as_ref().and_then(|s| s.collision_count),
            conditions: self.d.status.as_ref().and_then(|s| s.conditions.clone()),
        };
        let available = if available_replicas >= self.replicas() - self.strategy().max_unavailable {
            condition(
                AVAILABLE,
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
                self.now,
            )
        } else {
            condition(
                AVAILABLE,
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
                self.now,
            )
        };
        set_condition(&mut status, available);
        status
    }

    /// Kubernetes' `syncDeploymentStatus`: counts and Available, Progressing untouched.
    pub fn sync_deployment_status(
        &mut self,
        new_rs: Option<&ReplicaSet>,
        old_rss: &[ReplicaSet],
    ) -> Result<(), Error> {
        let status = self.calculate_status(new_rs, old_rss);
        self.write_status(status)
    }

    /// Kubernetes' `syncStatusOnly`, for a Deployment being deleted.
    pub fn sync_status_only(&mut self, rs_list: Vec<ReplicaSet>) -> Result<(), Error> {
        let (new_rs, old_rss) = self.new_and_old(rs_list)?;
        self.sync_deployment_status(new_rs.as_ref(), &old_rss)
    }

    /// Kubernetes' `DeploymentComplete`: all replicas updated and available, generation observed.
    pub fn complete(&self, status: &DeploymentStatus) -> bool {
        let n = Some(self.replicas());
        status.updated_replicas == n
            && status.replicas == n
            && status.available_replicas == n
            && status.observed_generation >= self.d.metadata.generation
    }

    /// Kubernetes' `DeploymentProgressing`: more updated, ready or available replicas, or fewer
    /// old ones, than the stored status says.
    fn progressing(&self, new: &DeploymentStatus) -> bool {
        let old = self.status();
        let n = |v: Option<i32>| v.unwrap_or(0);
        let old_old = n(old.replicas) - n(old.updated_replicas);
        let new_old = n(new.replicas) - n(new.updated_replicas);
        n(new.updated_replicas) > n(old.updated_replicas)
            || new_old < old_old
            || n(new.ready_replicas) > n(old.ready_replicas)
            || n(new.available_replicas) > n(old.available_replicas)
    }

    /// When the Progressing condition of `status` times out, unless it cannot.
    fn deadline(&self, status: &DeploymentStatus) -> Option<DateTime<Utc>> {
        let seconds = self
            .spec
            .progress_deadline_seconds
            .filter(|_| self.has_progress_deadline())?;
        let condition = get(status, PROGRESSING)?;
        if matches!(
            condition.reason.as_deref(),
            Some(NEW_RS_AVAILABLE | TIMED_OUT)
        ) {
            return None;
        }
        let from = condition.last_update_time.as_ref()?.0;
        Some(from + TimeDelta::seconds(i64::from(seconds)))
    }

    /// Kubernetes' `syncRolloutStatus`: counts, Available, Progressing (complete, progressing
    /// or timed out), ReplicaFailure; requeues to check the deadline of a stuck rollout.
    pub fn sync_rollout_status(
        &mut self,
        new_rs: Option<&ReplicaSet>,
        old_rss: &[ReplicaSet],
    ) -> Result<(), Error> {
        let mut status = self.calculate_status(new_rs, old_rss);
        if !self.has_progress_deadline() {
            remove(&mut status, PROGRESSING);
        }
        let current = get(&self.status(), PROGRESSING).cloned();
        let completed = status.replicas == status.updated_replicas
            && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(NEW_RS_AVAILABLE);
        let what = |verb: &str| match new_rs {
            Some(rs) => format!("ReplicaSet {:?} {verb}.", name(rs)),
            None => format!("Deployment {:?} {verb}.", self.name()),
        };
        if self.has_progress_deadline() && !completed {
            if self.complete(&status) {
                let c = condition(
                    PROGRESSING,
                    "True",
                    NEW_RS_AVAILABLE,
                    what("has successfully progressed"),
                    self.now,
                );
                set_condition(&mut status, c);
            } else if self.progressing(&status) {
                let mut c = condition(
                    PROGRESSING,
                    "True",
                    RS_UPDATED,
                    what("is progressing"),
                    self.now,
                );
                if let Some(current) = &current {
                    if current.status == "True" {
                        c.last_transition_time = current.last_transition_time.clone();
                    }
                    remove(&mut status, PROGRESSING);
                }
                set_condition(&mut status, c);
            } else if self.deadline(&status).is_some_and(|at| at < self.now) {
                let c = condition(
                    PROGRESSING,
                    "False",
                    TIMED_OUT,
                    what("has timed out progressing"),
                    self.now,
                );
                set_condition(&mut status, c);
            }
        }
        match replica_failure(new_rs, old_rss) {
            Some(failure) => set_condition(&mut status, failure),
            None => remove(&mut status, REPLICA_FAILURE),
        }
        if status.conditions.as_ref().is_some_and(Vec::is_empty) {
            status.conditions = None;
        }
        // Kubernetes' `requeueStuckDeployment`: look again when the deadline passes.
        if !self.complete(&status)
            && let Some(at) = self.deadline(&status)
        {
            let after = (at - self.now).to_std().unwrap_or_default();
            self.requeue_within(after + Duration::from_secs(1));
        }
        self.write_status(status)
    }
}

/// Kubernetes' `getReplicaFailures`: the first ReplicaFailure condition of the ReplicaSets,
/// the new one first.
fn replica_failure(
    new_rs: Option<&ReplicaSet>,
    old_rss: &[ReplicaSet],
) -> Option<DeploymentCondition> {
    new_rs.into_iter().chain(old_rss).find_map(|rs| {
        let conditions = rs.status.as_ref()?.conditions.as_ref()?;
        let c = conditions
            .iter()
            .find(|c| c.type_ == REPLICA_FAILURE && c.status == "True")?;
        Some(DeploymentCondition {
            type_: REPLICA_FAILURE.to_string(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            last_update_time: c.last_transition_time.clone(),
            last_transition_time: c.last_transition_time.clone(),
        })
    })
}
