//! ControllerRevisions: the pod-template history a DaemonSet or StatefulSet keeps, as Kubernetes'
//! `controller/history` package keeps it (`kubectl rollout history|undo` read and apply them).

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::{Metadata, Resource};
use serde_json::json;

use crate::context::Context;
use crate::error::Error;
use crate::hash::pod_template_hash;
use crate::owner::{controller_ref, is_controlled_by};
use crate::types::Propagation;

/// The label carrying a pod's revision on DaemonSet and StatefulSet pods.
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";

/// An owner's revisions after [`sync`]: all of them, oldest first, and the one of its template.
#[derive(Debug, Clone)]
pub struct History {
    /// The owner's revisions, ordered by `revision`.
    pub revisions: Vec<ControllerRevision>,
    /// `<owner>-<hash>`: the name of the revision holding the owner's current template.
    pub update: String,
    /// The template hash (`<hash>` above).
    pub hash: String,
}

impl History {
    /// The pod template a revision holds.
    pub fn template(&self, name: &str) -> Option<PodTemplateSpec> {
        let revision = self
            .revisions
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(name))?;
        let data = &revision.data.as_ref()?.0;
        let mut template = data.pointer("/spec/template")?.clone();
        if let Some(map) = template.as_object_mut() {
            map.remove("$patch");
        }
        serde_json::from_value(template).ok()
    }
}

/// Finds or creates the revision holding `template` (named `<owner>-<hash>`, labelled with the
/// template's labels, controlled by `owner`, its data the patch `kubectl rollout undo` applies).
/// A revision found again after newer ones (a rollback) gets the next revision number, as in
/// Kubernetes.
pub fn sync<O>(
    ctx: &Context<'_>,
    owner: &O,
    template: &PodTemplateSpec,
    collision_count: Option<i32>,
) -> Result<History, Error>
where
    O: Resource + Metadata<Ty = ObjectMeta>,
{
    let meta = owner.metadata();
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    let name = meta.name.as_deref().unwrap_or_default();
    let hash = pod_template_hash(template, collision_count)?;
    let update = format!("{name}-{hash}");
    let mut revisions: Vec<ControllerRevision> = ctx
        .list::<ControllerRevision>(namespace, "")?
        .into_iter()
        .filter(|r| is_controlled_by(&r.metadata, owner))
        .collect();
    revisions.sort_by_key(|r| r.revision);
    let next = revisions.last().map_or(1, |r| r.revision + 1);
    match revisions
        .iter()
        .position(|r| r.metadata.name.as_deref() == Some(&update))
    {
        Some(i) if i + 1 == revisions.len() => {}
        Some(i) => {
            let mut found = revisions.remove(i);
            found.revision = next;
            revisions.push(ctx.update(&found)?);
        }
        None => {
            let mut data = serde_json::to_value(template).map_err(|source| Error::Encode {
                what: "pod template".to_string(),
                source,
            })?;
            if let Some(map) = data.as_object_mut() {
                map.insert("$patch".to_string(), json!("replace"));
            }
            let revision = ControllerRevision {
                metadata: ObjectMeta {
                    name: Some(update.clone()),
                    namespace: Some(namespace.to_string()),
                    labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                    owner_references: Some(vec![controller_ref(owner)?]),
                    ..ObjectMeta::default()
                },
                data: Some(RawExtension(json!({ "spec": { "template": data } }))),
                revision: next,
            };
            // AlreadyExists means the cache is behind: the reconcile is retried.
            revisions.push(ctx.create(&revision)?);
        }
    }
    Ok(History {
        revisions,
        update,
        hash,
    })
}

/// Deletes the oldest revisions beyond `limit` (`revisionHistoryLimit`, 10 when unset), never
/// one named in `keep` (the current and update revisions, and those live pods run).
pub fn prune<O>(
    ctx: &Context<'_>,
    owner: &O,
    history: &History,
    keep: &BTreeSet<String>,
    limit: Option<i32>,
) -> Result<(), Error>
where
    O: Resource + Metadata<Ty = ObjectMeta>,
{
    let namespace = owner.metadata().namespace.as_deref().unwrap_or_default();
    let limit = usize::try_from(limit.unwrap_or(10)).unwrap_or(0);
    let old: Vec<&str> = history
        .revisions
        .iter()
        .filter_map(|r| r.metadata.name.as_deref())
        .filter(|name| *name != history.update && !keep.contains(*name))
        .collect();
    for name in old.iter().take(old.len().saturating_sub(limit)) {
        match ctx.delete::<ControllerRevision>(namespace, name, Propagation::Background) {
            Err(e) if !e.is_not_found() => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::apps::v1::DaemonSet;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    use super::*;
    use crate::testing::FakeHost;

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(BTreeMap::from([("app".to_string(), "a".to_string())])),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
        }
    }

    #[test]
    fn creates_reuses_with_a_new_number_and_prunes() {
        let fake = FakeHost::new();
        let owner = fake
            .insert(&DaemonSet {
                metadata: ObjectMeta {
                    name: Some("d".into()),
                    namespace: Some("default".into()),
                    ..ObjectMeta::default()
                },
                ..DaemonSet::default()
            })
            .unwrap();
        let ctx = fake.context();
        let v1 = sync(&ctx, &owner, &template("v1"), None).unwrap();
        assert_eq!(v1.update, format!("d-{}", v1.hash));
        assert_eq!(v1.template(&v1.update), Some(template("v1")));
        let v2 = sync(&ctx, &owner, &template("v2"), None).unwrap();
        assert_eq!(v2.revisions.len(), 2);
        // Back to v1 (a rollback): the same revision, numbered after v2.
        let back = sync(&ctx, &owner, &template("v1"), None).unwrap();
        assert_eq!(back.update, v1.update);
        let numbers: Vec<(i64, &str)> = back
            .revisions
            .iter()
            .map(|r| (r.revision, r.metadata.name.as_deref().unwrap()))
            .collect();
        assert_eq!(numbers, [(2, v2.update.as_str()), (3, v1.update.as_str())]);
        let stored = &back.revisions[1].data.as_ref().unwrap().0;
        assert_eq!(stored["spec"]["template"]["$patch"], "replace");

        // Limit 0 keeps the update revision and those named in `keep`.
        prune(
            &ctx,
            &owner,
            &back,
            &BTreeSet::from([v2.update.clone()]),
            Some(0),
        )
        .unwrap();
        assert_eq!(
            ctx.list::<ControllerRevision>("default", "").unwrap().len(),
            2
        );
        prune(&ctx, &owner, &back, &BTreeSet::new(), Some(0)).unwrap();
        let left = ctx.list::<ControllerRevision>("default", "").unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].metadata.name, Some(v1.update));
    }
}
