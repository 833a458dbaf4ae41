//! The ReplicaSet controller as a wasmkube plugin: keeps `spec.replicas` pods matching the selector.

mod ranking;
mod status;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::time::Duration;

use wasmkube_sdk::chrono::{DateTime, Utc};
use wasmkube_sdk::expectations;
use wasmkube_sdk::k8s_openapi::api::apps::v1::ReplicaSet;
use wasmkube_sdk::k8s_openapi::api::core::v1::Pod;
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use wasmkube_sdk::owner::{claim, controller_ref};
use wasmkube_sdk::pod::{available_at, is_active};
use wasmkube_sdk::selector::selector;
use wasmkube_sdk::{
    Context, Controller, Error, EventType, LogLevel, ObjectKey, Outcome, Propagation, Registration,
};

/// At most this many pods are created or deleted per sync, as Kubernetes' `BurstReplicas`.
const BURST_REPLICAS: usize = 500;

/// The ReplicaSet controller.
pub struct ReplicaSetController;

wasmkube_sdk::export_controller!(ReplicaSetController);

impl Controller for ReplicaSetController {
    fn registration() -> Registration {
        Registration::new::<ReplicaSet>("replicaset-controller").owns::<Pod>()
    }

    fn reconcile(ctx: &Context<'_>, key: ObjectKey) -> Result<Outcome, Error> {
        let Some(rs) = ctx.get::<ReplicaSet>(&key.namespace, &key.name)? else {
            expectations::forget(&key);
            return Ok(Outcome::Done);
        };
        let spec = rs.spec.clone().unwrap_or_default();
        let selector = match selector(&spec.selector) {
            Ok(selector) => selector,
            Err(e) => {
                ctx.log(LogLevel::Error, &format!("replicaset {key}: {e}"));
                return Ok(Outcome::Done);
            }
        };
        let now = ctx.now()?;
        let uid = rs.metadata.uid.clone().unwrap_or_default();
        let all = ctx.list::<Pod>(&key.namespace, "")?;
        let needs_sync = expectations::satisfied(&key, &uid, &all, now);
        let active: Vec<Pod> = all.into_iter().filter(is_active).collect();
        let owned = claim(ctx, &rs, &selector, active)?;

        let scaling = if needs_sync && rs.metadata.deletion_timestamp.is_none() {
            let want = usize::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
            scale(ctx, &rs, &owned, want, now)
        } else {
            Ok(())
        };
        let message = scaling.as_ref().err().map(ToString::to_string);
        let new_status =
            status::calculate(&rs, &owned, message.as_deref().map_or(Ok(()), Err), now);
        status::update(ctx, rs, new_status)?;
        scaling?;

        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let next = owned
            .iter()
            .filter_map(|pod| available_at(pod, min_ready, now))
            .min();
        Ok(match next.and_then(|at| (at - now).to_std().ok()) {
            Some(wait) => Outcome::RequeueAfter(wait + Duration::from_secs(1)),
            None => Outcome::Done,
        })
    }
}

/// Kubernetes' `manageReplicas`: creates or deletes pods (at most [`BURST_REPLICAS`]) towards
/// `want`, with an Event for each, and records what it did as expectations.
fn scale(
    ctx: &Context<'_>,
    rs: &ReplicaSet,
    owned: &[Pod],
    want: usize,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let key = ObjectKey::new(
        rs.metadata.namespace.as_deref().unwrap_or_default(),
        rs.metadata.name.as_deref().unwrap_or_default(),
    );
    let uid = rs.metadata.uid.as_deref().unwrap_or_default();
    let (mut created, mut deleted) = (BTreeSet::new(), BTreeSet::new());
    let mut result = Ok(());
    if owned.len() < want {
        let pod = pod_from_template(rs)?;
        for _ in 0..(want - owned.len()).min(BURST_REPLICAS) {
            match ctx.create(&pod) {
                Ok(pod) => {
                    let name = pod.metadata.name.unwrap_or_default();
                    ctx.event(
                        rs,
                        EventType::Normal,
                        "SuccessfulCreate",
                        &format!("Created pod: {name}"),
                    )?;
                    created.insert(name);
                }
                Err(e) => {
                    ctx.event(
                        rs,
                        EventType::Warning,
                        "FailedCreate",
                        &format!("Error creating: {e}"),
                    )?;
                    result = Err(e);
                    break;
                }
            }
        }
    } else if owned.len() > want {
        let count = (owned.len() - want).min(BURST_REPLICAS);
        for pod in ranking::pods_to_delete(owned, count, now) {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            match ctx.delete::<Pod>(&key.namespace, name, Propagation::Background) {
                Ok(()) => {
                    ctx.event(
                        rs,
                        EventType::Normal,
                        "SuccessfulDelete",
                        &format!("Deleted pod: {name}"),
                    )?;
                    deleted.insert(pod.metadata.uid.clone().unwrap_or_default());
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    ctx.event(
                        rs,
                        EventType::Warning,
                        "FailedDelete",
                        &format!("Error deleting: {e}"),
                    )?;
                    if result.is_ok() {
                        result = Err(e);
                    }
                }
            }
        }
    }
    expectations::expect(&key, uid, created, deleted, now);
    result
}

/// Kubernetes' `GetPodFromTemplate`: the template's labels, annotations, finalizers and spec,
/// `generateName: <rs-name>-`, and a controller reference to the ReplicaSet.
fn pod_from_template(rs: &ReplicaSet) -> Result<Pod, Error> {
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    if meta.labels.as_ref().is_none_or(|l| l.is_empty()) {
        return Err(Error::Invalid(
            "unable to create pods, no labels".to_string(),
        ));
    }
    let name = rs.metadata.name.as_deref().unwrap_or_default();
    let prefix = format!("{name}-");
    Ok(Pod {
        metadata: ObjectMeta {
            namespace: rs.metadata.namespace.clone(),
            generate_name: Some(if prefix.len() <= 253 {
                prefix
            } else {
                name.to_string()
            }),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref(rs)?]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    })
}
