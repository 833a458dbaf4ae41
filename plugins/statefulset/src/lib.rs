//! The StatefulSet controller as a wasmkube plugin: ordinal pods with stable names and storage.

mod pods;
mod revisions;
mod status;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use wasmkube_sdk::k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use wasmkube_sdk::k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use wasmkube_sdk::owner::claim;
use wasmkube_sdk::pod::{is_terminating, phase};
use wasmkube_sdk::revision::REVISION_HASH_LABEL;
use wasmkube_sdk::selector::selector;
use wasmkube_sdk::{
    Context, Controller, Error, EventType, LogLevel, ObjectKey, Outcome, Propagation, Registration,
};

use crate::pods::{ensure_claims, is_running_and_ready, ordinal, pod_for_ordinal, revision};
use crate::revisions::Revisions;

/// The StatefulSet controller.
pub struct StatefulSetController;

wasmkube_sdk::export_controller!(StatefulSetController);

impl Controller for StatefulSetController {
    fn registration() -> Registration {
        Registration::new::<StatefulSet>("statefulset-controller")
            .owns::<Pod>()
            .owns::<PersistentVolumeClaim>()
            .owns::<ControllerRevision>()
    }

    fn reconcile(ctx: &Context<'_>, key: ObjectKey) -> Result<Outcome, Error> {
        let Some(set) = ctx.get::<StatefulSet>(&key.namespace, &key.name)? else {
            return Ok(Outcome::Done);
        };
        if set.metadata.deletion_timestamp.is_some() {
            return Ok(Outcome::Done); // the garbage collector removes the pods
        }
        let spec = set.spec.clone().unwrap_or_default();
        let selector = match selector(&spec.selector) {
            Ok(selector) => selector,
            Err(e) => {
                ctx.log(LogLevel::Error, &format!("statefulset {key}: {e}"));
                return Ok(Outcome::Done);
            }
        };
        let revisions = revisions::sync(ctx, &set)?;
        // Members are the pods named `<set>-<ordinal>`; matching orphans among them are adopted.
        let members: Vec<Pod> = ctx
            .list::<Pod>(&key.namespace, "")?
            .into_iter()
            .filter(|p| ordinal(&key.name, p).is_some())
            .collect();
        let pods: BTreeMap<usize, Pod> = claim(ctx, &set, &selector, members)?
            .into_iter()
            .filter_map(|p| ordinal(&key.name, &p).map(|o| (o, p)))
            .collect();
        let now = ctx.now()?;
        let new_status = status::calculate(&set, &pods, &revisions, now);
        let result = SetSync {
            ctx,
            set: &set,
            pods: &pods,
            revisions: &revisions,
        }
        .run();
        revisions::prune(ctx, &set, &revisions, &pods)?;
        status::update(ctx, set, new_status)?;
        result?;
        Ok(Outcome::Done)
    }
}

/// One sync of a set: its pods by ordinal and its revisions.
struct SetSync<'a> {
    ctx: &'a Context<'a>,
    set: &'a StatefulSet,
    pods: &'a BTreeMap<usize, Pod>,
    revisions: &'a Revisions,
}

impl SetSync<'_> {
    /// Kubernetes' `updateStatefulSet`: replaces failed pods, creates missing ordinals (in order
    /// and one at a time, each Running and Ready before the next, unless the policy is Parallel),
    /// deletes ordinals beyond `replicas` from the highest, then rolls pods to the update
    /// revision from the highest ordinal down to `partition`, one at a time.
    fn run(&self) -> Result<(), Error> {
        let spec = self.set.spec.clone().unwrap_or_default();
        let replicas = usize::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
        let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
        for ordinal in 0..replicas {
            let Some(pod) = self.pods.get(&ordinal) else {
                self.create(ordinal)?;
                if parallel {
                    continue;
                }
                return Ok(());
            };
            if matches!(phase(pod), "Failed" | "Succeeded") && !is_terminating(pod) {
                self.delete(pod)?;
            }
            if !parallel && !is_running_and_ready(pod) {
                return Ok(());
            }
        }
        for pod in self.pods.range(replicas..).rev().map(|(_, p)| p) {
            if !is_terminating(pod) {
                self.delete(pod)?;
            }
            if !parallel {
                return Ok(());
            }
        }
        let strategy = spec.update_strategy.unwrap_or_default();
        if strategy.type_.as_deref().unwrap_or("RollingUpdate") != "RollingUpdate" {
            return Ok(());
        }
        let partition = strategy.rolling_update.and_then(|r| r.partition);
        let partition = usize::try_from(partition.unwrap_or(0)).unwrap_or(0);
        for ordinal in (partition..replicas).rev() {
            let Some(pod) = self.pods.get(&ordinal) else {
                return Ok(());
            };
            if revision(pod) != Some(self.revisions.update.as_str()) && !is_terminating(pod) {
                return self.delete(pod);
            }
            if !is_running_and_ready(pod) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Creates the ordinal's claims, then its pod: of the current revision below the partition
    /// during a RollingUpdate, else of the update revision. (Kubernetes also keeps ordinals below
    /// `status.currentReplicas` at the current revision when no partition is set; here they get
    /// the update revision.)
    fn create(&self, ordinal: usize) -> Result<(), Error> {
        ensure_claims(self.ctx, self.set, ordinal)?;
        let spec = self.set.spec.clone().unwrap_or_default();
        let strategy = spec.update_strategy.unwrap_or_default();
        let rolling = strategy.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate";
        let partition = strategy.rolling_update.and_then(|r| r.partition);
        let below = usize::try_from(partition.unwrap_or(0)).unwrap_or(0);
        let (template, revision) = match &self.revisions.current_template {
            Some(current) if rolling && ordinal < below => (current, &self.revisions.current),
            _ => (&spec.template, &self.revisions.update),
        };
        let pod = pod_for_ordinal(self.set, template, revision, ordinal)?;
        let name = pod.metadata.name.clone().unwrap_or_default();
        match self.ctx.create(&pod) {
            Ok(_) => {
                let message = format!("create Pod {name} in StatefulSet successful");
                self.ctx
                    .event(self.set, EventType::Normal, "SuccessfulCreate", &message)
            }
            Err(e) if e.is_already_exists() => Ok(()), // the cache is behind
            Err(e) => {
                let message = format!("create Pod {name} in StatefulSet failed: {e}");
                self.ctx
                    .event(self.set, EventType::Warning, "FailedCreate", &message)?;
                Err(e)
            }
        }
    }

    fn delete(&self, pod: &Pod) -> Result<(), Error> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        match self
            .ctx
            .delete::<Pod>(namespace, name, Propagation::Background)
        {
            Ok(()) => {
                let message = format!("delete Pod {name} in StatefulSet successful");
                self.ctx
                    .event(self.set, EventType::Normal, "SuccessfulDelete", &message)
            }
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Whether a pod carries the given revision label value; used by the status.
fn has_revision(pod: &Pod, revision: &str) -> bool {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_HASH_LABEL))
        .is_some_and(|r| r == revision)
}
