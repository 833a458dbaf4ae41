//! What a request is about: the resource path (`/apis/apps/v1/namespaces/ns/deployments/web/scale`), the query options, and the body decoded.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use wasmkube_model::bounded;
use wasmkube_model::resource::{Registry, ResourceInfo};

use crate::error::ApiError;
use crate::objects;

/// A parsed resource path.
#[derive(Clone, Debug)]
pub struct Target {
    pub info: Arc<ResourceInfo>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

impl Target {
    /// The object name, or 405 for a collection path.
    pub fn name(&self) -> Result<&str, ApiError> {
        self.name.as_deref().ok_or(ApiError::MethodNotAllowed)
    }

    pub fn ns(&self) -> Option<&str> {
        self.namespace.as_deref()
    }
}

/// Parses the part of a path after `/api/` or `/apis/`.
pub fn parse(registry: &Registry, path: &str) -> Result<Target, ApiError> {
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::UnknownResource),
    };
    let lookup = |plural: &str| {
        registry
            .get(group, version, plural)
            .cloned()
            .ok_or(ApiError::UnknownResource)
    };
    let target = |info, namespace: Option<&str>, name: Option<&str>, sub: Option<&str>| Target {
        info,
        namespace: namespace.map(String::from),
        name: name.map(String::from),
        subresource: sub.map(String::from),
    };
    let namespaced_plural = |plural: &str| lookup(plural).ok().filter(|info| info.namespaced);
    match rest {
        ["namespaces", ns, plural, tail @ ..] if namespaced_plural(plural).is_some() => {
            let info = lookup(plural)?;
            match tail {
                [] => Ok(target(info, Some(ns), None, None)),
                [name] => Ok(target(info, Some(ns), Some(name), None)),
                [name, sub] => Ok(target(info, Some(ns), Some(name), Some(sub))),
                _ => Err(ApiError::UnknownResource),
            }
        }
        [plural] => Ok(target(lookup(plural)?, None, None, None)),
        [plural, name] => Ok(target(lookup(plural)?, None, Some(name), None)),
        [plural, name, sub] => Ok(target(lookup(plural)?, None, Some(name), Some(sub))),
        _ => Err(ApiError::UnknownResource),
    }
}

/// Query options of any verb; which apply depends on the verb.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Query {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<usize>,
    #[serde(rename = "continue")]
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub watch: Option<String>,
    pub allow_watch_bookmarks: Option<String>,
    pub timeout_seconds: Option<u64>,
    pub dry_run: Option<String>,
    pub field_manager: Option<String>,
    pub field_validation: Option<String>,
    pub force: Option<String>,
    pub propagation_policy: Option<String>,
    pub grace_period_seconds: Option<i64>,
    pub orphan_dependents: Option<String>,
    pub include_object: Option<String>,
}

fn truthy(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("true" | "1"))
}

impl Query {
    pub fn is_watch(&self) -> bool {
        truthy(&self.watch)
    }

    pub fn bookmarks(&self) -> bool {
        truthy(&self.allow_watch_bookmarks)
    }

    pub fn force(&self) -> bool {
        truthy(&self.force)
    }

    pub fn dry_run(&self) -> Result<bool, ApiError> {
        match self.dry_run.as_deref() {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::BadRequest(format!(
                "Invalid dry run value: {other:?}: supported values: \"All\""
            ))),
        }
    }

    /// `Strict`, `Warn` (the default) or `Ignore`.
    pub fn field_validation(&self) -> Result<&str, ApiError> {
        match self.field_validation.as_deref() {
            None | Some("") => Ok("Warn"),
            Some(v @ ("Strict" | "Warn" | "Ignore")) => Ok(v),
            Some(other) => Err(ApiError::BadRequest(format!(
                "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
            ))),
        }
    }

    /// The revision of `resourceVersion`, `None` for unset or "0" (any revision will do).
    pub fn revision(&self) -> Result<Option<i64>, ApiError> {
        objects::parse_revision(self.resource_version.as_deref())
    }
}

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Parses a JSON or YAML body into an object.
pub fn parse_body(body: &[u8], content_type: &str) -> Result<Value, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::BodyTooLarge(MAX_BODY_BYTES));
    }
    let value: Value = if content_type.starts_with("application/vnd.kubernetes.protobuf") {
        // kubectl's typed commands (`create namespace`, `create deployment`, …) send protobuf.
        wasmkube_model::protobuf::decode(body)
            .map(|(_, _, object)| object)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?
    } else if content_type.contains("yaml") {
        bounded::yaml(body)
            .map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))?
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("error decoding JSON: {e}")))?
    };
    if !value.is_object() {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON object".into(),
        ));
    }
    if bounded::measure(&value).0 > bounded::MAX_DEPTH {
        return Err(ApiError::BadRequest(format!(
            "the object nests deeper than {} levels",
            bounded::MAX_DEPTH
        )));
    }
    Ok(value)
}

/// The field manager of a write: the `fieldManager` parameter, else the client's User-Agent
/// up to the first `/` (as Kubernetes does).
pub fn field_manager(query: Option<&str>, headers: &http::HeaderMap) -> String {
    if let Some(m) = query.filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    let agent = headers
        .get(http::header::USER_AGENT)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("unknown");
    agent.split('/').next().unwrap_or("unknown").to_string()
}

#[cfg(test)]
mod tests {
    use wasmkube_model::resource::builtins;

    use super::*;

    #[test]
    fn paths() {
        let registry = Registry::new(builtins());
        let t = parse(
            &registry,
            "/apis/apps/v1/namespaces/ns/deployments/web/scale",
        )
        .expect("valid");
        assert_eq!(
            (
                t.info.plural.as_str(),
                t.ns(),
                t.name.as_deref(),
                t.subresource.as_deref()
            ),
            ("deployments", Some("ns"), Some("web"), Some("scale"))
        );
        let t = parse(&registry, "/api/v1/namespaces/kube-system").expect("valid");
        assert_eq!(
            (t.info.kind.as_str(), t.name.as_deref()),
            ("Namespace", Some("kube-system"))
        );
        let t = parse(&registry, "/api/v1/namespaces/x/finalize").expect("valid");
        assert_eq!(
            (t.name.as_deref(), t.subresource.as_deref()),
            (Some("x"), Some("finalize"))
        );
        let t = parse(&registry, "/api/v1/pods").expect("valid");
        assert!(t.namespace.is_none() && t.name.is_none());
        assert!(parse(&registry, "/apis/nope/v1/things").is_err());
    }
}
