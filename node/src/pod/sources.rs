//! What a pod's containers read from the API before they start: its ConfigMaps and Secrets.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use crate::api::{Api, ApiError};
use crate::container::Sources;

/// Reads the ConfigMaps and Secrets the pod refers to (a missing one is recorded as absent).
pub async fn fetch(api: &Api, pod: &Pod) -> Result<Sources, ApiError> {
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
