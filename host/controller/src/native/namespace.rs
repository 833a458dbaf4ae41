//! Namespace lifecycle: every active namespace has a `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap; a terminating one is emptied, then finalized.

use std::sync::Arc;

use serde_json::{Value, json};
use wasmkube_apiserver::Server;
use wasmkube_apiserver::error::ApiError;
use wasmkube_apiserver::registry::{
    DeleteOptions, Update, WriteOptions, create_object, delete_object, update_with,
};
use wasmkube_model::meta::ResourceExt;
use wasmkube_model::resource::ResourceInfo;

/// The ConfigMap in every namespace that holds the cluster CA (Kubernetes' root CA publisher).
pub const ROOT_CA: &str = "kube-root-ca.crt";

pub async fn settle(
    server: &Server,
    info: &ResourceInfo,
    name: &str,
    ns: &Value,
) -> Result<(), ApiError> {
    if ns.is_deleting() {
        return finish(server, info, name).await;
    }
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
    ensure(server, name, sa).await?;
    publish_root_ca(server, name).await
}

/// Writes the `kube-root-ca.crt` ConfigMap of namespace `ns` with the cluster CA, or puts its
/// `ca.crt` back when someone changed it, as Kubernetes' root CA publisher does.
pub async fn publish_root_ca(server: &Server, ns: &str) -> Result<(), ApiError> {
    let Some(ca) = &server.cluster.root_ca else {
        return Ok(());
    };
    let config_map = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": ROOT_CA, "annotations": {
            "kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
        "data": {"ca.crt": ca},
    });
    let registry = server.registry();
    let Some(info) = registry.by_kind("v1", "ConfigMap") else {
        return Ok(());
    };
    let Some(current) = server.objects.get(info, Some(ns), ROOT_CA).await? else {
        return ensure(server, ns, config_map).await;
    };
    if current.object["data"] == config_map["data"] {
        return Ok(());
    }
    let update = Update::internal(info, Some(ns), ROOT_CA);
    let correct = |cur: &Value| {
        let mut new = cur.clone();
        new["data"] = config_map["data"].clone();
        Ok(new)
    };
    update_with(server, &update, correct, &mut Vec::new())
        .await
        .map(|_| ())
}

/// Creates `object` in `ns` unless an object of its kind and name is there.
async fn ensure(server: &Server, ns: &str, object: Value) -> Result<(), ApiError> {
    let registry = server.registry();
    let text = |field: &str| object[field].as_str().unwrap_or_default();
    let Some(info) = registry.by_kind(text("apiVersion"), text("kind")) else {
        return Ok(());
    };
    if server
        .objects
        .get(info, Some(ns), object.name())
        .await?
        .is_some()
    {
        return Ok(());
    }
    match create_object(
        server,
        info,
        Some(ns),
        object,
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
