//! Patches: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and Kubernetes strategic merge patch.

mod schema;
mod strategic;

use serde_json::Value;

pub use schema::{ListType, PatchSchema, key_default, schema_for};
pub use strategic::strategic_merge_patch;

/// Why a patch could not be applied; [`PatchError::code`] gives the HTTP status Kubernetes uses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch body is not valid JSON of the expected shape.
    #[error("error decoding patch: {0}")]
    Decode(String),
    /// A JSON patch operation failed (bad path, failed `test`, ...).
    #[error("the JSON patch could not be applied: {0}")]
    JsonPatch(String),
    /// A strategic merge patch directive (`$patch`, `$retainKeys`, ...) is malformed.
    #[error("invalid strategic merge patch directive: {0}")]
    Directive(String),
    /// An element of a list merged by key lacks the key.
    #[error("map: {element} does not contain declared merge key: {key}")]
    MissingMergeKey {
        /// The declared merge key.
        key: String,
        /// The offending element, as JSON.
        element: String,
    },
}

impl PatchError {
    /// The HTTP status for a Kubernetes `Status`: 400 for malformed patches, 422 when a
    /// well-formed patch cannot be applied to this object.
    pub fn code(&self) -> u16 {
        match self {
            PatchError::Decode(_) | PatchError::Directive(_) => 400,
            PatchError::JsonPatch(_) | PatchError::MissingMergeKey { .. } => 422,
        }
    }
}

pub(crate) fn decode(patch: &[u8]) -> Result<Value, PatchError> {
    serde_json::from_slice(patch).map_err(|e| PatchError::Decode(e.to_string()))
}

/// Applies an RFC 6902 JSON patch (a list of operations) to `doc`.
pub fn json_patch(doc: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    let ops: json_patch::Patch =
        serde_json::from_slice(patch).map_err(|e| PatchError::Decode(e.to_string()))?;
    let mut out = doc.clone();
    json_patch::patch(&mut out, &ops).map_err(|e| PatchError::JsonPatch(e.to_string()))?;
    Ok(out)
}

/// Applies an RFC 7386 JSON merge patch to `doc` (`null` deletes, lists replace).
pub fn merge_patch(doc: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    let patch = decode(patch)?;
    let mut out = doc.clone();
    json_patch::merge(&mut out, &patch);
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_patch_operations() {
        let doc = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 1}});
        let out = json_patch(
            &doc,
            br#"[{"op":"replace","path":"/spec/replicas","value":3},
                {"op":"add","path":"/metadata/labels/b","value":"2"},
                {"op":"remove","path":"/metadata/labels/a"}]"#,
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"b": "2"}}, "spec": {"replicas": 3}})
        );
    }

    #[test]
    fn json_patch_failures() {
        let doc = json!({"a": 1});
        let err = json_patch(&doc, br#"[{"op":"test","path":"/a","value":2}]"#).unwrap_err();
        assert_eq!(err.code(), 422);
        assert!(err.to_string().contains("value did not match"), "{err}");
        let err = json_patch(&doc, br#"[{"op":"remove","path":"/b"}]"#).unwrap_err();
        assert_eq!(err.code(), 422);
        let err = json_patch(&doc, b"{not json").unwrap_err();
        assert_eq!(err.code(), 400);
        assert!(err.to_string().starts_with("error decoding patch: "));
        assert!(json_patch(&doc, br#"{"op":"add"}"#).is_err());
    }

    #[test]
    fn merge_patch_semantics() {
        let doc = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        let out = merge_patch(&doc, br#"{"a": {"b": null, "d": 4}, "l": [3]}"#).unwrap();
        assert_eq!(out, json!({"a": {"c": 2, "d": 4}, "l": [3]}));
        assert_eq!(merge_patch(&doc, b"x").unwrap_err().code(), 400);
    }
}
