//! Namespace lifecycle: every active namespace has a `default` ServiceAccount; a terminating one is emptied, then finalized.

use std::sync::Arc;

use serde_json::{Value, json};
use wasmkube_apiserver::Server;
use wasmkube_apiserver::error::ApiError;
use wasmkube_apiserver::registry::{
    DeleteOptions, Update, WriteOptions, create_object, delete_object, update_with,
};
use wasmkube_model::meta::ResourceExt;
use wasmkube_model::resource::ResourceInfo;

pub async fn settle(
    server: &Server,
    info: &ResourceInfo,
    name: &str,
    ns: &Value,
) -> Result<(), ApiError> {
    if ns.is_deleting() {
        finish(server, info, name).await
    } else {
        ensure_default_service_account(server, name).await
    }
}

async fn ensure_default_service_account(server: &Server, ns: &str) -> Result<(), ApiError> {
    let registry = server.registry();
    let Some(info) = registry.by_kind("v1", "ServiceAccount") else {
        return Ok(());
    };
    if server
        .objects
        .get(info, Some(ns), "default")
        .await?
        .is_some()
    {
        return Ok(());
    }
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
    match create_object(
        server,
        info,
        Some(ns),
        sa,
        WriteOptions::INTERNAL,
        &mut Vec::new(),
    )
    .await
    {
        Ok(_) | Err(ApiError::AlreadyExists { .. } | ApiError::Forbidden(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes everything in a terminating namespace; once it is empty, removes the `kubernetes`
/// finalizer so the namespace itself goes.
async fn finish(server: &Server, info: &ResourceInfo, name: &str) -> Result<(), ApiError> {
    let mut remaining = 0;
    let registry = server.registry();
    for resource in registry.all().iter().filter(|r| r.namespaced) {
        // Each group+plural once, whatever the number of served versions.
        let first = registry
            .all()
            .iter()
            .find(|r| r.group == resource.group && r.plural == resource.plural);
        if first.is_some_and(|first| !Arc::ptr_eq(first, resource)) {
            continue;
        }
        let page = server
            .objects
            .list(resource, Some(name), None, None, None, |_| true)
            .await?;
        for obj in page.items {
            remaining += 1;
            let obj_name = obj.name();
            if !obj.is_deleting() {
                match delete_object(
                    server,
                    resource,
                    Some(name),
                    obj_name,
                    &DeleteOptions::background(),
                )
                .await
                {
                    Ok(_) | Err(ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    if remaining > 0 {
        return Ok(());
    }
    let update = Update::internal(info, None, name);
    update_with(
        server,
        &update,
        |cur| {
            let mut new = cur.clone();
            new["spec"]["finalizers"] = json!([]);
            Ok(new)
        },
        &mut Vec::new(),
    )
    .await
    .map(|_| ())
}
