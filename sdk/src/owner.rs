//! Owner references: controller refs, ownership checks, and adopting or releasing dependents.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::{Metadata, Resource};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::context::Context;
use crate::error::Error;
use crate::selector::{Selector, matches};
use crate::types::PatchType;

/// A controller reference to `owner` (`controller: true`, `blockOwnerDeletion: true`), as
/// Kubernetes controllers set on what they create. Fails when `owner` has no name or uid.
pub fn controller_ref<K: Resource + Metadata<Ty = ObjectMeta>>(
    owner: &K,
) -> Result<OwnerReference, Error> {
    let meta = owner.metadata();
    let (Some(name), Some(uid)) = (&meta.name, &meta.uid) else {
        return Err(Error::Invalid(format!(
            "a {} needs a name and a uid to own objects",
            K::KIND
        )));
    };
    Ok(OwnerReference {
        api_version: K::API_VERSION.to_string(),
        kind: K::KIND.to_string(),
        name: name.clone(),
        uid: uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// The owner reference marked `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// Whether `child`'s controller reference points at `owner` (by uid).
pub fn is_controlled_by<K: Metadata<Ty = ObjectMeta>>(child: &ObjectMeta, owner: &K) -> bool {
    let uid = owner.metadata().uid.as_deref();
    controller_of(child).is_some_and(|r| uid == Some(r.uid.as_str()))
}

/// Kubernetes' `ClaimObjects`: the children `owner` controls that match `selector`, plus the
/// matching orphans it adopts; controlled children that stopped matching are released. Nothing
/// is adopted or released while `owner` is being deleted, and terminating orphans are left
/// alone. A child that vanished meanwhile is skipped.
pub fn claim<O, C>(
    ctx: &Context<'_>,
    owner: &O,
    selector: &Selector,
    children: Vec<C>,
) -> Result<Vec<C>, Error>
where
    O: Resource + Metadata<Ty = ObjectMeta>,
    C: Resource + Metadata<Ty = ObjectMeta> + DeserializeOwned,
{
    let deleting = owner.metadata().deletion_timestamp.is_some();
    let mut owned = Vec::new();
    for child in children {
        let meta = child.metadata();
        let matching = matches(selector, meta);
        let result = match controller_of(meta) {
            Some(r) if Some(&r.uid) != owner.metadata().uid.as_ref() => continue,
            Some(_) if matching => {
                owned.push(child);
                continue;
            }
            Some(_) if deleting => continue,
            Some(_) => release(ctx, owner, &child).map(drop),
            None if !matching || deleting || meta.deletion_timestamp.is_some() => continue,
            None => adopt(ctx, owner, &child).map(|adopted| owned.push(adopted)),
        };
        match result {
            Err(e) if !e.is_not_found() => return Err(e),
            _ => {}
        }
    }
    Ok(owned)
}

/// Makes `owner` the controller of the orphan `child` and returns the patched child.
///
/// A JSON patch whose `test`s on uid and resourceVersion make it fail (422) when the child
/// was replaced or changed since it was read, so a concurrent adoption is never overwritten.
pub fn adopt<O, C>(ctx: &Context<'_>, owner: &O, child: &C) -> Result<C, Error>
where
    O: Resource + Metadata<Ty = ObjectMeta>,
    C: Resource + Metadata<Ty = ObjectMeta> + DeserializeOwned,
{
    let meta = child.metadata();
    if let Some(existing) = controller_of(meta) {
        return Err(Error::Invalid(format!(
            "{} {} is already controlled by {} {}",
            C::KIND,
            meta.name.as_deref().unwrap_or_default(),
            existing.kind,
            existing.name
        )));
    }
    let mut refs = meta.owner_references.clone().unwrap_or_default();
    refs.push(controller_ref(owner)?);
    patch_owner_references(ctx, child, &refs)
}

/// Removes `owner`'s references from `child` and returns the patched child; guarded like
/// [`adopt`].
pub fn release<O, C>(ctx: &Context<'_>, owner: &O, child: &C) -> Result<C, Error>
where
    O: Metadata<Ty = ObjectMeta>,
    C: Resource + Metadata<Ty = ObjectMeta> + DeserializeOwned,
{
    let uid = owner.metadata().uid.as_deref();
    let refs: Vec<OwnerReference> = child
        .metadata()
        .owner_references
        .iter()
        .flatten()
        .filter(|r| Some(r.uid.as_str()) != uid)
        .cloned()
        .collect();
    patch_owner_references(ctx, child, &refs)
}

fn patch_owner_references<C>(
    ctx: &Context<'_>,
    child: &C,
    refs: &[OwnerReference],
) -> Result<C, Error>
where
    C: Resource + Metadata<Ty = ObjectMeta> + DeserializeOwned,
{
    let meta = child.metadata();
    let (Some(name), Some(uid), Some(rv)) = (&meta.name, &meta.uid, &meta.resource_version) else {
        return Err(Error::Invalid(format!(
            "a {} needs a name, uid and resourceVersion to change its owners",
            C::KIND
        )));
    };
    let set = if refs.is_empty() {
        json!({"op": "remove", "path": "/metadata/ownerReferences"})
    } else {
        json!({"op": "add", "path": "/metadata/ownerReferences", "value": refs})
    };
    let mut ops = vec![
        json!({"op": "test", "path": "/metadata/uid", "value": uid}),
        json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv}),
    ];
    if !refs.is_empty() || meta.owner_references.is_some() {
        ops.push(set);
    }
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    ctx.patch(namespace, name, PatchType::Json, &Value::Array(ops))
}
