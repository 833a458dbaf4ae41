//! Patches: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and Kubernetes strategic merge patch.

mod schema;
mod strategic;

use serde_json::Value;

use crate::bounded;

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
    /// The patch has more operations than [`MAX_JSON_PATCH_OPERATIONS`].
    #[error(
        "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {0}"
    )]
    TooManyOperations(usize),
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
            PatchError::TooManyOperations(_) => 413,
            PatchError::JsonPatch(_) | PatchError::MissingMergeKey { .. } => 422,
        }
    }
}

pub(crate) fn decode(patch: &[u8]) -> Result<Value, PatchError> {
    serde_json::from_slice(patch).map_err(|e| PatchError::Decode(e.to_string()))
}

/// The most operations a JSON patch may have (kube-apiserver's `maxJSONPatchOperations`).
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// The most bytes a JSON patch's `copy` operations may add up to (as evanphx/json-patch's
/// `AccumulatedCopySizeLimit`, here the largest request body): copies cannot amplify a patch.
pub const MAX_COPIED_BYTES: usize = 3 * 1024 * 1024;

/// Applies an RFC 6902 JSON patch (a list of operations) to `doc`, within the bounds above and
/// [`bounded::MAX_DEPTH`]: each operation's effect on the depth is bounded before it runs, so
/// nothing deeper (or larger) than allowed is ever built.
pub fn json_patch(doc: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    use json_patch::PatchOperation as Op;
    let ops: json_patch::Patch =
        serde_json::from_slice(patch).map_err(|e| PatchError::Decode(e.to_string()))?;
    if ops.0.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooManyOperations(ops.0.len()));
    }
    let too_deep = || {
        PatchError::JsonPatch(format!(
            "the result would nest deeper than {} levels",
            bounded::MAX_DEPTH
        ))
    };
    let mut out = doc.clone();
    // An upper bound of `out`'s depth, kept without walking `out` again.
    let mut depth = bounded::measure(&out).0;
    let mut copied = 0usize;
    for op in &ops.0 {
        let path_len = op.path().tokens().count();
        let reach = match op {
            Op::Add(o) => path_len + bounded::measure(&o.value).0,
            Op::Replace(o) => path_len + bounded::measure(&o.value).0,
            Op::Move(o) => depth + path_len.saturating_sub(o.from.tokens().count()),
            Op::Copy(o) => {
                let source = out.pointer(o.from.as_str()).ok_or_else(|| {
                    PatchError::JsonPatch(format!("copy from {:?}: no such path", o.from.as_str()))
                })?;
                let (source_depth, bytes) = bounded::measure(source);
                copied = copied.saturating_add(bytes);
                if copied > MAX_COPIED_BYTES {
                    return Err(PatchError::JsonPatch(format!(
                        "Unable to complete the copy, the accumulated size increase of copy is {copied}, exceeding the limit {MAX_COPIED_BYTES}"
                    )));
                }
                path_len + source_depth
            }
            Op::Remove(_) | Op::Test(_) => 0,
        };
        depth = depth.max(reach);
        if depth > bounded::MAX_DEPTH {
            return Err(too_deep());
        }
        json_patch::patch_unsafe(&mut out, std::slice::from_ref(op))
            .map_err(|e| PatchError::JsonPatch(e.to_string()))?;
    }
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
    fn json_patch_amplification_is_refused() {
        // 24 copies doubling a ConfigMap's data (9.4 GB once) stop at the copy limit.
        let doc = json!({"data": {"a": "x".repeat(1000)}});
        let mut ops = vec![r#"{"op":"add","path":"/data/l","value":[]}"#.to_string()];
        for _ in 0..24 {
            ops.push(r#"{"op":"copy","from":"/data","path":"/data/l/-"}"#.into());
        }
        let err = json_patch(&doc, format!("[{}]", ops.join(",")).as_bytes()).unwrap_err();
        assert_eq!(err.code(), 422);
        assert!(
            err.to_string()
                .contains("accumulated size increase of copy"),
            "{err}"
        );
        // Copying a subtree into itself, deeper each time, stops at the depth bound.
        let mut ops = vec![r#"{"op":"add","path":"/a","value":{}}"#.to_string()];
        let mut path = String::from("/a");
        for _ in 0..200 {
            ops.push(format!(r#"{{"op":"copy","from":"/a","path":"{path}/a"}}"#));
            path.push_str("/a");
        }
        let err = json_patch(&json!({}), format!("[{}]", ops.join(",")).as_bytes()).unwrap_err();
        assert!(err.to_string().contains("deeper than"), "{err}");
        // Too many operations: 413, as kube-apiserver.
        let many = format!(
            "[{}]",
            vec![r#"{"op":"test","path":"","value":{}}"#; 10_001].join(",")
        );
        let err = json_patch(&json!({}), many.as_bytes()).unwrap_err();
        assert_eq!(err.code(), 413);
    }

    #[test]
    fn merge_patch_semantics() {
        let doc = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        let out = merge_patch(&doc, br#"{"a": {"b": null, "d": 4}, "l": [3]}"#).unwrap();
        assert_eq!(out, json!({"a": {"c": 2, "d": 4}, "l": [3]}));
        assert_eq!(merge_patch(&doc, b"x").unwrap_err().code(), 400);
    }
}
