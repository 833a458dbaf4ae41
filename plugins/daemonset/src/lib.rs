//! The DaemonSet controller as a wasmkube plugin: one pod on every eligible node.
//!
//! Nodes trigger the controller: a node joining, leaving or changing its labels, taints or spec
//! enqueues every DaemonSet. Template history is kept in ControllerRevisions.

mod nodes;
mod pods;
mod status;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use wasmkube_sdk::chrono::{DateTime, Utc};
use wasmkube_sdk::expectations;
use wasmkube_sdk::k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use wasmkube_sdk::k8s_openapi::api::core::v1::{Node, Pod, PodSpec};
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use wasmkube_sdk::owner::claim;
use wasmkube_sdk::pod::{is_pod_available, is_terminating, phase};
use wasmkube_sdk::revision::{self, History};
use wasmkube_sdk::selector::selector;
use wasmkube_sdk::{
    Context, Controller, Error, EventType, LogLevel, ObjectKey, Outcome, Propagation, Registration,
};

use crate::nodes::{Placement, placement};
use crate::pods::{is_updated, node_of, pod_for_node, revision_hash};

/// The DaemonSet controller.
pub struct DaemonSetController;

wasmkube_sdk::export_controller!(DaemonSetController);

/// One node as a sync sees it: where the daemon may run, and the daemon pod kept there.
pub(crate) struct NodeState {
    placement: Placement,
    /// The pod kept on the node (the oldest live one), if any.
    pod: Option<Pod>,
    /// Whether any pod of the set is on the node, terminating ones included.
    occupied: bool,
}

impl Controller for DaemonSetController {
    fn registration() -> Registration {
        Registration::new::<DaemonSet>("daemonset-controller")
            .owns::<Pod>()
            .owns::<ControllerRevision>()
            .triggered_by::<Node>()
    }

    fn reconcile(ctx: &Context<'_>, key: ObjectKey) -> Result<Outcome, Error> {
        let Some(ds) = ctx.get::<DaemonSet>(&key.namespace, &key.name)? else {
            expectations::forget(&key);
            return Ok(Outcome::Done);
        };
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(Outcome::Done); // the garbage collector removes the pods
        }
        let spec = ds.spec.clone().unwrap_or_default();
        let selector = match selector(&spec.selector) {
            Ok(selector) => selector,
            Err(e) => {
                ctx.log(LogLevel::Error, &format!("daemonset {key}: {e}"));
                return Ok(Outcome::Done);
            }
        };
        let collision_count = ds.status.as_ref().and_then(|s| s.collision_count);
        let history = revision::sync(ctx, &ds, &spec.template, collision_count)?;
        let hash = history.hash.clone();
        let now = ctx.now()?;
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let all = ctx.list::<Pod>(&key.namespace, "")?;
        let needs_sync = expectations::satisfied(&key, &uid, &all, now);
        let owned = claim(ctx, &ds, &selector, all)?;
        let nodes = ctx.list::<Node>("", "")?;
        let template = spec.template.spec.clone().unwrap_or_default();
        let (states, mut plan) = plan(&nodes, &template, owned);

        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let strategy = spec.update_strategy.clone().unwrap_or_default();
        if strategy.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate" {
            let max = strategy
                .rolling_update
                .and_then(|r| r.max_unavailable)
                .unwrap_or(IntOrString::Int(1));
            plan.delete
                .extend(rolling_update(&states, &hash, &max, min_ready, now));
        }
        let result = if needs_sync {
            execute(ctx, &ds, &key, &plan, &hash, now)
        } else {
            Ok(())
        };
        let new_status = status::calculate(&ds, &states, &hash, now);
        prune_history(ctx, &ds, &history, &states)?;
        status::update(ctx, ds, new_status)?;
        result?;
        // Nodes enqueue the set when they change; only availability after minReadySeconds
        // needs a timer.
        Ok(match min_ready {
            0 => Outcome::Done,
            s => Outcome::RequeueAfter(Duration::from_secs(u64::try_from(s).unwrap_or(0))),
        })
    }
}

/// Kubernetes' `cleanupHistory`: deletes revisions beyond `revisionHistoryLimit` that no live
/// daemon pod runs.
fn prune_history(
    ctx: &Context<'_>,
    ds: &DaemonSet,
    history: &History,
    states: &[NodeState],
) -> Result<(), Error> {
    let name = ds.metadata.name.as_deref().unwrap_or_default();
    let keep: BTreeSet<String> = states
        .iter()
        .filter_map(|s| s.pod.as_ref())
        .filter_map(revision_hash)
        .map(|hash| format!("{name}-{hash}"))
        .collect();
    let limit = ds.spec.as_ref().and_then(|s| s.revision_history_limit);
    revision::prune(ctx, ds, history, &keep, limit)
}

/// What a sync changes: nodes needing a pod, pods to delete.
#[derive(Default)]
pub(crate) struct Plan {
    create: Vec<String>,
    delete: Vec<Pod>,
}

/// Kubernetes' `podsShouldBeOnNode` over every node: a pod where one should run and none is,
/// failed pods and duplicates removed, pods removed where they may not stay, and pods on nodes
/// that no longer exist removed (wasmkube has no pod garbage collector for them).
fn plan(nodes: &[Node], template: &PodSpec, owned: Vec<Pod>) -> (Vec<NodeState>, Plan) {
    let mut by_node: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
    for pod in owned {
        by_node
            .entry(node_of(&pod).to_string())
            .or_default()
            .push(pod);
    }
    let mut plan = Plan::default();
    let mut states = Vec::new();
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let placement = placement(node, template);
        let mut here = by_node.remove(&name).unwrap_or_default();
        let occupied = !here.is_empty();
        here.retain(|p| !is_terminating(p));
        here.sort_by(|a, b| {
            let at = |p: &Pod| {
                (
                    p.metadata.creation_timestamp.clone(),
                    p.metadata.name.clone(),
                )
            };
            at(a).cmp(&at(b))
        });
        let mut kept = None;
        for pod in here {
            let finished = matches!(phase(&pod), "Failed" | "Succeeded");
            if finished || !placement.should_continue || kept.is_some() {
                plan.delete.push(pod);
            } else {
                kept = Some(pod);
            }
        }
        if placement.should_run && !occupied {
            plan.create.push(name);
        }
        states.push(NodeState {
            placement,
            pod: kept,
            occupied,
        });
    }
    let gone = by_node.into_values().flatten();
    plan.delete.extend(gone.filter(|p| !is_terminating(p)));
    (states, plan)
}

/// RollingUpdate: old pods that are not available are deleted at once; available ones only while
/// fewer than `maxUnavailable` (of the desired nodes, rounded up, at least one) are unavailable.
/// Their replacements are created by the next sync, once they are gone.
fn rolling_update(
    states: &[NodeState],
    hash: &str,
    max_unavailable: &IntOrString,
    min_ready: i32,
    now: DateTime<Utc>,
) -> Vec<Pod> {
    let desired: Vec<&NodeState> = states.iter().filter(|s| s.placement.should_run).collect();
    let max = match max_unavailable {
        IntOrString::Int(n) => i64::from(*n),
        IntOrString::String(s) => {
            let percent = s.trim_end_matches('%').parse::<i64>().unwrap_or(0);
            (percent * desired.len() as i64 + 99) / 100
        }
    }
    .max(1);
    let available = |s: &NodeState| {
        s.pod
            .as_ref()
            .is_some_and(|p| is_pod_available(p, min_ready, now))
    };
    let mut unavailable = desired.iter().filter(|s| !available(s)).count() as i64;
    let mut delete = Vec::new();
    for state in &desired {
        let Some(pod) = state.pod.as_ref().filter(|p| !is_updated(p, hash)) else {
            continue;
        };
        if !available(state) {
            delete.push(pod.clone());
        } else if unavailable < max {
            unavailable += 1;
            delete.push(pod.clone());
        }
    }
    delete
}

/// Creates and deletes pods as planned, with an Event for each, and records expectations.
fn execute(
    ctx: &Context<'_>,
    ds: &DaemonSet,
    key: &ObjectKey,
    plan: &Plan,
    hash: &str,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let (mut created, mut deleted) = (BTreeSet::new(), BTreeSet::new());
    let mut result = Ok(());
    for node in &plan.create {
        match ctx.create(&pod_for_node(ds, node, hash)?) {
            Ok(pod) => {
                let name = pod.metadata.name.unwrap_or_default();
                let message = format!("Created pod: {name} on node {node}");
                ctx.event(ds, EventType::Normal, "SuccessfulCreate", &message)?;
                created.insert(name);
            }
            Err(e) => {
                let message = format!("Error creating a pod on node {node}: {e}");
                ctx.event(ds, EventType::Warning, "FailedCreate", &message)?;
                result = Err(e);
                break;
            }
        }
    }
    let mut seen = BTreeSet::new();
    for pod in &plan.delete {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if !seen.insert(uid.clone()) {
            continue;
        }
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        match ctx.delete::<Pod>(&key.namespace, name, Propagation::Background) {
            Ok(()) => {
                let message = format!("Deleted pod: {name}");
                ctx.event(ds, EventType::Normal, "SuccessfulDelete", &message)?;
                deleted.insert(uid);
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                let message = format!("Error deleting pod {name}: {e}");
                ctx.event(ds, EventType::Warning, "FailedDelete", &message)?;
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
    }
    let uid = ds.metadata.uid.as_deref().unwrap_or_default();
    expectations::expect(key, uid, created, deleted, now);
    result
}
