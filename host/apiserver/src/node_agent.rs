//! What a node agent writes about itself and its pods, for nodes simulated in-process (tests, benchmarks): Lease renewals and the final delete of a stopped pod.

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

use wasmkube_model::names::LEASE_NAMESPACE;

use crate::error::ApiError;
use crate::registry::{
    DeleteOptions, Update, WriteOptions, create_object, delete_object, update_with,
};
use crate::server::Server;

/// Renews the Lease of `node` (creating it the first time) with the time now, as a kubelet does
/// every 10 s: the node's heartbeat.
pub async fn renew_lease(server: &Server, node: &str) -> Result<(), ApiError> {
    let registry = server.registry();
    let info = registry
        .by_kind("coordination.k8s.io/v1", "Lease")
        .ok_or_else(|| ApiError::Internal("leases are not served".into()))?;
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
    let update = Update::internal(info, Some(LEASE_NAMESPACE), node);
    let renew = |cur: &Value| {
        let mut lease = cur.clone();
        lease["spec"]["renewTime"] = json!(now);
        Ok(lease)
    };
    match update_with(server, &update, renew, &mut Vec::new()).await {
        Err(ApiError::NotFound { .. }) => {
            let lease = json!({"metadata": {"name": node}, "spec": {"holderIdentity": node,
                "leaseDurationSeconds": 40, "renewTime": now}});
            let created = create_object(
                server,
                info,
                Some(LEASE_NAMESPACE),
                lease,
                WriteOptions::INTERNAL,
                &mut Vec::new(),
            )
            .await;
            match created {
                Err(ApiError::AlreadyExists { .. }) => Ok(()),
                other => other.map(|_| ()),
            }
        }
        other => other.map(|_| ()),
    }
}

/// Finishes the deletion of `pod` once its node has stopped it: deletes it with a grace period
/// of 0, if it is still the same pod. A pod already gone is not an error.
pub async fn finish_deletion(server: &Server, pod: &Value) -> Result<(), ApiError> {
    let registry = server.registry();
    let info = registry
        .by_kind("v1", "Pod")
        .ok_or_else(|| ApiError::Internal("pods are not served".into()))?;
    let meta = &pod["metadata"];
    let name = meta["name"].as_str().unwrap_or_default();
    let opts = DeleteOptions::stopped(meta["uid"].as_str().map(String::from));
    match delete_object(server, info, meta["namespace"].as_str(), name, &opts).await {
        Ok(_) | Err(ApiError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}
