//! The Deployment controller as a wasmkube plugin: rolls pod templates out through ReplicaSets.

mod annotations;
mod progress;
mod recreate;
mod replicasets;
mod rolling;
mod rollout;
mod strategy;
mod sync;
#[cfg(test)]
mod tests;

use wasmkube_sdk::k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use wasmkube_sdk::k8s_openapi::api::core::v1::Pod;
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use wasmkube_sdk::owner::{adopt, controller_of, release};
use wasmkube_sdk::selector::{Selector, matches, query, selector};
use wasmkube_sdk::{
    Context, Controller, Error, EventType, LogLevel, ObjectKey, Outcome, Registration,
};

use crate::rollout::Rollout;

/// The Deployment controller.
pub struct DeploymentController;

wasmkube_sdk::export_controller!(DeploymentController);

impl Controller for DeploymentController {
    fn registration() -> Registration {
        Registration::new::<Deployment>("deployment-controller")
            .owns::<ReplicaSet>()
            .reads::<Pod>()
    }

    /// Kubernetes' `syncDeployment`.
    fn reconcile(ctx: &Context<'_>, key: ObjectKey) -> Result<Outcome, Error> {
        let Some(d) = ctx.get::<Deployment>(&key.namespace, &key.name)? else {
            return Ok(Outcome::Done);
        };
        let spec_selector = d.spec.as_ref().map(|s| s.selector.clone());
        if spec_selector.as_ref().is_none_or(selects_everything) {
            return selecting_all(ctx, d);
        }
        let sel = match spec_selector.as_ref().map(selector).transpose() {
            Ok(Some(sel)) => sel,
            Ok(None) | Err(_) => {
                ctx.log(
                    LogLevel::Error,
                    &format!("deployment {key}: invalid selector"),
                );
                return Ok(Outcome::Done);
            }
        };
        let mut rollout = match Rollout::new(ctx, d)? {
            Ok(rollout) => rollout,
            Err(message) => {
                ctx.log(LogLevel::Error, &format!("deployment {key}: {message}"));
                return Ok(Outcome::Done);
            }
        };
        let rs_list = claim_replica_sets(ctx, rollout.deployment(), &sel)?;
        if rollout.deployment().metadata.deletion_timestamp.is_some() {
            rollout.sync_status_only(rs_list)?;
            return Ok(Outcome::Done);
        }
        rollout.check_paused_conditions();
        let (new_rs, old_rss) = rollout.new_and_old(rs_list)?;
        if rollout.paused() || rollout.is_scaling_event(new_rs.as_ref(), &old_rss) {
            rollout.sync(new_rs, old_rss)?;
        } else if rollout.strategy().rolling {
            rollout.rollout_rolling(new_rs, old_rss)?;
        } else {
            let selector = spec_selector.as_ref().map(query).transpose()?;
            let pods = ctx.list::<Pod>(&key.namespace, selector.as_deref().unwrap_or_default())?;
            rollout.rollout_recreate(new_rs, old_rss, &pods)?;
        }
        Ok(rollout.outcome())
    }
}

/// Whether a selector is empty, which would select every pod in the namespace.
fn selects_everything(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(|l| l.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|e| e.is_empty())
}

/// A Deployment with an empty selector is refused with a Warning, only observing its generation.
fn selecting_all(ctx: &Context<'_>, mut d: Deployment) -> Result<Outcome, Error> {
    let message = "This deployment is selecting all pods. A non-empty selector is required.";
    ctx.event(&d, EventType::Warning, "SelectingAll", message)?;
    let status = d.status.get_or_insert_with(Default::default);
    if status.observed_generation < d.metadata.generation {
        status.observed_generation = d.metadata.generation;
        ctx.update_status(&d)?;
    }
    Ok(Outcome::Done)
}

/// Kubernetes' `ClaimReplicaSets`: keeps the ReplicaSets this Deployment controls that still
/// match, adopts matching orphans (unless either side is being deleted) and releases controlled
/// ones that no longer match. Returns the ReplicaSets the Deployment owns afterwards.
fn claim_replica_sets(
    ctx: &Context<'_>,
    d: &Deployment,
    selector: &Selector,
) -> Result<Vec<ReplicaSet>, Error> {
    let namespace = d.metadata.namespace.as_deref().unwrap_or_default();
    let deleting = d.metadata.deletion_timestamp.is_some();
    let mut owned = Vec::new();
    for rs in ctx.list::<ReplicaSet>(namespace, "")? {
        let matching = matches(selector, &rs.metadata);
        let result = match controller_of(&rs.metadata) {
            Some(r) if Some(&r.uid) != d.metadata.uid.as_ref() => continue,
            Some(_) if matching => {
                owned.push(rs);
                continue;
            }
            Some(_) if deleting => continue,
            Some(_) => release(ctx, d, &rs).map(drop),
            None if !matching || deleting || rs.metadata.deletion_timestamp.is_some() => continue,
            None => adopt(ctx, d, &rs).map(|adopted| owned.push(adopted)),
        };
        match result {
            Err(e) if !e.is_not_found() => return Err(e),
            _ => {}
        }
    }
    Ok(owned)
}
