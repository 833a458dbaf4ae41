//! The `scale` subresource: an `autoscaling/v1` Scale view of a workload's replicas.

use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};
use wasmkube_model::resource::{ResourceInfo, ScalePaths};

use super::Call;
use crate::error::ApiError;
use crate::registry::{Update, WriteOptions, apply_patch, update_with};
use crate::response;

/// `.spec.replicas` as a JSON pointer, `/spec/replicas`.
fn pointer(path: &str) -> String {
    path.replace('.', "/")
}

fn paths(info: &ResourceInfo) -> Result<&ScalePaths, ApiError> {
    info.scale.as_ref().ok_or(ApiError::UnknownResource)
}

/// The label selector of a workload as a string (`app=web,tier in (a)`).
fn selector_of(info: &ResourceInfo, object: &Value, paths: &ScalePaths) -> String {
    if info.custom {
        return paths
            .label_selector
            .as_deref()
            .and_then(|p| object.pointer(&pointer(p)))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
    }
    let selector = &object["spec"]["selector"];
    let mut parts: Vec<String> = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    for e in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let key = e["key"].as_str().unwrap_or("");
        parts.push(match e["operator"].as_str() {
            Some("In") => format!("{key} in ({})", values.join(",")),
            Some("NotIn") => format!("{key} notin ({})", values.join(",")),
            Some("Exists") => key.to_string(),
            _ => format!("!{key}"),
        });
    }
    parts.join(",")
}

fn to_scale(info: &ResourceInfo, object: &Value) -> Result<Value, ApiError> {
    let paths = paths(info)?;
    let meta = &object["metadata"];
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": object.pointer(&pointer(&paths.spec_replicas)).cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": object.pointer(&pointer(&paths.status_replicas)).cloned().unwrap_or(json!(0)),
            "selector": selector_of(info, object, paths),
        },
    }))
}

pub async fn get(call: &Call<'_>) -> Result<Response, ApiError> {
    let Call { server, target, .. } = call;
    let stored = server
        .objects
        .must_get(&target.info, target.ns(), target.name()?)
        .await?;
    Ok(response::json(
        StatusCode::OK,
        &to_scale(&target.info, &stored.object)?,
        &[],
    ))
}

/// Writes `spec.replicas` of a (possibly patched) Scale back into the workload.
async fn write_scale(
    call: &Call<'_>,
    change: impl Fn(&Value) -> Result<Value, ApiError>,
) -> Result<Response, ApiError> {
    let Call {
        server,
        target,
        query,
        ..
    } = call;
    let info = &target.info;
    let paths = paths(info)?;
    let manager = call.manager();
    let update = Update {
        opts: WriteOptions {
            validation: "Ignore",
            dry_run: query.dry_run()?,
            manager: Some(&manager),
            user: Some(&call.user),
        },
        ..Update::internal(info, target.ns(), target.name()?)
    };
    let updated = update_with(
        server,
        &update,
        |cur| {
            let scale = change(&to_scale(info, cur)?)?;
            let replicas = scale
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if replicas < 0 {
                return Err(ApiError::invalid(
                    info,
                    update.name,
                    vec![wasmkube_model::validation::FieldError {
                        field: "spec.replicas".into(),
                        error: wasmkube_model::validation::ErrorType::Invalid {
                            value: replicas.to_string(),
                            detail: "must be greater than or equal to 0".into(),
                        },
                    }],
                ));
            }
            let mut new = cur.clone();
            let target_ptr = pointer(&paths.spec_replicas);
            let (parent, field) = target_ptr.rsplit_once('/').unwrap_or(("", &target_ptr));
            if let Some(parent) = new.pointer_mut(parent).and_then(Value::as_object_mut) {
                parent.insert(field.to_string(), json!(replicas));
            }
            new["metadata"]["resourceVersion"] = scale["metadata"]["resourceVersion"].clone();
            Ok(new)
        },
        &mut Vec::new(),
    )
    .await?;
    Ok(response::json(
        StatusCode::OK,
        &to_scale(info, &updated)?,
        &[],
    ))
}

pub async fn update(call: &Call<'_>) -> Result<Response, ApiError> {
    let scale = call.object()?;
    write_scale(call, |_| Ok(scale.clone())).await
}

pub async fn patch(call: &Call<'_>) -> Result<Response, ApiError> {
    let Call {
        target,
        content_type,
        body,
        ..
    } = call;
    let scale_info = ResourceInfo {
        group: "autoscaling".into(),
        kind: "Scale".into(),
        custom: true,
        ..(*target.info).clone()
    };
    write_scale(call, |scale| {
        apply_patch(&scale_info, scale, content_type, body)
    })
    .await
}
