//! Built-in kinds decoded through their `k8s-openapi` types: type errors, unknown fields and normal form.

use k8s_openapi::api::{
    apps, autoscaling, batch, certificates, coordination, core, discovery, events, policy, rbac,
    storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
use schemars::JsonSchema;
use schemars::r#gen::SchemaGenerator;
use serde_json::Value;

mod quantities;

/// A built-in object after a round trip through its typed form.
#[derive(Debug, PartialEq)]
pub struct Decoded {
    /// The object as its type serializes it: unknown fields dropped, key order normalised.
    pub object: Value,
    /// Paths (`spec.foo`, `spec.template.spec.containers[0].bar`) the type does not know.
    pub unknown_fields: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The body does not fit the type (wrong JSON type for a field, bad base64, ...).
    #[error("{kind} in version \"{version}\" cannot be handled as a {kind}: {source}")]
    Type {
        kind: String,
        version: String,
        source: serde_json::Error,
    },
}

/// The one table of built-in kinds with a `k8s-openapi` type, keyed by (group, kind). It emits
/// [`roundtrip_for`] (used by [`decode`]) and [`schema_for`] (used by the OpenAPI documents).
macro_rules! builtin_types {
    ($(($g:literal, $k:literal) => $ty:ty,)*) => {
        /// Round-trips `value` through the type of a built-in kind; `None` for kinds without one.
        fn roundtrip_for(group: &str, kind: &str, value: &Value) -> Option<Result<Value, serde_json::Error>> {
            match (group, kind) {
                $(($g, $k) => Some(roundtrip::<$ty>(value)),)*
                _ => None,
            }
        }

        /// Adds the schema of a built-in kind and of everything it refers to to `generator`;
        /// returns the kind's definition name (`io.k8s.api.apps.v1.Deployment`), `None` for kinds
        /// without a type.
        pub(crate) fn schema_for(group: &str, kind: &str, generator: &mut SchemaGenerator) -> Option<String> {
            match (group, kind) {
                $(($g, $k) => {
                    generator.subschema_for::<$ty>();
                    Some(<$ty as JsonSchema>::schema_name())
                })*
                _ => None,
            }
        }
    };
}

builtin_types! {
    ("", "Namespace") => core::v1::Namespace,
    ("", "Pod") => core::v1::Pod,
    ("", "Service") => core::v1::Service,
    ("", "Endpoints") => core::v1::Endpoints,
    ("", "ConfigMap") => core::v1::ConfigMap,
    ("", "Secret") => core::v1::Secret,
    ("", "ServiceAccount") => core::v1::ServiceAccount,
    ("", "Node") => core::v1::Node,
    ("", "Event") => core::v1::Event,
    ("", "PersistentVolume") => core::v1::PersistentVolume,
    ("", "PersistentVolumeClaim") => core::v1::PersistentVolumeClaim,
    ("", "Binding") => core::v1::Binding,
    ("apps", "Deployment") => apps::v1::Deployment,
    ("apps", "ReplicaSet") => apps::v1::ReplicaSet,
    ("apps", "StatefulSet") => apps::v1::StatefulSet,
    ("apps", "DaemonSet") => apps::v1::DaemonSet,
    ("apps", "ControllerRevision") => apps::v1::ControllerRevision,
    ("batch", "Job") => batch::v1::Job,
    ("batch", "CronJob") => batch::v1::CronJob,
    ("coordination.k8s.io", "Lease") => coordination::v1::Lease,
    ("events.k8s.io", "Event") => events::v1::Event,
    ("discovery.k8s.io", "EndpointSlice") => discovery::v1::EndpointSlice,
    ("storage.k8s.io", "StorageClass") => storage::v1::StorageClass,
    ("rbac.authorization.k8s.io", "Role") => rbac::v1::Role,
    ("rbac.authorization.k8s.io", "ClusterRole") => rbac::v1::ClusterRole,
    ("rbac.authorization.k8s.io", "RoleBinding") => rbac::v1::RoleBinding,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding") => rbac::v1::ClusterRoleBinding,
    ("certificates.k8s.io", "CertificateSigningRequest") => certificates::v1::CertificateSigningRequest,
    ("apiextensions.k8s.io", "CustomResourceDefinition") => apiextensions::v1::CustomResourceDefinition,
    ("autoscaling", "Scale") => autoscaling::v1::Scale,
    ("policy", "Eviction") => policy::v1::Eviction,
}

fn roundtrip<T: serde::de::DeserializeOwned + serde::Serialize>(
    value: &Value,
) -> Result<Value, serde_json::Error> {
    let typed: T = serde_json::from_value(value.clone())?;
    serde_json::to_value(typed)
}

/// Decodes a built-in kind; `None` for kinds without a type here (custom resources).
pub fn decode(
    group: &str,
    version: &str,
    kind: &str,
    value: &Value,
) -> Option<Result<Decoded, DecodeError>> {
    // `cpu: 1` is a Quantity as well as `cpu: "1"`, as Kubernetes' `Quantity.UnmarshalJSON`.
    let stringified = quantities::stringified(group, kind, value);
    let value = stringified.as_ref().unwrap_or(value);
    let result = roundtrip_for(group, kind, value)?;
    Some(
        result
            .map(|object| {
                let mut unknown_fields = Vec::new();
                unknown(value, &object, "", &mut unknown_fields);
                Decoded {
                    object,
                    unknown_fields,
                }
            })
            .map_err(|source| DecodeError::Type {
                kind: kind.to_string(),
                version: version.to_string(),
                source,
            }),
    )
}

/// Collects the paths present (and not null) in `input` but missing from `typed`.
fn unknown(input: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(input), Value::Object(typed)) => {
            for (key, value) in input {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match typed.get(key) {
                    Some(typed_value) => unknown(value, typed_value, &child, out),
                    None if !value.is_null() => out.push(child),
                    None => {}
                }
            }
        }
        (Value::Array(input), Value::Array(typed)) if input.len() == typed.len() => {
            for (i, (a, b)) in input.iter().zip(typed).enumerate() {
                unknown(a, b, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_unknown_fields_at_any_depth() {
        let input = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "bogus": 1},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"}},
                "template": {"spec": {"containers": [{"name": "c", "image": "i", "colour": "red"}]}}}
        });
        let decoded = decode("apps", "v1", "Deployment", &input)
            .expect("built-in")
            .expect("decodes");
        assert_eq!(
            decoded.unknown_fields,
            vec!["metadata.bogus", "spec.template.spec.containers[0].colour"]
        );
        assert_eq!(decoded.object["spec"]["replicas"], 2);
        assert!(decoded.object["metadata"].get("bogus").is_none());
    }

    #[test]
    fn wrong_types_are_errors_naming_the_kind() {
        let input =
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": "x"}});
        let err = decode("apps", "v1", "Deployment", &input)
            .expect("built-in")
            .expect_err("bad type");
        assert!(
            err.to_string()
                .starts_with("Deployment in version \"v1\" cannot be handled as a Deployment")
        );
    }

    #[test]
    fn custom_kinds_are_not_typed() {
        assert!(decode("example.com", "v1", "Widget", &json!({})).is_none());
    }
}
