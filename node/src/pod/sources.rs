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
        sources.config_maps.insert(name, data(object, false));
    }
    for name in secrets {
        let object = api
            .get(&format!("/api/v1/namespaces/{namespace}/secrets/{name}"))
            .await?;
        sources.secrets.insert(name, data(object, true));
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

/// An object's `data` as text, base64-decoded for a Secret.
fn data(object: Option<Value>, decode: bool) -> Option<BTreeMap<String, String>> {
    object.map(|o| {
        o.get("data")
            .and_then(Value::as_object)
            .map(|d| {
                d.iter()
                    .map(|(k, v)| {
                        let text = v.as_str().unwrap_or_default().to_string();
                        let value = if decode { decode_secret(&text) } else { text };
                        (k.clone(), value)
                    })
                    .collect()
            })
            .unwrap_or_default()
    })
}

fn decode_secret(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default()
}
