//! `POST serviceaccounts/NAME/token`: a TokenRequest answered with a signed token for the ServiceAccount, bound to a pod or Secret when asked.

use axum::response::Response;
use chrono::{TimeZone as _, Utc};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use wasmkube_model::meta::ResourceExt;
use wasmkube_model::validation::{ErrorType, FieldError};

use super::Call;
use crate::auth::token::{Claims, ObjectRef};
use crate::error::ApiError;
use crate::response;

/// The shortest lifetime a token may be asked for (upstream's).
pub const MIN_EXPIRATION_SECS: i64 = 600;
/// A token's lifetime when the request names none (upstream's).
pub const DEFAULT_EXPIRATION_SECS: i64 = 3600;
/// The longest lifetime given: longer requests are cut to it, as kube-apiserver does with
/// `--service-account-max-token-expiration`.
pub const MAX_EXPIRATION_SECS: i64 = 48 * 3600;
/// Longer than this is refused outright (upstream's 2^32 seconds).
const LIMIT_EXPIRATION_SECS: i64 = 1 << 32;
/// At most this many audiences, each at most [`MAX_AUDIENCE_LEN`] bytes, so a token stays
/// well under the size the authenticator reads.
const MAX_AUDIENCES: usize = 16;
const MAX_AUDIENCE_LEN: usize = 256;

const GROUP: &str = "authentication.k8s.io";

/// `spec` of a TokenRequest.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    audiences: Option<Vec<String>>,
    #[serde(default)]
    expiration_seconds: Option<i64>,
    #[serde(default)]
    bound_object_ref: Option<BoundRef>,
}

/// `spec.boundObjectRef`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BoundRef {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    uid: String,
}

fn invalid(name: &str, field: &str, error: ErrorType) -> ApiError {
    ApiError::Invalid {
        kind: format!("TokenRequest.{GROUP}"),
        group: GROUP.into(),
        name: name.to_string(),
        errors: vec![FieldError {
            field: field.to_string(),
            error,
        }],
    }
}

/// The lifetime a request gets, or why it gets none.
fn expiration(name: &str, asked: Option<i64>) -> Result<i64, ApiError> {
    let seconds = asked.unwrap_or(DEFAULT_EXPIRATION_SECS);
    let detail = if seconds < MIN_EXPIRATION_SECS {
        "may not specify a duration less than 10 minutes"
    } else if seconds > LIMIT_EXPIRATION_SECS {
        "may not specify a duration larger than 2^32 seconds"
    } else {
        return Ok(seconds.min(MAX_EXPIRATION_SECS));
    };
    Err(invalid(
        name,
        "spec.expirationSeconds",
        ErrorType::Invalid {
            value: seconds.to_string(),
            detail: detail.into(),
        },
    ))
}

/// The audiences asked for, or the API's when none are.
fn audiences(
    name: &str,
    asked: Option<Vec<String>>,
    api: &[String],
) -> Result<Vec<String>, ApiError> {
    let asked = asked.unwrap_or_default();
    if asked.is_empty() {
        return Ok(api.to_vec());
    }
    if asked.len() > MAX_AUDIENCES {
        return Err(invalid(
            name,
            "spec.audiences",
            ErrorType::Invalid {
                value: asked.len().to_string(),
                detail: format!("must have at most {MAX_AUDIENCES} items"),
            },
        ));
    }
    for (i, audience) in asked.iter().enumerate() {
        let field = format!("spec.audiences[{i}]");
        if audience.is_empty() {
            return Err(invalid(name, &field, ErrorType::Required(String::new())));
        }
        if audience.len() > MAX_AUDIENCE_LEN {
            return Err(invalid(name, &field, ErrorType::TooLong(MAX_AUDIENCE_LEN)));
        }
    }
    Ok(asked)
}

/// The pod or Secret a token is bound to, as stored now; 404 when it is gone, 409 when its uid
/// is not the one asked for, 400 for a pod that runs as another ServiceAccount.
async fn bound_object(
    call: &Call<'_>,
    ns: &str,
    sa: &str,
    bound: &BoundRef,
) -> Result<(String, ObjectRef), ApiError> {
    if !matches!(bound.kind.as_str(), "Pod" | "Secret") {
        return Err(ApiError::BadRequest(format!(
            "cannot bind token for serviceaccount {sa:?} to object of type {:?}: only Pod and Secret are supported",
            bound.kind
        )));
    }
    if !bound.api_version.is_empty() && bound.api_version != "v1" {
        return Err(ApiError::BadRequest(format!(
            "cannot bind token to {} of apiVersion {:?}: only v1",
            bound.kind, bound.api_version
        )));
    }
    if bound.name.is_empty() {
        return Err(invalid(
            sa,
            "spec.boundObjectRef.name",
            ErrorType::Required(String::new()),
        ));
    }
    let registry = call.server.registry();
    let info = registry
        .by_kind("v1", &bound.kind)
        .ok_or(ApiError::UnknownResource)?;
    let object = call
        .server
        .objects
        .must_get(info, Some(ns), &bound.name)
        .await?
        .object;
    let uid = object.uid().unwrap_or_default().to_string();
    if !bound.uid.is_empty() && bound.uid != uid {
        return Err(ApiError::Conflict {
            resource: bound.kind.clone(),
            name: bound.name.clone(),
            reason: format!(
                "the UID in the bound object reference ({}) does not match the UID in record. The object might have been deleted and then recreated",
                bound.uid
            ),
        });
    }
    if bound.kind == "Pod" && object["spec"]["serviceAccountName"].as_str() != Some(sa) {
        return Err(ApiError::BadRequest(format!(
            "cannot bind token for serviceaccount {sa:?} to pod running with different serviceaccount name."
        )));
    }
    let r = ObjectRef {
        name: bound.name.clone(),
        uid,
    };
    Ok((bound.kind.clone(), r))
}

/// Answers a TokenRequest (201) with `status.token` and `status.expirationTimestamp`.
pub async fn request(call: &Call<'_>) -> Result<Response, ApiError> {
    let Some(issuer) = call.server.cluster.service_accounts.as_ref() else {
        return Err(ApiError::MethodNotAllowed);
    };
    let name = call.target.name()?;
    let ns = call.target.ns().unwrap_or_default();
    let body = call.object()?;
    let spec: Spec = match body.get("spec") {
        None | Some(Value::Null) => Spec::default(),
        Some(spec) => serde_json::from_value(spec.clone())
            .map_err(|e| ApiError::BadRequest(format!("decoding the TokenRequest's spec: {e}")))?,
    };
    let seconds = expiration(name, spec.expiration_seconds)?;
    let audiences = audiences(name, spec.audiences, issuer.audiences())?;
    let sa = call
        .server
        .objects
        .must_get(&call.target.info, Some(ns), name)
        .await?
        .object;
    let sa = ObjectRef {
        name: name.to_string(),
        uid: sa.uid().unwrap_or_default().to_string(),
    };
    let now = Utc::now().timestamp();
    let exp = now
        .checked_add(seconds)
        .ok_or_else(|| ApiError::BadRequest("the expiration is out of range".into()))?;
    let mut claims = Claims::new(issuer, ns, sa, audiences.clone(), now, Some(exp));
    let mut bound_json = Value::Null;
    if let Some(bound) = &spec.bound_object_ref {
        let (kind, r) = bound_object(call, ns, name, bound).await?;
        bound_json = json!({"kind": kind, "apiVersion": "v1", "name": r.name, "uid": r.uid});
        match kind.as_str() {
            "Pod" => claims.kubernetes.pod = Some(r),
            _ => claims.kubernetes.secret = Some(r),
        }
    }
    let token = issuer
        .mint(&claims)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let expires = Utc
        .timestamp_opt(exp, 0)
        .single()
        .ok_or_else(|| ApiError::BadRequest("the expiration is out of range".into()))?
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let spec_json =
        json!({"audiences": audiences, "expirationSeconds": seconds, "boundObjectRef": bound_json});
    let answer = json!({
        "kind": "TokenRequest",
        "apiVersion": format!("{GROUP}/v1"),
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
        "spec": spec_json,
        "status": {"token": token, "expirationTimestamp": expires},
    });
    Ok(response::json(StatusCode::CREATED, &answer, &[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiration_is_defaulted_bounded_and_capped() {
        assert_eq!(expiration("a", None).ok(), Some(3600));
        assert_eq!(expiration("a", Some(600)).ok(), Some(600));
        assert_eq!(expiration("a", Some(3607)).ok(), Some(3607));
        assert_eq!(
            expiration("a", Some(365 * 86400)).ok(),
            Some(MAX_EXPIRATION_SECS)
        );
        assert_eq!(
            expiration("a", Some(599)).expect_err("short").to_string(),
            "TokenRequest.authentication.k8s.io \"a\" is invalid: spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"
        );
        assert!(expiration("a", Some(i64::MAX)).is_err());
        assert!(expiration("a", Some(-1)).is_err());
    }

    #[test]
    fn audiences_default_to_the_apis_and_are_bounded() {
        let api = vec!["https://kubernetes.default.svc.cluster.local".to_string()];
        assert_eq!(audiences("a", None, &api).ok(), Some(api.clone()));
        assert_eq!(audiences("a", Some(vec![]), &api).ok(), Some(api.clone()));
        assert_eq!(
            audiences("a", Some(vec!["vault".into()]), &api).ok(),
            Some(vec!["vault".to_string()])
        );
        assert!(audiences("a", Some(vec![String::new()]), &api).is_err());
        assert!(audiences("a", Some(vec!["x".repeat(257)]), &api).is_err());
        assert!(audiences("a", Some(vec!["x".into(); 17]), &api).is_err());
    }
}
