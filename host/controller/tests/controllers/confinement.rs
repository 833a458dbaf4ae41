//! A plugin's host does what its grants say now: a narrowed grant is refused at the next call,
//! and Events need their own grant and keep to the plugin's rate.

use crate::common;

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};
use wasmkube_controller::Manager;
use wasmkube_controller::plugin_host::{EVENT_BURST, EVENT_QPS, Grants, PluginHost, grant};
use wasmkube_runtime::{EventType, Gvr, HostApi, ObjectKey};

fn config_maps() -> Gvr {
    Gvr {
        group: String::new(),
        version: "v1".into(),
        resource: "configmaps".into(),
    }
}

/// The reasons of the Events about objects in `default`.
async fn event_reasons(server: &wasmkube_apiserver::Server) -> Vec<String> {
    common::events_in_default(server)
        .await
        .iter()
        .filter_map(|e| e["reason"].as_str().map(String::from))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_hold_at_the_next_call_and_events_are_granted_and_rate_limited() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::server(&dir).await;
    let cm: Value = common::create(
        &server,
        "v1",
        "ConfigMap",
        Some("default"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
    )
    .await;
    let manager = Manager::new(server.clone());
    let info = server
        .registry()
        .by_kind("v1", "ConfigMap")
        .expect("served")
        .clone();
    manager.informer(&info).wait_synced().await;

    let mut grants = Grants::new();
    grant(&mut grants, "", "configmaps", &["get"]);
    let host = PluginHost::new("p".into(), server.clone(), manager, grants.clone());
    let key = ObjectKey {
        namespace: "default".into(),
        name: "c".into(),
    };
    assert!(matches!(
        host.get(config_maps(), key.clone()).await,
        Ok(Some(_))
    ));

    // Events are not granted: refused.
    host.emit_event(
        cm.to_string(),
        EventType::Normal,
        "Refused".into(),
        String::new(),
    )
    .await;
    assert!(event_reasons(&server).await.is_empty());

    // Granted: a burst, then the plugin's rate.
    grant(&mut grants, "", "events", &["create"]);
    host.set_grants(Arc::new(grants));
    let started = Instant::now();
    for i in 0..(EVENT_BURST * 2) {
        let reason = format!("Burst{i}");
        host.emit_event(cm.to_string(), EventType::Normal, reason, String::new())
            .await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let recorded = event_reasons(&server).await.len() as f64;
    let most = f64::from(EVENT_BURST) + elapsed * f64::from(EVENT_QPS) + 1.0;
    assert!(
        recorded >= f64::from(EVENT_BURST) && recorded <= most,
        "{recorded} events in {elapsed:.2} s"
    );

    // Revoked: the next call is refused.
    host.set_grants(Arc::new(Grants::new()));
    let refused = host.get(config_maps(), key).await.expect_err("revoked");
    assert_eq!(refused.code, 403, "{refused:?}");
}
