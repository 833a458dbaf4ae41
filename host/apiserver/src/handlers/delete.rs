//! delete, deletecollection and pods/eviction over HTTP: the options parsed, the registry called, the result encoded.

use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};
use wasmkube_model::meta::{Propagation, ResourceExt};

use super::Call;
use super::read::Filter;
use crate::error::ApiError;
use crate::registry::{DeleteOptions, delete_object, marked_without_grace};
use crate::request::{Query, parse_body};
use crate::response;

/// The options of a delete request: its query and its `DeleteOptions` body.
fn options(query: &Query, content_type: &str, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let body = if body.is_empty() {
        json!({})
    } else {
        parse_body(body, content_type)?
    };
    options_of(query, &body)
}

/// The options of the query and of a `DeleteOptions` object (`null` for none).
fn options_of(query: &Query, body: &Value) -> Result<DeleteOptions, ApiError> {
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

pub async fn delete(call: &Call<'_>) -> Result<Response, ApiError> {
    let Call {
        server,
        target,
        query,
        content_type,
        body,
        ..
    } = call;
    let opts = options(query, content_type, body)?;
    let object = delete_object(server, &target.info, target.ns(), target.name()?, &opts).await?;
    // 202 while finalizers hold the object; a pod waiting for its node is 200, as in Kubernetes.
    let code = if marked_without_grace(&object) {
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
    let opts = options(query, content_type, body)?;
    let filter = Filter::new(target, query)?;
    let page = server
        .objects
        .list(&target.info, target.ns(), None, None, None, |o| {
            filter.matches(o)
        })
        .await?;
    let mut deleted = Vec::new();
    for object in page.items {
        match delete_object(
            server,
            &target.info,
            object.namespace(),
            object.name(),
            &opts,
        )
        .await
        {
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
    let opts = options_of(query, &eviction["deleteOptions"])?;
    delete_object(server, &target.info, target.ns(), target.name()?, &opts).await?;
    Ok(response::json(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        &[],
    ))
}
