//! delete, deletecollection and pods/eviction: finalizers, grace periods, deletionTimestamp and propagation policies.

use axum::response::Response;
use chrono::Utc;
use http::StatusCode;
use serde_json::{Value, json};
use wasmkube_model::resource::ResourceInfo;

use super::Call;
use super::grace::{self, Plan};
use super::read::Filter;
use super::write::{Update, update_with};
use crate::Server;
use crate::allocator;
use crate::error::ApiError;
use crate::objects::ClaimMove;
use crate::request::Query;
use crate::response;
use crate::strategy::parse_body;

/// How dependents are treated when their owner goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    /// The owner goes now; the garbage collector deletes dependents afterwards.
    Background,
    /// Dependents go first; the owner waits with the `foregroundDeletion` finalizer.
    Foreground,
    /// Dependents stay, their owner references removed; the owner waits with `orphan`.
    Orphan,
}

/// The options of a delete, from the query and the `DeleteOptions` body.
#[derive(Clone, Debug)]
pub struct DeleteOptions {
    pub propagation: Propagation,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
    /// `gracePeriodSeconds`: how long a pod's node gets to stop it (see [`grace`](super::grace));
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

    fn parse(query: &Query, content_type: &str, body: &[u8]) -> Result<Self, ApiError> {
        let body = if body.is_empty() {
            json!({})
        } else {
            parse_body(body, content_type)?
        };
        Self::from_parts(query, &body)
    }

    /// The options of the query and of a `DeleteOptions` object (`null` for none).
    fn from_parts(query: &Query, body: &Value) -> Result<Self, ApiError> {
        let policy = query
            .propagation_policy
            .clone()
            .or_else(|| body["propagationPolicy"].as_str().map(String::from));
        let orphan = query
            .orphan_dependents
            .as_deref()
            .map(|o| o == "true")
            .or_else(|| body["orphanDependents"].as_bool());
        let propagation = match (policy.as_deref(), orphan) {
            (Some("Foreground"), _) => Propagation::Foreground,
            (Some("Orphan"), _) | (None, Some(true)) => Propagation::Orphan,
            (Some("Background") | None, _) => Propagation::Background,
            (Some(other), _) => {
                return Err(ApiError::BadRequest(format!(
                    "propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
                )));
            }
        };
        let dry_run = query.dry_run()?
            || body["dryRun"]
                .as_array()
                .is_some_and(|d| d.iter().any(|v| v == "All"));
        Ok(DeleteOptions {
            propagation,
            uid: body
                .pointer("/preconditions/uid")
                .and_then(Value::as_str)
                .map(String::from),
            resource_version: body
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(String::from),
            dry_run,
            grace_period: query
                .grace_period_seconds
                .or_else(|| body["gracePeriodSeconds"].as_i64()),
        })
    }
}

/// Deletes one object, or marks it for deletion when finalizers must run first or a pod's node
/// must stop it (see [`grace`](super::grace)). Returns the object as it was deleted or as it
/// now waits.
pub async fn delete_object(
    server: &Server,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Value, ApiError> {
    loop {
        let current = server.objects.must_get(info, ns, name).await?;
        let obj = &current.object;
        if opts
            .uid
            .as_deref()
            .is_some_and(|uid| obj.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid))
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
            Propagation::Foreground => Some("foregroundDeletion"),
            Propagation::Orphan => Some("orphan"),
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
                    if info.kind == "CustomResourceDefinition" {
                        server.refresh_registry().await?;
                    }
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

pub async fn delete(call: &Call<'_>) -> Result<Response, ApiError> {
    let Call {
        server,
        target,
        query,
        content_type,
        body,
        ..
    } = call;
    let opts = DeleteOptions::parse(query, content_type, body)?;
    let object = delete_object(server, &target.info, target.ns(), target.name()?, &opts).await?;
    // 202 while finalizers hold the object; a pod waiting for its node is 200, as in Kubernetes.
    let code = if grace::marked_without_grace(&object) {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok(response::json(code, &object, &[]))
}

pub async fn delete_collection(call: &Call<'_>) -> Result<Response, ApiError> {
    let Call {
        server,
        target,
        query,
        content_type,
        body,
        ..
    } = call;
    let opts = DeleteOptions::parse(query, content_type, body)?;
    let filter = Filter::new(target, query)?;
    let page = server
        .objects
        .list(&target.info, target.ns(), None, None, None, |o| {
            filter.matches(o)
        })
        .await?;
    let mut deleted = Vec::new();
    for object in page.items {
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let ns = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str);
        match delete_object(server, &target.info, ns, name, &opts).await {
            Ok(o) => deleted.push(o),
            Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let body = response::list(
        &target.info,
        deleted,
        page.revision,
        None,
        response::Format::Json,
    );
    Ok(response::json(StatusCode::OK, &body, &[]))
}

/// `POST pods/NAME/eviction`: deletes the pod with the Eviction's `deleteOptions`, gracefully
/// like any delete (no disruption budgets yet).
pub async fn evict(call: &Call<'_>) -> Result<Response, ApiError> {
    let Call {
        server,
        target,
        query,
        body,
        ..
    } = call;
    let eviction = if body.is_empty() {
        json!({})
    } else {
        call.object()?
    };
    let opts = DeleteOptions::from_parts(query, &eviction["deleteOptions"])?;
    delete_object(server, &target.info, target.ns(), target.name()?, &opts).await?;
    Ok(response::json(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        &[],
    ))
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
