//! Label and field selectors, parsed and matched the way apimachinery does it.

mod field;
mod label;
mod parser;
mod validation;

pub use field::{FieldOp, FieldRequirement, FieldSelector};
pub use label::{LabelSelector, Operator, Requirement};

/// Why a selector could not be parsed or used; messages follow Kubernetes' wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A label selector string did not parse.
    #[error("unable to parse requirement: {0}")]
    Requirement(String),
    /// A label selector string was malformed between requirements.
    #[error("{0}")]
    Syntax(String),
    /// A structured selector used an operator Kubernetes does not know.
    #[error("{0:?} is not a valid label selector operator")]
    InvalidOperator(String),
    /// A structured selector requirement was inconsistent (values vs operator) or invalid.
    #[error("{0}")]
    InvalidRequirement(String),
    /// A field selector term had no operator or a bad escape.
    #[error("{0}")]
    InvalidFieldSelector(String),
    /// The field selector names a field this kind does not index.
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
}
