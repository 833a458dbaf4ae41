//! Server-side apply (`PATCH` with `application/apply-patch+yaml`): merge the applied configuration, track field owners, report conflicts.

use serde_json::Value;
use wasmkube_model::apply::{self, ApplyError};
use wasmkube_model::meta::now;
use wasmkube_model::patch;

use super::write::{Update, WriteOptions, create_object, update_with};
use crate::error::ApiError;
use crate::server::Server;

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

/// What an apply did: created the object, or updated the one there.
pub enum Applied {
    Created(Value),
    Updated(Value),
}

/// Applies `config` for the field manager `manager` to the object `update` names; creates the
/// object when absent. `force` takes over fields other managers own.
pub async fn server_side_apply(
    server: &Server,
    update: &Update<'_>,
    manager: &str,
    force: bool,
    config: &Value,
    warnings: &mut Vec<String>,
) -> Result<Applied, ApiError> {
    let (info, name) = (update.info, update.name);
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
    let update = Update {
        opts: WriteOptions {
            manager: None,
            ..update.opts
        },
        ..*update
    };
    if server.objects.get(info, update.ns, name).await?.is_none() {
        let created =
            apply::apply(None, config, manager, force, schema, &now()).map_err(conflict_error)?;
        let object = create_object(server, info, update.ns, created, update.opts, warnings).await?;
        return Ok(Applied::Created(object));
    }
    let object = update_with(
        server,
        &update,
        |live| {
            let mut applied = apply::apply(Some(live), config, manager, force, schema, &now())
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
    Ok(Applied::Updated(object))
}
