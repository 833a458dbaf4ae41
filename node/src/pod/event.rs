//! Events the agent records about a pod's containers, as the kubelet's `kubectl describe` shows.

use chrono::Utc;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use crate::api::Api;

/// Records a `Warning` Event about container `container` of `pod`; failing to is only logged.
pub async fn warn(api: &Api, node: &str, pod: &Pod, container: &str, reason: &str, message: &str) {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let now = Utc::now();
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": format!("{name}.{:x}", now.timestamp_nanos_opt().unwrap_or_default()),
            "namespace": namespace,
        },
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": name,
            "namespace": namespace,
            "uid": pod.metadata.uid,
            "fieldPath": format!("spec.containers{{{container}}}"),
        },
        "reason": reason,
        "message": message,
        "type": "Warning",
        "count": 1,
        "firstTimestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "lastTimestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "source": {"component": "kubelet", "host": node},
        "reportingComponent": "kubelet",
        "reportingInstance": node,
    });
    let path = format!("/api/v1/namespaces/{namespace}/events");
    if let Err(e) = api.create(&path, &event).await {
        tracing::warn!(pod = %name, %reason, error = %e, "recording an event");
    }
}
