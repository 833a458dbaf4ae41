//! What a pod's containers read from the API before they start: its ConfigMaps and Secrets, and
//! the volumes of its PersistentVolumeClaims.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use crate::api::{Api, ApiError};
use crate::container::Sources;
use crate::storage::{self, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum SourcesError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("secret {secret:?}: the value of key {key:?} is not base64")]
    SecretValue { secret: String, key: String },
}

/// Reads the ConfigMaps and Secrets the pod refers to (a missing one is recorded as absent) and
/// finds the directories of its claims' volumes (a claim missing or not bound yet is an error:
/// the pod waits for it).
pub async fn fetch(api: &Api, pod: &Pod) -> Result<Sources, SourcesError> {
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let (config_maps, secrets) = crate::container::referenced(pod);
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
    let spec = pod.spec.as_ref();
    let node = spec
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default();
    let volumes = spec.into_iter().flat_map(|s| s.volumes.iter().flatten());
    for claim in volumes.filter_map(|v| v.persistent_volume_claim.as_ref()) {
        let name = &claim.claim_name;
        if !sources.claims.contains_key(name) {
            let dir = storage::mount_dir(api, &namespace, name, node).await?;
            sources.claims.insert(name.clone(), dir);
        }
    }
    Ok(sources)
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
