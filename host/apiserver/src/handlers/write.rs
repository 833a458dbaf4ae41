//! create, update (PUT), patch and pods/binding: every write goes through strategy, then a compare-and-swap.

use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};
use wasmkube_model::patch;
use wasmkube_model::resource::ResourceInfo;

use super::Call;
use super::grace;
use crate::Server;
use crate::admission;
use crate::allocator;
use crate::error::ApiError;
use crate::objects::ClaimMove;
use crate::request::{Query, Target, parse_revision};
use crate::response::{self};
use crate::strategy::{self};

/// Fails unless `ns` exists and is not being deleted (creating content in it).
pub async fn check_namespace(server: &Server, ns: Option<&str>) -> Result<(), ApiError> {
    let Some(ns) = ns else { return Ok(()) };
    let registry = server.registry();
    let info = registry
        .by_kind("v1", "Namespace")
        .ok_or_else(|| ApiError::Internal("namespaces are not served".into()))?;
    let namespace = server.objects.must_get(info, None, ns).await?;
    if namespace
        .object
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
    {
        return Err(ApiError::Forbidden(format!(
            "unable to create new content in namespace {ns} because it is being terminated"
        )));
    }
    Ok(())
}

/// How a write is checked and recorded.
#[derive(Clone, Copy, Debug)]
pub struct WriteOptions<'a> {
    /// `Strict`, `Warn` or `Ignore` for unknown fields.
    pub validation: &'a str,
    pub dry_run: bool,
    /// Who gets the changed fields in `managedFields`; `None` for server-internal writes and applies.
    pub manager: Option<&'a str>,
}

impl WriteOptions<'static> {
    /// A write by the server itself: no field validation, no manager, never a dry run.
    pub const INTERNAL: WriteOptions<'static> = WriteOptions {
        validation: "Ignore",
        dry_run: false,
        manager: None,
    };
}

/// Stores a new object prepared from `obj`; returns it as stored (or as it would be, on dry run).
pub async fn create_object(
    server: &Server,
    info: &ResourceInfo,
    ns: Option<&str>,
    mut obj: Value,
    opts: WriteOptions<'_>,
    warnings: &mut Vec<String>,
) -> Result<Value, ApiError> {
    check_namespace(server, ns.filter(|_| info.namespaced)).await?;
    let name =
        strategy::prepare_create(info, ns, &mut obj, opts.validation, opts.manager, warnings)?;
    admission::admit_create(server, info, &mut obj).await?;
    if opts.dry_run {
        return Ok(obj);
    }
    allocator::allocate(&server.objects, &server.service_range, info, &mut obj, None).await?;
    let created = server
        .objects
        .create(info, ns, &name, obj.clone(), &allocator::claims(info, &obj))
        .await?;
    if info.kind == "CustomResourceDefinition" {
        server.refresh_registry().await?;
    }
    Ok(created)
}

pub async fn create(call: &Call<'_>) -> Result<Response, ApiError> {
    let Call {
        server,
        target,
        query,
        ..
    } = call;
    let obj = call.object()?;
    let mut warnings = Vec::new();
    let manager = call.manager();
    let opts = WriteOptions {
        validation: query.field_validation()?,
        dry_run: query.dry_run()?,
        manager: Some(&manager),
    };
    let created =
        create_object(server, &target.info, target.ns(), obj, opts, &mut warnings).await?;
    let format = call.format();
    Ok(response::json(
        StatusCode::CREATED,
        &response::object(&target.info, created, format),
        &warnings,
    ))
}

/// A read-modify-write of one object.
pub struct Update<'a> {
    pub info: &'a ResourceInfo,
    pub ns: Option<&'a str>,
    pub name: &'a str,
    pub subresource: Option<&'a str>,
    pub opts: WriteOptions<'a>,
}

impl<'a> Update<'a> {
    /// A write of the main resource by the server itself ([`WriteOptions::INTERNAL`]).
    pub fn internal(info: &'a ResourceInfo, ns: Option<&'a str>, name: &'a str) -> Self {
        Update {
            info,
            ns,
            name,
            subresource: None,
            opts: WriteOptions::INTERNAL,
        }
    }
}

/// Applies `change` to the current object and stores the result with compare-and-swap, retrying
/// when someone else wrote in between. A changed object naming a `resourceVersion` other than
/// the current one is a 409. An unchanged object is not written.
pub async fn update_with(
    server: &Server,
    u: &Update<'_>,
    change: impl Fn(&Value) -> Result<Value, ApiError>,
    warnings: &mut Vec<String>,
) -> Result<Value, ApiError> {
    loop {
        let current = server.objects.must_get(u.info, u.ns, u.name).await?;
        let mut new = change(&current.object)?;
        let precondition = parse_revision(
            new.pointer("/metadata/resourceVersion")
                .and_then(Value::as_str),
        )?;
        if precondition.is_some_and(|rv| rv != current.revision) {
            return Err(ApiError::conflict(u.info, u.name));
        }
        allocator::allocate(
            &server.objects,
            &server.service_range,
            u.info,
            &mut new,
            Some(&current.object),
        )
        .await?;
        strategy::prepare_update(
            u.info,
            &current.object,
            &mut new,
            u.subresource,
            u.opts.validation,
            u.opts.manager,
            warnings,
        )?;
        if !strategy::differs(&current.object, &new) {
            return Ok(current.object);
        }
        if u.opts.dry_run {
            return Ok(new);
        }
        let empty = |pointer: &str| {
            new.pointer(pointer)
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
        };
        // The last finalizer gone: the object goes, unless it still waits for its grace period
        // (a pod its node has not stopped yet).
        let finalized = grace::marked_without_grace(&new)
            && empty("/metadata/finalizers")
            && (u.info.kind != "Namespace" || empty("/spec/finalizers"));
        let result = if finalized {
            server
                .objects
                .delete(
                    u.info,
                    u.ns,
                    u.name,
                    current.revision,
                    &allocator::claims(u.info, &current.object),
                )
                .await
                .map(|_| new)
        } else {
            server
                .objects
                .update(
                    u.info,
                    u.ns,
                    u.name,
                    new.clone(),
                    current.revision,
                    ClaimMove {
                        held: &allocator::claims(u.info, &current.object),
                        wanted: &allocator::claims(u.info, &new),
                    },
                )
                .await
        };
        match result {
            // Someone wrote in between: start again from the fresh object (a stale
            // resourceVersion precondition then fails above).
            Err(ApiError::Conflict { .. }) => continue,
            Ok(stored) => {
                if u.info.kind == "CustomResourceDefinition" {
                    server.refresh_registry().await?;
                }
                return Ok(stored);
            }
            Err(e) => return Err(e),
        }
    }
}

fn update_of<'a>(
    target: &'a Target,
    query: &'a Query,
    manager: &'a str,
) -> Result<Update<'a>, ApiError> {
    Ok(Update {
        info: &target.info,
        ns: target.ns(),
        name: target.name()?,
        subresource: target.subresource.as_deref(),
        opts: WriteOptions {
            validation: query.field_validation()?,
            dry_run: query.dry_run()?,
            manager: Some(manager),
        },
    })
}

pub async fn replace(call: &Call<'_>) -> Result<Response, ApiError> {
    let Call {
        server,
        target,
        query,
        ..
    } = call;
    let obj = call.object()?;
    let mut warnings = Vec::new();
    let manager = call.manager();
    if target.subresource.as_deref() == Some("finalize") {
        // Namespace finalize: only spec.finalizers may change.
        let finalizers = obj
            .pointer("/spec/finalizers")
            .cloned()
            .unwrap_or(json!([]));
        let updated = update_with(
            server,
            &update_of(target, query, &manager)?,
            |cur| {
                let mut new = cur.clone();
                new["spec"]["finalizers"] = finalizers.clone();
                Ok(new)
            },
            &mut warnings,
        )
        .await?;
        return Ok(response::json(StatusCode::OK, &updated, &warnings));
    }
    let updated = update_with(
        server,
        &update_of(target, query, &manager)?,
        |_| Ok(obj.clone()),
        &mut warnings,
    )
    .await?;
    let format = call.format();
    Ok(response::json(
        StatusCode::OK,
        &response::object(&target.info, updated, format),
        &warnings,
    ))
}

/// Applies a patch body of `content_type` to `current`.
pub fn apply_patch(
    info: &ResourceInfo,
    current: &Value,
    content_type: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    let result = match media {
        "application/json-patch+json" => patch::json_patch(current, body),
        "application/merge-patch+json" => patch::merge_patch(current, body),
        "application/strategic-merge-patch+json" => {
            match patch::schema_for(&info.group, &info.kind).filter(|_| !info.custom) {
                Some(schema) => patch::strategic_merge_patch(current, body, schema),
                None => return Err(ApiError::UnsupportedPatch),
            }
        }
        _ => return Err(ApiError::UnsupportedPatch),
    };
    result.map_err(|e| match e.code() {
        422 => ApiError::Unprocessable(e.to_string()),
        _ => ApiError::BadRequest(e.to_string()),
    })
}

pub async fn patch(call: &Call<'_>) -> Result<Response, ApiError> {
    let Call {
        server,
        target,
        query,
        content_type,
        body,
        ..
    } = call;
    if body.len() > strategy::MAX_BODY_BYTES {
        return Err(ApiError::BodyTooLarge(strategy::MAX_BODY_BYTES));
    }
    let mut warnings = Vec::new();
    let format = call.format();
    if content_type.starts_with("application/apply-patch") {
        let (object, status) =
            crate::apply::server_side_apply(server, target, query, body, &mut warnings).await?;
        return Ok(response::json(
            status,
            &response::object(&target.info, object, format),
            &warnings,
        ));
    }
    let manager = call.manager();
    let patched = update_with(
        server,
        &update_of(target, query, &manager)?,
        |cur| apply_patch(&target.info, cur, content_type, body),
        &mut warnings,
    )
    .await?;
    Ok(response::json(
        StatusCode::OK,
        &response::object(&target.info, patched, format),
        &warnings,
    ))
}

/// `POST pods/NAME/binding`: assigns the pod to a node, once.
pub async fn bind(call: &Call<'_>) -> Result<Response, ApiError> {
    let Call { server, target, .. } = call;
    let binding = call.object()?;
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(
                &target.info,
                target.name.as_deref().unwrap_or(""),
                vec![wasmkube_model::validation::FieldError {
                    field: "target.name".into(),
                    error: wasmkube_model::validation::ErrorType::Required(String::new()),
                }],
            )
        })?
        .to_string();
    let name = target.name()?;
    bind_pod(server, &target.info, target.ns(), name, &node).await?;
    Ok(response::json(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        &[],
    ))
}

/// Assigns the pod `name` to `node`, once, as a Binding does: sets `spec.nodeName` and the
/// `PodScheduled=True` condition. A pod already assigned or being deleted is a 409.
pub async fn bind_pod(
    server: &Server,
    pods: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    node: &str,
) -> Result<Value, ApiError> {
    let update = Update {
        subresource: Some("binding"),
        ..Update::internal(pods, ns, name)
    };
    let conflict = |reason: String| ApiError::Conflict {
        resource: "pods".into(),
        name: name.to_string(),
        reason,
    };
    update_with(
        server,
        &update,
        |cur| {
            if let Some(existing) = cur
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                return Err(conflict(format!(
                    "pod {name} is already assigned to node {existing:?}"
                )));
            }
            if cur
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|t| !t.is_null())
            {
                return Err(conflict(
                    "pod is being deleted, cannot be assigned to a host".into(),
                ));
            }
            let mut new = cur.clone();
            new["spec"]["nodeName"] = json!(node);
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let scheduled = json!({"type": "PodScheduled", "status": "True",
                "lastProbeTime": null, "lastTransitionTime": now});
            let conditions = new["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut conditions: Vec<Value> = conditions
                .into_iter()
                .filter(|c| c["type"] != "PodScheduled")
                .collect();
            conditions.insert(0, scheduled);
            new["status"]["conditions"] = Value::Array(conditions);
            Ok(new)
        },
        &mut Vec::new(),
    )
    .await
}
