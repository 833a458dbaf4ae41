//! The scheduler with its policies as Wasm components from Plugin objects: the default policy
//! binds pods, and a policy that traps is rolled back with the reason in the profile's status.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{create, wasm};
use serde_json::{Value, json};
use wasmkube_apiserver::Server;
use wasmkube_controller::Manager;
use wasmkube_controller::module::{self, PluginKind};
use wasmkube_runtime::Runtime;
use wasmkube_scheduler::source::Plugins;

async fn until(
    manager: &Manager,
    server: &Server,
    plural: &str,
    name: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let group = if plural == "pods" { "" } else { "wasmkube.dev" };
    let version = if plural == "pods" { "v1" } else { "v1alpha1" };
    let info = server
        .registry()
        .get(group, version, plural)
        .expect("served")
        .clone();
    let ns = info.namespaced.then_some("default");
    for _ in 0..500 {
        if let Some(obj) = manager.informer(&info).get(ns, name).filter(|o| check(o)) {
            return (*obj).clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{plural}/{name}: never as expected: {:#?}",
        manager.informer(&info).get(ns, name)
    );
}

fn bound(pod: &Value) -> bool {
    pod["spec"]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_policy_is_rolled_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::server(&dir).await;
    for (name, file) in [
        ("default", "wasmkube_policy_default"),
        ("trap", "test_policypanic"),
    ] {
        module::install(&server, name, PluginKind::Scheduler, &wasm(file))
            .await
            .expect("installed");
    }
    let manager = Manager::new(server.clone());
    let runtime = Arc::new(Runtime::new(dir.path().join("cache")).expect("runtime"));
    let source = Arc::new(Plugins {
        server: server.clone(),
        manager: manager.clone(),
        runtime,
    });
    let _scheduler = wasmkube_scheduler::start(server.clone(), manager.clone(), source)
        .await
        .expect("scheduler starts");
    let node = json!({"metadata": {"name": "n1"}, "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}});
    create(&server, "v1", "Node", node).await;
    let pod = |name: &str, labels: Value| {
        json!({"metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    };

    create(&server, "v1", "Pod", pod("first", json!({}))).await;
    until(&manager, &server, "pods", "first", bound).await;

    let profile = json!({"metadata": {"name": "default-scheduler"}, "spec": {"policies": [
        {"plugin": "default"}, {"plugin": "trap", "scores": [{"name": "Zero"}]}]}});
    create(
        &server,
        "wasmkube.dev/v1alpha1",
        "SchedulerProfile",
        profile,
    )
    .await;
    until(
        &manager,
        &server,
        "schedulerprofiles",
        "default-scheduler",
        |p| {
            p["status"]["phase"] == "Running"
                && p["status"]["policies"]
                    .as_str()
                    .is_some_and(|s| s.contains("trap@"))
        },
    )
    .await;
    create(&server, "v1", "Pod", pod("second", json!({}))).await;
    until(&manager, &server, "pods", "second", bound).await;

    // The trap: the pod backs off, the previous profile (the default alone) comes back, and the
    // pod is bound on the retry.
    create(&server, "v1", "Pod", pod("third", json!({"trap": "true"}))).await;
    let status = until(
        &manager,
        &server,
        "schedulerprofiles",
        "default-scheduler",
        |p| p["status"]["phase"] == "RolledBack",
    )
    .await;
    let message = status["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("policy trap") && message.contains("asked to trap"),
        "{message}"
    );
    assert!(
        !status["status"]["policies"]
            .as_str()
            .unwrap_or_default()
            .contains("trap@"),
        "{status:#}"
    );
    until(&manager, &server, "pods", "third", bound).await;
}
