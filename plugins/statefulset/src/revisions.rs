//! ControllerRevisions: the set's pod templates, named `<set>-<hash>` and owned by the set.

use wasmkube_sdk::hash::pod_template_hash;
use wasmkube_sdk::k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use wasmkube_sdk::k8s_openapi::api::core::v1::PodTemplateSpec;
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use wasmkube_sdk::owner::{controller_ref, is_controlled_by};
use wasmkube_sdk::serde_json::{self, json};
use wasmkube_sdk::{Context, Error};

/// The revisions a sync works with: the one pods are updated to, and the one they came from.
pub struct Revisions {
    /// `<set>-<hash>` of the current template.
    pub update: String,
    /// `status.currentRevision`, or `update` for a new set.
    pub current: String,
    /// The template of the current revision, when it differs from the set's.
    pub current_template: Option<PodTemplateSpec>,
}

/// Finds or creates the revision of the set's template, and reads the current one.
pub fn sync(ctx: &Context<'_>, set: &StatefulSet) -> Result<Revisions, Error> {
    let namespace = set.metadata.namespace.as_deref().unwrap_or_default();
    let name = set.metadata.name.as_deref().unwrap_or_default();
    let spec = set.spec.clone().unwrap_or_default();
    let collision_count = set.status.as_ref().and_then(|s| s.collision_count);
    let update = format!(
        "{name}-{}",
        pod_template_hash(&spec.template, collision_count)?
    );
    let owned: Vec<ControllerRevision> = ctx
        .list::<ControllerRevision>(namespace, "")?
        .into_iter()
        .filter(|r| is_controlled_by(&r.metadata, set))
        .collect();
    if !owned
        .iter()
        .any(|r| r.metadata.name.as_deref() == Some(&update))
    {
        let revision = owned.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
        let template = serde_json::to_value(&spec.template).map_err(|source| Error::Encode {
            what: "pod template".to_string(),
            source,
        })?;
        let object = ControllerRevision {
            metadata: ObjectMeta {
                name: Some(update.clone()),
                namespace: Some(namespace.to_string()),
                labels: spec.selector.match_labels.clone(),
                owner_references: Some(vec![controller_ref(set)?]),
                ..ObjectMeta::default()
            },
            data: Some(RawExtension(json!({ "spec": { "template": template } }))),
            revision,
        };
        match ctx.create(&object) {
            Err(e) if !e.is_already_exists() => return Err(e),
            _ => {}
        }
    }
    let current = set
        .status
        .as_ref()
        .and_then(|s| s.current_revision.clone())
        .unwrap_or_else(|| update.clone());
    let current_template = owned
        .iter()
        .filter(|_| current != update)
        .find(|r| r.metadata.name.as_deref() == Some(&current))
        .and_then(|r| r.data.as_ref())
        .and_then(|d| serde_json::from_value(d.0["spec"]["template"].clone()).ok());
    Ok(Revisions {
        update,
        current,
        current_template,
    })
}
