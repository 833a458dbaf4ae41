//! delete and finalizers: grace periods, deletionTimestamp and propagation policies.

use chrono::Utc;
use serde_json::{Value, json};
use wasmkube_model::meta::{Propagation, ResourceExt};
use wasmkube_model::names::{FOREGROUND_DELETION, ORPHAN, SYSTEM_NAMESPACES};
use wasmkube_model::resource::ResourceInfo;

use super::allocator;
use super::grace::{self, Plan};
use super::write::{Update, update_with};
use crate::error::ApiError;
use crate::objects::ClaimMove;
use crate::server::Server;

/// The options of a delete (from the query and the `DeleteOptions` body, over HTTP).
#[derive(Clone, Debug)]
pub struct DeleteOptions {
    pub propagation: Propagation,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
    /// `gracePeriodSeconds`: how long a pod's node gets to stop it (see [`grace`]);
    /// 0 deletes at once. `None` is the pod's own period.
    pub grace_period: Option<i64>,
}

impl DeleteOptions {
    pub fn background() -> Self {
        DeleteOptions {
            propagation: Propagation::Background,
            uid: None,
            resource_version: None,
            dry_run: false,
            grace_period: None,
        }
    }

    /// What a node agent sends once it has stopped a pod: delete now, if it is still the pod
    /// with `uid`.
    pub fn stopped(uid: Option<String>) -> Self {
        DeleteOptions {
            uid,
            grace_period: Some(0),
            ..DeleteOptions::background()
        }
    }
}

/// Deletes one object, or marks it for deletion when finalizers must run first or a pod's node
/// must stop it (see [`grace`]). Returns the object as it was deleted or as it
/// now waits.
pub async fn delete_object(
    server: &Server,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Value, ApiError> {
    if info.group.is_empty() && info.kind == "Namespace" && SYSTEM_NAMESPACES.contains(&name) {
        return Err(ApiError::Forbidden(format!(
            "namespaces {name:?} is forbidden: this namespace may not be deleted"
        )));
    }
    loop {
        let current = server.objects.must_get(info, ns, name).await?;
        let obj = &current.object;
        if opts
            .uid
            .as_deref()
            .is_some_and(|uid| obj.uid() != Some(uid))
        {
            return Err(ApiError::Conflict {
                resource: info.qualified_resource(),
                name: name.into(),
                reason: format!(
                    "Precondition failed: UID in precondition: {}, UID in object meta: {}",
                    opts.uid.as_deref().unwrap_or(""),
                    obj["metadata"]["uid"].as_str().unwrap_or("")
                ),
            });
        }
        if opts
            .resource_version
            .as_deref()
            .is_some_and(|rv| rv != current.revision.to_string())
        {
            return Err(ApiError::conflict(info, name));
        }
        let (timestamp, grace) = match grace::plan(info, obj, opts.grace_period, Utc::now()) {
            Plan::Pending => return Ok(current.object),
            Plan::Mark { timestamp, grace } => (timestamp, grace),
        };
        let mut finalizers: Vec<Value> = obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let wanted = match opts.propagation {
            Propagation::Foreground => Some(FOREGROUND_DELETION),
            Propagation::Orphan => Some(ORPHAN),
            Propagation::Background => None,
        };
        if let Some(f) = wanted.filter(|f| !finalizers.iter().any(|x| x == f)) {
            finalizers.push(json!(f));
        }
        let namespace_finalizers = info.kind == "Namespace"
            && obj
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
        if grace == 0 && finalizers.is_empty() && !namespace_finalizers {
            if opts.dry_run {
                return Ok(current.object);
            }
            match server
                .objects
                .delete(
                    info,
                    ns,
                    name,
                    current.revision,
                    &allocator::claims(info, &current.object),
                )
                .await
            {
                Err(ApiError::Conflict { .. }) => continue,
                Err(e) => return Err(e),
                Ok(_) => {
                    server.written(info).await?;
                    return Ok(current.object);
                }
            }
        }
        let mut marked = obj.clone();
        marked["metadata"]["deletionTimestamp"] = json!(timestamp);
        marked["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
        marked["metadata"]["finalizers"] = json!(finalizers);
        if info.kind == "Namespace" {
            marked["status"]["phase"] = json!("Terminating");
        }
        if opts.dry_run {
            return Ok(marked);
        }
        match server
            .objects
            .update(
                info,
                ns,
                name,
                marked,
                current.revision,
                ClaimMove::default(),
            )
            .await
        {
            Err(ApiError::Conflict { .. }) => continue,
            other => return other,
        }
    }
}

/// Removes `finalizer` from an object (used by the garbage collector and namespace lifecycle).
pub async fn remove_finalizer(
    server: &Server,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    finalizer: &str,
) -> Result<(), ApiError> {
    let update = Update::internal(info, ns, name);
    update_with(
        server,
        &update,
        |cur| {
            let mut new = cur.clone();
            if let Some(list) = new["metadata"]["finalizers"].as_array_mut() {
                list.retain(|f| f != finalizer);
            }
            Ok(new)
        },
        &mut Vec::new(),
    )
    .await
    .map(|_| ())
}
