//! What a pod's containers read from the API before they start: its ConfigMaps and Secrets,
//! the volumes of its PersistentVolumeClaims, and its ServiceAccount tokens.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use wasmkube_model::validation::{is_dns1123_label, is_dns1123_subdomain};

use crate::api::{Api, ApiError};
use crate::container::Sources;
use crate::storage::{self, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum SourcesError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{kind} name {name:?} is not a DNS-1123 {form}")]
    Name {
        kind: &'static str,
        name: String,
        form: &'static str,
    },
    #[error("secret {secret:?}: the value of key {key:?} is not base64")]
    SecretValue { secret: String, key: String },
    #[error("the TokenRequest for serviceaccount {0:?} was answered without a token or expiry")]
    TokenAnswer(String),
}

/// Reads the ConfigMaps and Secrets the pod refers to (a missing one is recorded as absent),
/// finds the directories of its claims' volumes (a claim missing or not bound yet is an error:
/// the pod waits for it), and gets the ServiceAccount tokens of its projected volumes (those
/// of `previous` while they are fresh).
pub async fn fetch(
    api: &Api,
    pod: &Pod,
    previous: Option<&Sources>,
) -> Result<Sources, SourcesError> {
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let (config_maps, secrets) = crate::container::referenced(pod);
    let claims = claim_names(pod);
    check_names(&namespace, &config_maps, &secrets, &claims)?;
    let mut sources = Sources {
        namespace: namespace.clone(),
        ..Sources::default()
    };
    for name in config_maps {
        let object = api
            .get(&format!("/api/v1/namespaces/{namespace}/configmaps/{name}"))
            .await?;
        sources.config_maps.insert(name, config_map_data(object));
    }
    for name in secrets {
        let object = api
            .get(&format!("/api/v1/namespaces/{namespace}/secrets/{name}"))
            .await?;
        let data = secret_data(object).map_err(|key| SourcesError::SecretValue {
            secret: name.clone(),
            key,
        })?;
        sources.secrets.insert(name, data);
    }
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default();
    for name in claims {
        let dir = storage::mount_dir(api, &namespace, &name, node).await?;
        sources.claims.insert(name, dir);
    }
    let previous = previous.map(|p| &p.tokens);
    let now = std::time::SystemTime::now();
    sources.tokens = super::tokens::fetch(api, pod, &namespace, previous, now).await?;
    Ok(sources)
}

/// The names of the pod's PersistentVolumeClaims, each once.
fn claim_names(pod: &Pod) -> Vec<String> {
    let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    let mut names: Vec<String> = volumes
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Refuses names from the pod spec that cannot be what they claim to be before they become
/// URL path segments (`../../secrets/x`): the namespace a DNS-1123 label, the ConfigMaps',
/// Secrets' and claims' names DNS-1123 subdomains.
fn check_names(
    namespace: &str,
    config_maps: &[String],
    secrets: &[String],
    claims: &[String],
) -> Result<(), SourcesError> {
    if !is_dns1123_label(namespace) {
        return Err(SourcesError::Name {
            kind: "namespace",
            name: namespace.to_string(),
            form: "label",
        });
    }
    let named = [
        ("configmap", config_maps),
        ("secret", secrets),
        ("persistentvolumeclaim", claims),
    ];
    for (kind, names) in named {
        if let Some(name) = names.iter().find(|n| !is_dns1123_subdomain(n)) {
            return Err(SourcesError::Name {
                kind,
                name: name.clone(),
                form: "subdomain",
            });
        }
    }
    Ok(())
}

/// The `data` of a ConfigMap `object`, `None` when it does not exist.
fn config_map_data(object: Option<Value>) -> Option<BTreeMap<String, String>> {
    object.map(|o| {
        o.get("data")
            .and_then(Value::as_object)
            .map(|d| {
                d.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// The `data` of a Secret `object` as bytes: base64-decoded here, once (the volumes and the
/// environment use the bytes as they are). `None` when the Secret does not exist; the key of a
/// value that is not base64 as the error.
pub(super) fn secret_data(
    object: Option<Value>,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
    use base64::Engine;
    let Some(object) = object else {
        return Ok(None);
    };
    let mut data = BTreeMap::new();
    for (key, value) in object
        .get("data")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value.as_str().unwrap_or_default())
            .map_err(|_| key.clone())?;
        data.insert(key.clone(), bytes);
    }
    Ok(Some(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_leave_their_url_segment_are_refused() {
        let ok = vec!["cm".to_string(), "a.b-c".to_string()];
        let bad = vec!["../../nodes/n1".to_string()];
        assert!(check_names("ns", &ok, &ok, &ok).is_ok());
        for (cm, secret, claim) in [(&bad, &ok, &ok), (&ok, &bad, &ok), (&ok, &ok, &bad)] {
            let err = check_names("ns", cm, secret, claim);
            assert!(matches!(err, Err(SourcesError::Name { name, .. }) if name == bad[0]));
        }
        let err = check_names("a/b", &ok, &ok, &ok);
        assert!(matches!(
            err,
            Err(SourcesError::Name {
                kind: "namespace",
                ..
            })
        ));
    }
}
