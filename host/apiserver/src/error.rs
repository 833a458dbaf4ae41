//! `ApiError`: every failure of a request, turned into a Kubernetes `Status` with the right HTTP code.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{Value, json};
use wasmkube_model::resource::ResourceInfo;
use wasmkube_model::validation::FieldError;
use wasmkube_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{resource} \"{name}\" not found")]
    NotFound { resource: String, name: String },
    #[error("the server could not find the requested resource")]
    UnknownResource,
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists { resource: String, name: String },
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {reason}")]
    Conflict {
        resource: String,
        name: String,
        reason: String,
    },
    #[error("{message}")]
    ApplyConflict { message: String, causes: Vec<Value> },
    #[error("{kind} \"{name}\" is invalid: {}", join_errors(.errors))]
    Invalid {
        kind: String,
        group: String,
        name: String,
        errors: Vec<FieldError>,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Forbidden(String),
    /// Refused by authorization: `resource` (in `group`) named `name`, and why.
    #[error("{}", denied_message(.group, .resource, .name, .message))]
    Denied {
        group: String,
        resource: String,
        name: String,
        message: String,
    },
    #[error("too old resource version: {requested} ({compacted})")]
    Gone { requested: i64, compacted: i64 },
    #[error(
        "Timeout: Too large resource version: {requested}, current resource version: {current}"
    )]
    TooLargeResourceVersion { requested: i64, current: i64 },
    #[error("the request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    /// A request within the body limit that asks for too much (a patch's operations).
    #[error("{0}")]
    EntityTooLarge(String),
    #[error(
        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    )]
    UnsupportedPatch,
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    #[error("Unauthorized")]
    Unauthorized,
    /// Over the in-flight request limit: the client is told to retry after a second.
    #[error("Too many requests, please try again later.")]
    TooManyRequests,
    #[error("store: {0}")]
    Store(StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

fn join_errors(errors: &[FieldError]) -> String {
    match errors {
        [one] => one.to_string(),
        many => format!(
            "[{}]",
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Upstream's `NewForbidden` message: `pods "web" is forbidden: ...`.
fn denied_message(group: &str, resource: &str, name: &str, message: &str) -> String {
    let qualified = match group {
        "" => resource.to_string(),
        group => format!("{resource}.{group}"),
    };
    match (resource, name) {
        ("", _) => format!("forbidden: {message}"),
        (_, "") => format!("{qualified} is forbidden: {message}"),
        (_, name) => format!("{qualified} {name:?} is forbidden: {message}"),
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Compacted {
                requested,
                compacted,
            } => ApiError::Gone {
                requested,
                compacted,
            },
            StoreError::FutureRevision { requested, current } => {
                ApiError::TooLargeResourceVersion { requested, current }
            }
            StoreError::TooLarge { .. } => ApiError::BodyTooLarge(3 * 1024 * 1024),
            other => ApiError::Store(other),
        }
    }
}

impl ApiError {
    pub fn not_found(info: &ResourceInfo, name: &str) -> Self {
        ApiError::NotFound {
            resource: info.qualified_resource(),
            name: name.to_string(),
        }
    }

    /// `user` may not do what `attributes` describe (a 403 in kube-apiserver's words).
    pub fn forbidden(attributes: &crate::auth::Attributes, user: &str) -> Self {
        ApiError::Denied {
            group: attributes.api_group.clone(),
            resource: attributes.resource.clone(),
            name: attributes.name.clone(),
            message: attributes.forbidden_message(user),
        }
    }

    /// [`ApiError::forbidden`] and why, as upstream's authorizers append their reason.
    pub fn forbidden_because(
        attributes: &crate::auth::Attributes,
        user: &str,
        reason: &str,
    ) -> Self {
        let mut error = Self::forbidden(attributes, user);
        if let ApiError::Denied { message, .. } = &mut error
            && !reason.is_empty()
        {
            message.push_str(": ");
            message.push_str(reason);
        }
        error
    }

    pub fn conflict(info: &ResourceInfo, name: &str) -> Self {
        ApiError::Conflict {
            resource: info.qualified_resource(),
            name: name.to_string(),
            reason: "the object has been modified; please apply your changes to the latest version and try again".into(),
        }
    }

    pub fn invalid(info: &ResourceInfo, name: &str, errors: Vec<FieldError>) -> Self {
        ApiError::Invalid {
            kind: info.qualified_kind(),
            group: info.group.clone(),
            name: name.to_string(),
            errors,
        }
    }

    pub fn code(&self) -> StatusCode {
        match self {
            ApiError::NotFound { .. } | ApiError::UnknownResource => StatusCode::NOT_FOUND,
            ApiError::AlreadyExists { .. }
            | ApiError::Conflict { .. }
            | ApiError::ApplyConflict { .. } => StatusCode::CONFLICT,
            ApiError::Invalid { .. } | ApiError::Unprocessable(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(_) | ApiError::Denied { .. } => StatusCode::FORBIDDEN,
            ApiError::Gone { .. } => StatusCode::GONE,
            ApiError::TooLargeResourceVersion { .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::BodyTooLarge(_) | ApiError::EntityTooLarge(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::UnsupportedPatch => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Store(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } | ApiError::UnknownResource => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => "Conflict",
            ApiError::Invalid { .. } | ApiError::Unprocessable(_) => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Forbidden(_) | ApiError::Denied { .. } => "Forbidden",
            ApiError::Gone { .. } => "Expired",
            ApiError::TooLargeResourceVersion { .. } => "Timeout",
            ApiError::BodyTooLarge(_) | ApiError::EntityTooLarge(_) => "RequestEntityTooLarge",
            ApiError::UnsupportedPatch => "UnsupportedMediaType",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::TooManyRequests => "TooManyRequests",
            ApiError::Store(_) | ApiError::Internal(_) => "InternalError",
        }
    }

    fn details(&self) -> Option<Value> {
        match self {
            ApiError::NotFound { resource, name }
            | ApiError::AlreadyExists { resource, name }
            | ApiError::Conflict { resource, name, .. } => {
                let (kind, group) = resource.split_once('.').unwrap_or((resource, ""));
                Some(json!({"name": name, "group": group, "kind": kind}))
            }
            ApiError::ApplyConflict { causes, .. } => Some(json!({"causes": causes})),
            ApiError::TooManyRequests => Some(json!({"retryAfterSeconds": 1})),
            ApiError::Denied {
                group,
                resource,
                name,
                ..
            } => {
                let mut details = json!({});
                for (field, value) in [("name", name), ("group", group), ("kind", resource)] {
                    if !value.is_empty() {
                        details[field] = json!(value);
                    }
                }
                Some(details)
            }
            ApiError::Invalid {
                kind,
                group,
                name,
                errors,
            } => Some(json!({
                "name": name,
                "group": group,
                "kind": kind.split('.').next().unwrap_or(kind),
                "causes": errors.iter().map(|e| json!({
                    "reason": e.reason(),
                    "message": e.detail(),
                    "field": e.field,
                })).collect::<Vec<_>>(),
            })),
            _ => None,
        }
    }

    /// The `Status` object of this error.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code().as_u16(),
        });
        if let Some(details) = self.details() {
            status["details"] = details;
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if matches!(self, ApiError::Store(_) | ApiError::Internal(_)) {
            tracing::error!(error = %self, "request failed");
        }
        let retry =
            matches!(self, ApiError::TooManyRequests).then_some([(http::header::RETRY_AFTER, "1")]);
        (self.code(), retry, axum::Json(self.status())).into_response()
    }
}
