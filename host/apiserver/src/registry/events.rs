//! Events the host records about objects, correlated as Kubernetes' event recorder does.

use serde_json::{Value, json};
use wasmkube_model::event::EventType;
use wasmkube_model::meta::now;

use super::write::{Update, WriteOptions, create_object, update_with};
use crate::error::ApiError;
use crate::server::Server;

/// FNV-1a: a hash that stays the same across builds and restarts, for Event names.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Records a core Event about `regarding` as `component` reports it. The same report about the
/// same object again (same type, reason and message) is one Event whose `count` and
/// `lastTimestamp` go up, named `<object>.<hash of the report>`. Events about cluster-scoped
/// objects go to `default`, as Kubernetes puts them.
pub async fn record(
    server: &Server,
    component: &str,
    regarding: &Value,
    kind: EventType,
    reason: &str,
    message: &str,
) -> Result<(), ApiError> {
    let registry = server.registry();
    let info = registry
        .by_kind("v1", "Event")
        .ok_or_else(|| ApiError::Internal("events are not served".into()))?;
    let meta = &regarding["metadata"];
    let namespace = meta["namespace"].as_str().unwrap_or("default");
    let report = format!(
        "{}\n{component}\n{}\n{reason}\n{message}",
        meta["uid"].as_str().unwrap_or_default(),
        kind.as_str()
    );
    let name = format!(
        "{}.{:016x}",
        meta["name"].as_str().unwrap_or_default(),
        fnv1a(&report)
    );
    let now = now();
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name},
        "involvedObject": {
            "apiVersion": regarding["apiVersion"], "kind": regarding["kind"], "name": meta["name"],
            "namespace": meta["namespace"], "uid": meta["uid"], "resourceVersion": meta["resourceVersion"],
        },
        "reason": reason,
        "message": message,
        "type": kind.as_str(),
        "source": {"component": component},
        "reportingComponent": component,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    });
    let created = create_object(
        server,
        info,
        Some(namespace),
        event,
        WriteOptions::INTERNAL,
        &mut Vec::new(),
    )
    .await;
    match created {
        Err(ApiError::AlreadyExists { .. }) => {
            let update = Update::internal(info, Some(namespace), &name);
            let seen_again = |cur: &Value| {
                let mut seen = cur.clone();
                seen["count"] = json!(cur["count"].as_i64().unwrap_or(1) + 1);
                seen["lastTimestamp"] = json!(now);
                Ok(seen)
            };
            update_with(server, &update, seen_again, &mut Vec::new())
                .await
                .map(|_| ())
        }
        other => other.map(|_| ()),
    }
}
