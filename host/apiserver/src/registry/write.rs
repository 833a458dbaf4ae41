//! Create and update: every write goes through strategy and admission, then a compare-and-swap in the store.

use serde_json::Value;
use wasmkube_model::meta::ResourceExt;
use wasmkube_model::resource::ResourceInfo;

use super::{admission, allocator, grace, podsecurity, strategy};
use crate::error::ApiError;
use crate::objects::{ClaimMove, parse_revision};
use crate::server::Server;

/// The Namespace `ns`.
async fn namespace(server: &Server, ns: &str) -> Result<Value, ApiError> {
    let registry = server.registry();
    let info = registry
        .by_kind("v1", "Namespace")
        .ok_or_else(|| ApiError::Internal("namespaces are not served".into()))?;
    Ok(server.objects.must_get(info, None, ns).await?.object)
}

/// Fails unless `ns` exists and is not being deleted (creating content in it); returns it.
async fn check_namespace(server: &Server, ns: Option<&str>) -> Result<Option<Value>, ApiError> {
    let Some(ns) = ns else { return Ok(None) };
    let namespace = namespace(server, ns).await?;
    if namespace.is_deleting() {
        return Err(ApiError::Forbidden(format!(
            "unable to create new content in namespace {ns} because it is being terminated"
        )));
    }
    Ok(Some(namespace))
}

/// Pod Security on a namespace update: its labels valid, and warnings naming the pods already
/// there that a stricter `enforce` level would refuse.
async fn relabelled_namespace(
    server: &Server,
    info: &ResourceInfo,
    new: &Value,
    old: &Value,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    podsecurity::admit_namespace(info, new, Some(old))?;
    let default = server.cluster.pod_security;
    let Some(enforce) = podsecurity::stricter_enforce(default, new, old) else {
        return Ok(());
    };
    let registry = server.registry();
    let pods = registry
        .by_kind("v1", "Pod")
        .ok_or_else(|| ApiError::Internal("pods are not served".into()))?;
    let name = new.name();
    let existing = server
        .objects
        .list(pods, Some(name), None, None, None, |_| true)
        .await?;
    warnings.extend(podsecurity::existing_pods(name, enforce, &existing.items));
    Ok(())
}

fn is_namespace(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.kind == "Namespace"
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
    let namespace = check_namespace(server, ns.filter(|_| info.namespaced)).await?;
    let name =
        strategy::prepare_create(info, ns, &mut obj, opts.validation, opts.manager, warnings)?;
    admission::admit_create(server, info, &mut obj).await?;
    if crate::certificates::is_csr(info) {
        crate::certificates::admit_create(server, info, &mut obj, opts.user).await?;
    }
    if let Some(user) = opts.user {
        crate::auth::node::admit_create(info, &obj, user)?;
    }
    if is_namespace(info) {
        podsecurity::admit_namespace(info, &obj, None)?;
    }
    if let Some(namespace) = namespace
        .as_ref()
        .filter(|_| podsecurity::applies_to(info, None))
    {
        let write = podsecurity::Write {
            info,
            namespace,
            obj: &obj,
            old: None,
            subresource: None,
        };
        podsecurity::admit(server.cluster.pod_security, &write, warnings)?;
    }
    if let Some(user) = opts.user {
        crate::auth::escalation::check(server, info, &obj, user).await?;
    }
    if opts.dry_run {
        // As kube-apiserver: a dry run answers what the create would, a 409 included.
        if server.objects.get(info, ns, &name).await?.is_some() {
            return Err(ApiError::AlreadyExists {
                resource: info.qualified_resource(),
                name,
            });
        }
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
        if crate::certificates::is_csr(u.info) {
            crate::certificates::prepare_update(
                server,
                u.info,
                &current.object,
                &mut new,
                u.subresource,
                u.opts.user,
            )?;
        }
        if !strategy::differs(&current.object, &new) {
            return Ok(current.object);
        }
        if let Some(user) = u.opts.user {
            crate::auth::escalation::check(server, u.info, &new, user).await?;
        }
        if is_namespace(u.info) && u.subresource.is_none() {
            relabelled_namespace(server, u.info, &new, &current.object, warnings).await?;
        }
        if let Some(ns) =
            u.ns.filter(|_| podsecurity::applies_to(u.info, u.subresource))
        {
            let write = podsecurity::Write {
                info: u.info,
                namespace: &namespace(server, ns).await?,
                obj: &new,
                old: Some(&current.object),
                subresource: u.subresource,
            };
            podsecurity::admit(server.cluster.pod_security, &write, warnings)?;
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
