//! The garbage collector: dependents follow their owners per the propagation policy (Background, Foreground, Orphan).

use serde_json::Value;
use wasmkube_apiserver::Server;
use wasmkube_apiserver::error::ApiError;
use wasmkube_apiserver::registry::{
    DeleteOptions, Update, delete_object, remove_finalizer, update_with,
};
use wasmkube_model::meta::{Propagation, ResourceExt};
use wasmkube_model::names::{FOREGROUND_DELETION, ORPHAN};
use wasmkube_model::resource::ResourceInfo;

use super::graph::{self, Graph, ObjectRef};
use super::info_of;

/// - Orphan: the owner's references are removed from its dependents, then its `orphan` finalizer.
/// - Foreground: dependents are deleted (in foreground too); with none left, the owner's
///   `foregroundDeletion` finalizer goes.
/// - Background: an object whose owners are all gone is deleted; references to gone owners are
///   removed from objects that still have a live one.
pub async fn settle(
    server: &Server,
    graph: &Graph,
    info: &ResourceInfo,
    r: &ObjectRef,
    obj: &Value,
) -> Result<(), ApiError> {
    let ns = r.namespace.as_deref();
    let my_uid = graph::uid(obj).unwrap_or_default();
    let dependents = graph.dependents_of(&my_uid);
    if obj.is_deleting() && obj.has_finalizer(ORPHAN) {
        for dependent in &dependents {
            drop_owner(server, dependent, &my_uid).await?;
        }
        return remove_finalizer(server, info, ns, &r.name, ORPHAN).await;
    }
    if obj.is_deleting() && obj.has_finalizer(FOREGROUND_DELETION) {
        if dependents.is_empty() {
            return remove_finalizer(server, info, ns, &r.name, FOREGROUND_DELETION).await;
        }
        let opts = DeleteOptions {
            propagation: Propagation::Foreground,
            ..DeleteOptions::background()
        };
        for dependent in &dependents {
            delete(server, dependent, &opts).await?;
        }
        return Ok(());
    }
    let owners = graph::owner_uids(obj);
    if owners.is_empty() || obj.is_deleting() {
        return Ok(());
    }
    let gone: Vec<&String> = owners
        .iter()
        .filter(|o| !graph.alive.contains_key(*o))
        .collect();
    if gone.len() == owners.len() {
        return delete(server, r, &DeleteOptions::background()).await;
    }
    for owner in gone {
        drop_owner(server, r, owner).await?;
    }
    Ok(())
}

async fn delete(server: &Server, r: &ObjectRef, opts: &DeleteOptions) -> Result<(), ApiError> {
    let Some(info) = info_of(server, &r.key) else {
        return Ok(());
    };
    match delete_object(server, &info, r.namespace.as_deref(), &r.name, opts).await {
        Ok(_) | Err(ApiError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes the owner reference to `owner_uid` from `r`.
async fn drop_owner(server: &Server, r: &ObjectRef, owner_uid: &str) -> Result<(), ApiError> {
    let Some(info) = info_of(server, &r.key) else {
        return Ok(());
    };
    let update = Update::internal(&info, r.namespace.as_deref(), &r.name);
    update_with(
        server,
        &update,
        |cur| {
            let mut new = cur.clone();
            if let Some(refs) = new["metadata"]["ownerReferences"].as_array_mut() {
                refs.retain(|o| o["uid"] != owner_uid);
            }
            Ok(new)
        },
        &mut Vec::new(),
    )
    .await
    .map(|_| ())
}
