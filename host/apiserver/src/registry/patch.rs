//! Patches (JSON, merge and strategic merge) applied to an object, by content type.

use serde_json::Value;
use wasmkube_model::resource::ResourceInfo;
use wasmkube_model::{bounded, patch};

use crate::error::ApiError;

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
    let patched = result.map_err(|e| match e.code() {
        422 => ApiError::Unprocessable(e.to_string()),
        413 => ApiError::EntityTooLarge(e.to_string()),
        _ => ApiError::BadRequest(e.to_string()),
    })?;
    // A merge patch may nest as deep as its JSON parses (128): no deeper than we can read back.
    if bounded::measure(&patched).0 > bounded::MAX_DEPTH {
        return Err(ApiError::Unprocessable(format!(
            "the patched object would nest deeper than {} levels",
            bounded::MAX_DEPTH
        )));
    }
    Ok(patched)
}
