//! The scheduler with its policies as Wasm components from Plugin objects: the default policy
//! binds pods, a policy that traps is rolled back with the reason in the profile's status, and a
//! change of a policy's limits loads it again.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{create, wasm};
use serde_json::{Value, json};
use wasmkube_apiserver::Server;
use wasmkube_apiserver::registry::{Update, update_with};
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

/// A scheduler whose policies are the Plugins `(name, built plugin)` of `policies`.
async fn scheduler(
    dir: &tempfile::TempDir,
    policies: &[(&str, &str)],
) -> (Arc<Server>, Arc<Manager>, wasmkube_scheduler::Scheduler) {
    let server = common::server(dir).await;
    for (name, file) in policies {
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
    let scheduler = wasmkube_scheduler::start(server.clone(), manager.clone(), source)
        .await
        .expect("scheduler starts");
    (server, manager, scheduler)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policys_new_limits_load_it_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, _manager, scheduler) =
        scheduler(&dir, &[("default", "wasmkube_policy_default")]).await;
    let mut swaps = scheduler.shared.swaps_applied.subscribe();
    swaps
        .wait_for(|n| *n > 0)
        .await
        .expect("the default profile runs");
    swaps.mark_unchanged();
    let plugins = server
        .registry()
        .get("wasmkube.dev", "v1alpha1", "plugins")
        .expect("served")
        .clone();
    update_with(
        &server,
        &Update::internal(&plugins, None, "default"),
        |cur| {
            let mut new = cur.clone();
            new["spec"]["limits"] = json!({"callTimeoutMillis": 5000});
            Ok(new)
        },
        &mut Vec::new(),
    )
    .await
    .expect("limits changed");
    tokio::time::timeout(Duration::from_secs(10), swaps.changed())
        .await
        .expect("loaded again with the new limits")
        .expect("scheduler running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_policy_is_rolled_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, manager, _scheduler) = scheduler(
        &dir,
        &[
            ("default", "wasmkube_policy_default"),
            ("trap", "test_policypanic"),
        ],
    )
    .await;
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
