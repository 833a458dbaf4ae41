//! Server-side apply (`PATCH` with `application/apply-patch+yaml`): merge the applied configuration, track field owners, report conflicts.

use std::sync::Arc;

use http::StatusCode;
use serde_json::Value;
use wasmkube_model::apply::{self, ApplyError};
use wasmkube_model::patch;

use crate::Server;
use crate::error::ApiError;
use crate::handlers::{Update, WriteOptions, update_with};
use crate::request::{Query, Target};
use crate::strategy::{self, parse_body};

fn conflict_error(e: ApplyError) -> ApiError {
    match &e {
        ApplyError::Conflicts(conflicts) => {
            let causes = conflicts
                .iter()
                .map(|c| serde_json::json!({"reason": "FieldManagerConflict", "message": format!("conflict with {:?} using {}", c.manager, c.api_version), "field": c.field_path}))
                .collect();
            ApiError::ApplyConflict {
                message: e.to_string(),
                causes,
            }
        }
        _ => ApiError::BadRequest(e.to_string()),
    }
}

/// Applies the configuration in `body` for `fieldManager`; creates the object when absent.
pub async fn server_side_apply(
    server: &Arc<Server>,
    target: &Target,
    query: &Query,
    body: &[u8],
    warnings: &mut Vec<String>,
) -> Result<(Value, StatusCode), ApiError> {
    let manager = query
        .field_manager
        .as_deref()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            ApiError::BadRequest(
                "PATCH, application/apply-patch+yaml requires fieldManager to be set".into(),
            )
        })?;
    let config = parse_body(body, "application/yaml")?;
    let info = &target.info;
    let name = target.name()?;
    if config
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .is_some_and(|n| n != name)
    {
        return Err(ApiError::BadRequest(
            "the name of the object does not match the name on the URL".into(),
        ));
    }
    let schema = patch::schema_for(&info.group, &info.kind).filter(|_| !info.custom);
    // Applies record their managed fields themselves (`apply::apply`), so no manager here.
    let opts = WriteOptions {
        validation: query.field_validation()?,
        dry_run: query.dry_run()?,
        manager: None,
    };
    if server.objects.get(info, target.ns(), name).await?.is_none() {
        let created = apply::apply(
            None,
            &config,
            manager,
            query.force(),
            schema,
            &strategy::now(),
        )
        .map_err(conflict_error)?;
        let object =
            crate::handlers::create_object(server, info, target.ns(), created, opts, warnings)
                .await?;
        return Ok((object, StatusCode::CREATED));
    }
    let update = Update {
        subresource: target.subresource.as_deref(),
        opts,
        ..Update::internal(info, target.ns(), name)
    };
    let object = update_with(
        server,
        &update,
        |live| {
            let mut applied = apply::apply(
                Some(live),
                &config,
                manager,
                query.force(),
                schema,
                &strategy::now(),
            )
            .map_err(conflict_error)?;
            // The configuration's resourceVersion, if any, is a precondition; otherwise the live one is.
            if config.pointer("/metadata/resourceVersion").is_none() {
                applied["metadata"]["resourceVersion"] =
                    live["metadata"]["resourceVersion"].clone();
            }
            Ok(applied)
        },
        warnings,
    )
    .await?;
    Ok((object, StatusCode::OK))
}
