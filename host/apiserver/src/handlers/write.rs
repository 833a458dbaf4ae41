//! create, update (PUT), patch and pods/binding over HTTP: the request parsed, the registry called, the result encoded.

use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};
use wasmkube_model::validation::{ErrorType, FieldError};

use super::Call;
use crate::error::ApiError;
use crate::registry::{
    self, Applied, Update, WriteOptions, apply_patch, bind_pod, create_object, update_with,
};
use crate::request::{MAX_BODY_BYTES, Query, Target, parse_body};
use crate::response::{self};

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
        user: Some(&call.user),
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

fn update_of<'a>(
    target: &'a Target,
    query: &'a Query,
    manager: &'a str,
    user: &'a crate::auth::User,
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
            user: Some(user),
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
            &update_of(target, query, &manager, &call.user)?,
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
        &update_of(target, query, &manager, &call.user)?,
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

pub async fn patch(call: &Call<'_>) -> Result<Response, ApiError> {
    let Call {
        server,
        target,
        query,
        content_type,
        body,
        ..
    } = call;
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::BodyTooLarge(MAX_BODY_BYTES));
    }
    let mut warnings = Vec::new();
    let format = call.format();
    let manager = call.manager();
    if content_type.starts_with("application/apply-patch") {
        let applier = query
            .field_manager
            .as_deref()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                ApiError::BadRequest(
                    "PATCH, application/apply-patch+yaml requires fieldManager to be set".into(),
                )
            })?;
        let config = parse_body(body, "application/yaml")?;
        let update = update_of(target, query, &manager, &call.user)?;
        let applied = registry::server_side_apply(
            server,
            &update,
            applier,
            query.force(),
            &config,
            &mut warnings,
        )
        .await?;
        let (status, object) = match applied {
            Applied::Created(object) => (StatusCode::CREATED, object),
            Applied::Updated(object) => (StatusCode::OK, object),
        };
        return Ok(response::json(
            status,
            &response::object(&target.info, object, format),
            &warnings,
        ));
    }
    let patched = update_with(
        server,
        &update_of(target, query, &manager, &call.user)?,
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
                vec![FieldError {
                    field: "target.name".into(),
                    error: ErrorType::Required(String::new()),
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

/// `POST` of a review (`kubectl auth can-i`, `kubectl auth whoami`): answered, not stored.
pub fn review(call: &Call<'_>) -> Result<Response, ApiError> {
    let mut body = call.object()?;
    if call.target.info.namespaced {
        let ns = call
            .target
            .ns()
            .ok_or_else(|| ApiError::BadRequest("namespace is required on this type".into()))?;
        crate::auth::review::check_local(&call.target.info, ns, &mut body)?;
    }
    let index = crate::auth::current_index(call.server);
    let answered = crate::auth::review::answer(&call.target.info.kind, body, &call.user, &index)?;
    Ok(response::json(StatusCode::CREATED, &answered, &[]))
}
