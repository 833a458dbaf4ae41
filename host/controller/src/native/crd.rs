//! CRD cleanup: a deleted CustomResourceDefinition waits until its custom resources are gone.

use serde_json::Value;
use wasmkube_apiserver::Server;
use wasmkube_apiserver::error::ApiError;
use wasmkube_apiserver::registry::{DeleteOptions, delete_object, remove_finalizer};
use wasmkube_model::meta::ResourceExt;
use wasmkube_model::names::CRD_CLEANUP;
use wasmkube_model::resource::ResourceInfo;

use super::ROOT;
use super::graph::ObjectRef;

/// The CRD that serves the custom resource stored at `key` (`/registry/{group}/{plural}/…`).
pub fn crd_of(key: &str) -> Option<ObjectRef> {
    let (group, rest) = key.strip_prefix(ROOT)?.split_once('/')?;
    let plural = rest.split('/').next()?;
    let name = format!("{plural}.{group}");
    Some(ObjectRef {
        key: format!("{ROOT}apiextensions.k8s.io/customresourcedefinitions/{name}"),
        namespace: None,
        name,
    })
}

/// Deletes every custom resource of a terminating CRD; once none is left, removes its cleanup
/// finalizer so the CRD itself goes.
pub async fn finish(
    server: &Server,
    info: &ResourceInfo,
    crd: &Value,
    name: &str,
) -> Result<(), ApiError> {
    let text = |p: &str| {
        crd.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (group, plural) = (text("/spec/group"), text("/spec/names/plural"));
    let registry = server.registry();
    if let Some(resource) = registry
        .all()
        .iter()
        .find(|r| r.custom && r.group == group && r.plural == plural)
    {
        let page = server
            .objects
            .list(resource, None, None, None, None, |_| true)
            .await?;
        if !page.items.is_empty() {
            for obj in page.items.iter().filter(|o| !o.is_deleting()) {
                let (ns, obj_name) = (obj.namespace(), obj.name());
                match delete_object(server, resource, ns, obj_name, &DeleteOptions::background())
                    .await
                {
                    Ok(_) | Err(ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(());
        }
    }
    remove_finalizer(server, info, None, name, CRD_CLEANUP).await
}
