//! `Rollout`: one reconcile's view of a Deployment, with the writes that keep it current.

use std::time::Duration;

use wasmkube_sdk::chrono::{DateTime, SubsecRound, Utc};
use wasmkube_sdk::k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStatus};
use wasmkube_sdk::serde_json::json;
use wasmkube_sdk::{Context, Error, EventType, Outcome, PatchType};

use crate::annotations;
use crate::strategy::{self, Strategy};

/// A Deployment being reconciled: the object as last written, its status as stored (to write
/// only changes), its resolved strategy, and when to look at it again.
pub struct Rollout<'a, 'h> {
    pub(crate) ctx: &'a Context<'h>,
    pub(crate) d: Deployment,
    pub(crate) spec: DeploymentSpec,
    stored: Option<DeploymentStatus>,
    strategy: Strategy,
    pub(crate) now: DateTime<Utc>,
    pub(crate) requeue: Option<Duration>,
}

impl<'a, 'h> Rollout<'a, 'h> {
    /// A rollout of `d`, or the message of a strategy Kubernetes' validation would refuse.
    pub fn new(ctx: &'a Context<'h>, d: Deployment) -> Result<Result<Self, String>, Error> {
        let spec = d.spec.clone().unwrap_or_default();
        let strategy = match strategy::resolve(&spec) {
            Ok(strategy) => strategy,
            Err(message) => return Ok(Err(message)),
        };
        // Status times are stored with second precision.
        let now = ctx.now()?.trunc_subsecs(0);
        Ok(Ok(Rollout {
            ctx,
            stored: d.status.clone(),
            d,
            spec,
            strategy,
            now,
            requeue: None,
        }))
    }

    /// The Deployment as last read or written.
    pub fn deployment(&self) -> &Deployment {
        &self.d
    }

    /// The resolved strategy.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// `spec.replicas` (defaulted to 1).
    pub fn replicas(&self) -> i32 {
        self.spec.replicas.unwrap_or(1)
    }

    /// `spec.paused`.
    pub fn paused(&self) -> bool {
        self.spec.paused == Some(true)
    }

    /// The Deployment's name.
    pub fn name(&self) -> &str {
        self.d.metadata.name.as_deref().unwrap_or_default()
    }

    /// The Deployment's namespace.
    pub fn namespace(&self) -> &str {
        self.d.metadata.namespace.as_deref().unwrap_or_default()
    }

    /// The status being built (the stored one until changed).
    pub fn status_mut(&mut self) -> &mut DeploymentStatus {
        self.d.status.get_or_insert_with(DeploymentStatus::default)
    }

    /// The current status (empty when never written).
    pub fn status(&self) -> DeploymentStatus {
        self.d.status.clone().unwrap_or_default()
    }

    /// Records a Normal or Warning Event about the Deployment.
    pub fn event(&self, kind: EventType, reason: &str, message: &str) -> Result<(), Error> {
        self.ctx.event(&self.d, kind, reason, message)
    }

    /// Kubernetes' `SetDeploymentRevision`: writes the revision annotation when it changed.
    pub fn set_revision(&mut self, revision: i64) -> Result<(), Error> {
        if annotations::revision(&self.d.metadata) == revision
            && self
                .d
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(annotations::REVISION))
        {
            return Ok(());
        }
        let rv = self.d.metadata.resource_version.clone();
        let patch = json!({"metadata": {
            "resourceVersion": rv,
            "annotations": {annotations::REVISION: revision.to_string()},
        }});
        let patched: Deployment =
            self.ctx
                .patch(self.namespace(), self.name(), PatchType::Merge, &patch)?;
        self.d.metadata = patched.metadata;
        Ok(())
    }

    /// Writes `status` unless it is what is stored.
    pub fn write_status(&mut self, status: DeploymentStatus) -> Result<(), Error> {
        self.d.status = Some(status);
        if self.d.status == self.stored {
            return Ok(());
        }
        let written = self.ctx.update_status(&self.d)?;
        self.stored = written.status.clone();
        self.d = written;
        Ok(())
    }

    /// Asks to be called again within `after`.
    pub fn requeue_within(&mut self, after: Duration) {
        self.requeue = Some(self.requeue.map_or(after, |r| r.min(after)));
    }

    /// What the host should do next.
    pub fn outcome(&self) -> Outcome {
        self.requeue.map_or(Outcome::Done, Outcome::RequeueAfter)
    }
}
