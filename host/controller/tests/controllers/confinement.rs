//! A plugin's host calls are authorized by RBAC as its ServiceAccount, at each call: what its
//! ClusterRole lacks is a 403 in kube-apiserver's words, a deleted binding holds from the next
//! call on, and Events need `create` on events and keep to the plugin's rate.

use crate::common;

use std::time::Instant;

use serde_json::{Value, json};
use wasmkube_apiserver::auth::plugin;
use wasmkube_apiserver::plugin_logs::{Role, Version};
use wasmkube_apiserver::registry::{DeleteOptions, delete_object};
use wasmkube_controller::Manager;
use wasmkube_controller::plugin_host::{EVENT_BURST, EVENT_QPS, PluginHost};
use wasmkube_model::resource::RBAC_GROUP;
use wasmkube_runtime::{EventType, Gvr, HostApi, ObjectKey};

fn core(resource: &str) -> Gvr {
    Gvr {
        group: String::new(),
        version: "v1".into(),
        resource: resource.into(),
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
async fn rbac_decides_each_call_and_a_deleted_binding_holds_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::rbac_server(&dir).await;
    let cm: Value = common::create(
        &server,
        "v1",
        "ConfigMap",
        Some("default"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
    )
    .await;
    common::create(
        &server,
        "v1",
        "Secret",
        Some("default"),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "c"}}),
    )
    .await;
    let digest = format!("sha256:{}", "0".repeat(64));
    let object = common::create(
        &server,
        "wasmkube.dev/v1alpha1",
        "Plugin",
        None,
        json!({"metadata": {"name": "p"}, "spec": {"kind": "Controller", "module": {"digest": digest, "chunks": 1}}}),
    )
    .await;
    let manager = Manager::new(server.clone());
    let info = server
        .registry()
        .by_kind("v1", "ConfigMap")
        .expect("served")
        .clone();
    manager.informer(&info).wait_synced().await;

    let read = json!([{"group": "", "resources": ["configmaps"], "verbs": ["get"]}]);
    plugin::ensure(&server, &object, &plugin::rules(&read))
        .await
        .expect("identity written");
    let log = (server.plugin_logs).writer("p", Version::new(Role::Active, "test"));
    let host = PluginHost::new(
        "p".into(),
        plugin::user("p"),
        server.clone(),
        manager.clone(),
        log,
    );
    let key = ObjectKey {
        namespace: "default".into(),
        name: "c".into(),
    };
    assert!(matches!(
        host.get(core("configmaps"), key.clone()).await,
        Ok(Some(_))
    ));

    // Its role lacks secrets: a 403 in kube-apiserver's words.
    let refused = host
        .get(core("secrets"), key.clone())
        .await
        .expect_err("secrets are not in its role");
    assert_eq!(refused.code, 403, "{refused:?}");
    assert_eq!(
        refused.message,
        r#"secrets "c" is forbidden: User "system:serviceaccount:kube-system:plugin-p" cannot get resource "secrets" in API group "" in the namespace "default""#
    );

    // Events are not in its role: refused.
    host.emit_event(
        cm.to_string(),
        EventType::Normal,
        "Refused".into(),
        String::new(),
    )
    .await;
    assert!(event_reasons(&server).await.is_empty());

    // In its role: a burst, then the plugin's rate.
    let with_events = json!([{"group": "", "resources": ["configmaps"], "verbs": ["get"]},
        {"group": "", "resources": ["events"], "verbs": ["create"]}]);
    plugin::ensure(&server, &object, &plugin::rules(&with_events))
        .await
        .expect("identity written");
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

    // Its binding deleted: the very next call is refused.
    let bindings = server
        .registry()
        .get(RBAC_GROUP, "v1", "clusterrolebindings")
        .expect("served")
        .clone();
    delete_object(
        &server,
        &bindings,
        None,
        &plugin::role("p"),
        &DeleteOptions::background(),
    )
    .await
    .expect("binding deleted");
    let refused = host
        .get(core("configmaps"), key)
        .await
        .expect_err("unbound");
    assert_eq!(refused.code, 403, "{refused:?}");
}
