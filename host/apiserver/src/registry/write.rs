//! Create and update: every write goes through strategy and admission, then a compare-and-swap in the store.

use serde_json::Value;
use wasmkube_model::meta::ResourceExt;
use wasmkube_model::resource::ResourceInfo;

use super::{admission, allocator, grace, strategy};
use crate::error::ApiError;
use crate::objects::{ClaimMove, parse_revision};
use crate::server::Server;

/// Fails unless `ns` exists and is not being deleted (creating content in it).
async fn check_namespace(server: &Server, ns: Option<&str>) -> Result<(), ApiError> {
    let Some(ns) = ns else { return Ok(()) };
    let registry = server.registry();
    let info = registry
        .by_kind("v1", "Namespace")
        .ok_or_else(|| ApiError::Internal("namespaces are not served".into()))?;
    let namespace = server.objects.must_get(info, None, ns).await?;
    if namespace.object.is_deleting() {
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
    /// Who asks for the write, for the escalation check of RBAC objects; `None` for the
    /// server's own writes.
    pub user: Option<&'a crate::auth::User>,
}

impl WriteOptions<'static> {
    /// A write by the server itself: no field validation, no manager, never a dry run.
    pub const INTERNAL: WriteOptions<'static> = WriteOptions {
        validation: "Ignore",
        dry_run: false,
        manager: None,
        user: None,
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
    if let Some(user) = opts.user {
        crate::auth::escalation::check(server, info, &obj, user).await?;
    }
    if opts.dry_run {
        return Ok(obj);
    }
    allocator::allocate(&server.objects, &server.service_range, info, &mut obj, None).await?;
    let created = server
        .objects
        .create(info, ns, &name, obj.clone(), &allocator::claims(info, &obj))
        .await?;
    server.written(info).await?;
    Ok(created)
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

/// Replaces the `status` of the cluster-scoped object `name` of `info` (the status subresource),
/// as the server's own components report it.
pub async fn replace_status(
    server: &Server,
    info: &ResourceInfo,
    name: &str,
    status: &Value,
) -> Result<Value, ApiError> {
    let update = Update {
        subresource: Some("status"),
        ..Update::internal(info, None, name)
    };
    let replace = |cur: &Value| {
        let mut new = cur.clone();
        new["status"] = status.clone();
        Ok(new)
    };
    update_with(server, &update, replace, &mut Vec::new()).await
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
        if let Some(user) = u.opts.user {
            crate::auth::escalation::check(server, u.info, &new, user).await?;
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
                server.written(u.info).await?;
                return Ok(stored);
            }
            Err(e) => return Err(e),
        }
    }
}
