//! The SDK's error type, returned by every fallible call and by `Controller::reconcile`.

use wasmkube_model::selector::SelectorError;

use crate::types::ApiError;

/// Why an SDK call or a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The host (apiserver) refused the call.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// An object from the host did not decode into the expected type.
    #[error("cannot decode {what}: {source}")]
    Decode {
        /// What was being decoded, e.g. `pods`.
        what: String,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// An object could not be encoded as JSON.
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: String,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The host's clock did not answer RFC 3339.
    #[error("the host's clock answered {0:?}, which is not RFC 3339")]
    Clock(String),
    /// A label selector could not be parsed or converted.
    #[error("invalid label selector: {0}")]
    Selector(#[from] SelectorError),
    /// An object lacks something the operation needs (a name, a uid ...).
    #[error("{0}")]
    Invalid(String),
    /// A controller's own failure.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// A controller-defined failure with a message.
    pub fn msg(message: impl Into<String>) -> Error {
        Error::Other(message.into())
    }

    /// The API error, if the host refused the call.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Api(e) => Some(e),
            _ => None,
        }
    }

    /// True when the host answered 404 NotFound.
    pub fn is_not_found(&self) -> bool {
        self.api().is_some_and(ApiError::is_not_found)
    }

    /// True when the host answered 409 Conflict (a stale resourceVersion).
    pub fn is_conflict(&self) -> bool {
        self.api().is_some_and(ApiError::is_conflict)
    }

    /// True when the host answered 409 AlreadyExists.
    pub fn is_already_exists(&self) -> bool {
        self.api().is_some_and(ApiError::is_already_exists)
    }
}
