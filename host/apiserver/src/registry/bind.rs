//! pods/binding: a pod assigned to a node, once.

use serde_json::{Value, json};
use wasmkube_model::meta::{ResourceExt, now};
use wasmkube_model::resource::ResourceInfo;

use super::write::{Update, update_with};
use crate::error::ApiError;
use crate::server::Server;

/// Assigns the pod `name` to `node`, once, as a Binding does: sets `spec.nodeName` and the
/// `PodScheduled=True` condition. A pod already assigned or being deleted is a 409.
pub async fn bind_pod(
    server: &Server,
    pods: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    node: &str,
) -> Result<Value, ApiError> {
    let update = Update {
        subresource: Some("binding"),
        ..Update::internal(pods, ns, name)
    };
    let conflict = |reason: String| ApiError::Conflict {
        resource: "pods".into(),
        name: name.to_string(),
        reason,
    };
    update_with(
        server,
        &update,
        |cur| {
            if let Some(existing) = cur
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                return Err(conflict(format!(
                    "pod {name} is already assigned to node {existing:?}"
                )));
            }
            if cur.is_deleting() {
                return Err(conflict(
                    "pod is being deleted, cannot be assigned to a host".into(),
                ));
            }
            let mut new = cur.clone();
            new["spec"]["nodeName"] = json!(node);
            let now = now();
            let scheduled = json!({"type": "PodScheduled", "status": "True",
                "lastProbeTime": null, "lastTransitionTime": now});
            let conditions = new["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut conditions: Vec<Value> = conditions
                .into_iter()
                .filter(|c| c["type"] != "PodScheduled")
                .collect();
            conditions.insert(0, scheduled);
            new["status"]["conditions"] = Value::Array(conditions);
            Ok(new)
        },
        &mut Vec::new(),
    )
    .await
}
