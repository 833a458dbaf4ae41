//! The set's revisions: the one pods are updated to, the one they came from, and pruning.

use std::collections::{BTreeMap, BTreeSet};

use wasmkube_sdk::k8s_openapi::api::apps::v1::StatefulSet;
use wasmkube_sdk::k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use wasmkube_sdk::revision::{self, History};
use wasmkube_sdk::{Context, Error};

use crate::pods::revision;

/// The revisions a sync works with.
pub struct Revisions {
    /// `<set>-<hash>` of the set's template.
    pub update: String,
    /// `status.currentRevision`, or `update` for a new set.
    pub current: String,
    /// The template of the current revision, when it differs from the set's.
    pub current_template: Option<PodTemplateSpec>,
    history: History,
}

/// Finds or creates the revision of the set's template, and reads the current one.
pub fn sync(ctx: &Context<'_>, set: &StatefulSet) -> Result<Revisions, Error> {
    let spec = set.spec.clone().unwrap_or_default();
    let collision_count = set.status.as_ref().and_then(|s| s.collision_count);
    let history = revision::sync(ctx, set, &spec.template, collision_count)?;
    let update = history.update.clone();
    let current = set
        .status
        .as_ref()
        .and_then(|s| s.current_revision.clone())
        .unwrap_or_else(|| update.clone());
    let current_template = (current != update)
        .then(|| history.template(&current))
        .flatten();
    Ok(Revisions {
        update,
        current,
        current_template,
        history,
    })
}

/// Kubernetes' `truncateHistory`: deletes revisions beyond `revisionHistoryLimit`, keeping the
/// current and update revisions and every revision a live pod runs.
pub fn prune(
    ctx: &Context<'_>,
    set: &StatefulSet,
    revisions: &Revisions,
    pods: &BTreeMap<usize, Pod>,
) -> Result<(), Error> {
    let mut keep: BTreeSet<String> = pods
        .values()
        .filter_map(|p| revision(p).map(str::to_string))
        .collect();
    keep.insert(revisions.current.clone());
    let limit = set.spec.as_ref().and_then(|s| s.revision_history_limit);
    revision::prune(ctx, set, &revisions.history, &keep, limit)
}
