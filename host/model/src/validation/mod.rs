//! Validation of objects before they are stored: every bad field reported with its path, as Kubernetes words it.

mod core;
mod meta;
mod plugin;
mod pod_refs;
mod rbac;
mod workloads;

pub use meta::{is_dns1123_label, is_dns1123_subdomain};
pub use plugin::{MAX_CALL_TIMEOUT_MILLIS, MAX_MEMORY_BYTES, MAX_MODULE_CHUNKS, MAX_WORKERS};

use serde_json::Value;

use crate::resource::ResourceInfo;

/// Why a field is bad, with Kubernetes' `CauseType` and wording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorType {
    Required(String),
    Invalid {
        value: String,
        detail: String,
    },
    NotSupported {
        value: String,
        supported: Vec<String>,
    },
    Duplicate(String),
    NotFound(String),
    TooLong(usize),
    Forbidden(String),
}

/// One invalid field: its path (`spec.template.spec.containers[0].image`) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub error: ErrorType,
}

impl FieldError {
    /// The `reason` of a `StatusCause`.
    pub fn reason(&self) -> &'static str {
        match self.error {
            ErrorType::Required(_) => "FieldValueRequired",
            ErrorType::Invalid { .. } => "FieldValueInvalid",
            ErrorType::NotSupported { .. } => "FieldValueNotSupported",
            ErrorType::Duplicate(_) => "FieldValueDuplicate",
            ErrorType::NotFound(_) => "FieldValueNotFound",
            ErrorType::TooLong(_) => "FieldValueTooLong",
            ErrorType::Forbidden(_) => "FieldValueForbidden",
        }
    }

    /// The `message` of a `StatusCause`: the error without the field path.
    pub fn detail(&self) -> String {
        match &self.error {
            ErrorType::Required(d) if d.is_empty() => "Required value".into(),
            ErrorType::Required(d) => format!("Required value: {d}"),
            ErrorType::Invalid { value, detail } => format!("Invalid value: {value}: {detail}"),
            ErrorType::NotSupported { value, supported } => {
                let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
                format!(
                    "Unsupported value: {value}: supported values: {}",
                    list.join(", ")
                )
            }
            ErrorType::Duplicate(v) => format!("Duplicate value: {v}"),
            ErrorType::NotFound(v) => format!("Not found: {v}"),
            ErrorType::TooLong(max) => format!("Too long: must have at most {max} bytes"),
            ErrorType::Forbidden(d) => format!("Forbidden: {d}"),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.detail())
    }
}

/// Collects field errors while walking an object.
#[derive(Debug, Default)]
pub struct Errors(pub Vec<FieldError>);

impl Errors {
    pub fn required(&mut self, field: impl Into<String>, detail: &str) {
        self.push(field, ErrorType::Required(detail.into()));
    }

    /// `value` is shown as JSON: numbers bare, strings quoted.
    pub fn invalid(&mut self, field: impl Into<String>, value: &Value, detail: impl Into<String>) {
        self.push(
            field,
            ErrorType::Invalid {
                value: value.to_string(),
                detail: detail.into(),
            },
        );
    }

    pub fn not_supported(
        &mut self,
        field: impl Into<String>,
        value: &Value,
        supported: &[&'static str],
    ) {
        self.push(
            field,
            ErrorType::NotSupported {
                value: value.to_string(),
                supported: supported.iter().map(|s| s.to_string()).collect(),
            },
        );
    }

    pub fn push(&mut self, field: impl Into<String>, error: ErrorType) {
        self.0.push(FieldError {
            field: field.into(),
            error,
        });
    }

    /// Checks that an optional integer field is ≤ `max` (`path` empty for a top-level field).
    pub fn at_most(&mut self, obj: &Value, field: &str, path: &str, max: u64) {
        // A number that is no 64-bit integer is refused by the schema.
        let Some(v) = obj
            .get(field)
            .filter(|v| v.as_u64().is_some_and(|n| n > max))
        else {
            return;
        };
        let field = if path.is_empty() {
            field.to_string()
        } else {
            format!("{path}.{field}")
        };
        self.invalid(field, v, format!("must be less than or equal to {max}"));
    }

    /// Checks that an optional integer field is ≥ `min`.
    pub fn at_least(&mut self, obj: &Value, field: &str, path: &str, min: i64) {
        if let Some(v) = obj.get(field).and_then(Value::as_i64)
            && v < min
        {
            self.invalid(
                format!("{path}.{field}"),
                &Value::from(v),
                format!("must be greater than or equal to {min}"),
            );
        }
    }
}

/// The elements of the array `obj[field]`, numbered.
fn items<'a>(obj: &'a Value, field: &str) -> impl Iterator<Item = (usize, &'a Value)> + 'a {
    obj.get(field)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
}

fn str_field<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get(field).and_then(Value::as_str)
}

/// Validates an object about to be created (`old` = `None`) or to replace `old`.
pub fn validate(info: &ResourceInfo, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Errors::default();
    meta::validate_object_meta(info, obj, &mut errs);
    if let Some(structural) = &info.schema {
        crate::schema::validate(structural, obj, &mut errs);
    }
    if !info.custom {
        match (info.group.as_str(), info.kind.as_str()) {
            ("", "Pod") => workloads::validate_pod(obj, old, &mut errs),
            ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") => {
                workloads::validate_workload(&info.kind, obj, old, &mut errs)
            }
            ("batch", "Job") => workloads::validate_job(obj, old, &mut errs),
            ("batch", "CronJob") => workloads::validate_cronjob(obj, &mut errs),
            ("", "Service") => core::validate_service(obj, old, &mut errs),
            ("", "ConfigMap" | "Secret") => core::validate_data(&info.kind, obj, &mut errs),
            ("apiextensions.k8s.io", "CustomResourceDefinition") => {
                core::validate_crd(obj, &mut errs)
            }
            ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => {
                rbac::validate_role(obj, info.namespaced, &mut errs)
            }
            ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
                rbac::validate_binding(obj, old, info.namespaced, &mut errs)
            }
            ("wasmkube.dev", "Plugin") => plugin::validate_plugin(obj, &mut errs),
            ("wasmkube.dev", "PluginModule") => plugin::validate_module(obj, &mut errs),
            _ => {}
        }
    }
    errs.0
}

#[cfg(test)]
mod tests;
