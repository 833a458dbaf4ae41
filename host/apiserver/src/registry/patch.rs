//! Patches (JSON, merge and strategic merge) applied to an object, by content type.

use serde_json::Value;
use wasmkube_model::patch;
use wasmkube_model::resource::ResourceInfo;

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
    result.map_err(|e| match e.code() {
        422 => ApiError::Unprocessable(e.to_string()),
        _ => ApiError::BadRequest(e.to_string()),
    })
}
