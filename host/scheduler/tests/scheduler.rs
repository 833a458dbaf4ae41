//! The scheduler in a real host (apiserver, store, informers) with native policies: binding,
//! unschedulable pods retried when a node fits, a profile swap, a profile that fails to load
//! leaving the old one in force, and a slow shadow policy that delays no binding.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::create;
use serde_json::{Value, json};
use wasmkube_apiserver::Server;
use wasmkube_apiserver::plugin_logs::{Role, Version};
use wasmkube_apiserver::registry::{DeleteOptions, delete_object};
use wasmkube_controller::Manager;
use wasmkube_policy_default::DefaultPolicy;
use wasmkube_policy_preferlabel::PreferLabel;
use wasmkube_runtime::{CallError, Capabilities, CycleConfig, Delta, Verdict};
use wasmkube_scheduler::policy::{NativePolicy, Policy};
use wasmkube_scheduler::source::{Native, policy_host};

struct Host {
    server: Arc<Server>,
    manager: Arc<Manager>,
    _scheduler: wasmkube_scheduler::Scheduler,
    _dir: tempfile::TempDir,
}

async fn host() -> Host {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::server(&dir).await;
    let manager = Manager::new(server.clone());
    let log = (server.plugin_logs).writer("test", Version::new(Role::Active, "native"));
    let reads = policy_host("test", log, &server, &manager);
    let (a, b, c) = (reads.clone(), reads.clone(), reads);
    let source = Native::default()
        .with(
            "default",
            Box::new(move || Box::new(NativePolicy::<DefaultPolicy>::new(a.clone()))),
        )
        .with(
            "prefer",
            Box::new(move || Box::new(NativePolicy::<PreferLabel>::new(b.clone()))),
        )
        .with(
            "slow",
            Box::new(move || {
                Box::new(Slow {
                    policy: NativePolicy::new(c.clone()),
                    delay: Duration::from_secs(5),
                })
            }),
        );
    let scheduler = wasmkube_scheduler::start(server.clone(), manager.clone(), Arc::new(source))
        .await
        .expect("scheduler starts");
    Host {
        server,
        manager,
        _scheduler: scheduler,
        _dir: dir,
    }
}

/// The default policy, taking `delay` for every pod.
struct Slow {
    policy: NativePolicy<DefaultPolicy>,
    delay: Duration,
}

#[async_trait]
impl Policy for Slow {
    fn capabilities(&self) -> &Capabilities {
        self.policy.capabilities()
    }

    fn version(&self) -> &str {
        "slow"
    }

    async fn apply(&mut self, deltas: &[Delta]) -> Result<(), CallError> {
        self.policy.apply(deltas).await
    }

    async fn schedule(&mut self, pod: &String, config: &CycleConfig) -> Result<Verdict, CallError> {
        tokio::time::sleep(self.delay).await;
        self.policy.schedule(pod, config).await
    }
}

fn node(name: &str, cpu: &str, labels: Value) -> Value {
    json!({"metadata": {"name": name, "labels": labels},
        "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"}}})
}

fn pod(name: &str, cpu: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "busybox",
        "resources": {"requests": {"cpu": cpu}}}]}})
}

impl Host {
    fn object(&self, plural: &str, group: &str, name: &str) -> Option<Arc<Value>> {
        let info = self
            .server
            .registry()
            .get(
                group,
                if group.is_empty() { "v1" } else { "v1alpha1" },
                plural,
            )?
            .clone();
        let ns = info.namespaced.then_some("default");
        self.manager.informer(&info).get(ns, name)
    }

    async fn node_of(&self, pod: &str) -> String {
        for _ in 0..500 {
            if let Some(node) = self
                .object("pods", "", pod)
                .and_then(|p| p["spec"]["nodeName"].as_str().map(String::from))
            {
                return node;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("pod {pod} never bound: {:#?}", self.object("pods", "", pod));
    }

    async fn until(&self, what: &str, check: impl Fn(&Host) -> bool) {
        for _ in 0..500 {
            if check(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{what}: never happened");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binds_waits_for_a_fitting_node_and_swaps_profiles() {
    let h = host().await;
    create(&h.server, "v1", "Node", node("small", "1", json!({}))).await;
    create(&h.server, "v1", "Pod", pod("fits", "500m")).await;
    assert_eq!(h.node_of("fits").await, "small");
    let bound = h.object("pods", "", "fits").expect("pod");
    assert_eq!(bound["status"]["conditions"][0]["type"], "PodScheduled");
    assert_eq!(bound["status"]["conditions"][0]["status"], "True");

    // Too big for any node: reported, then scheduled once a node fits.
    create(&h.server, "v1", "Pod", pod("big", "2")).await;
    h.until("PodScheduled=False with the reasons", |h| {
        h.object("pods", "", "big").is_some_and(|p| {
            p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| {
                    c["type"] == "PodScheduled"
                        && c["reason"] == "Unschedulable"
                        && c["message"] == "0/1 nodes are available: 1 Insufficient cpu."
                })
        })
    })
    .await;
    create(
        &h.server,
        "v1",
        "Node",
        node("large", "8", json!({"tier": "gold"})),
    )
    .await;
    assert_eq!(h.node_of("big").await, "large");

    // A profile adding PreferLabel: the next pods go to the gold node.
    create(&h.server, "v1", "Node", node("plain", "8", json!({}))).await;
    let profile = json!({"metadata": {"name": "default-scheduler"}, "spec": {"policies": [
        {"plugin": "default"},
        {"plugin": "prefer", "scores": [{"name": "PreferLabel", "weight": 100, "args": {"key": "tier", "value": "gold"}}]}]}});
    create(
        &h.server,
        "wasmkube.dev/v1alpha1",
        "SchedulerProfile",
        profile,
    )
    .await;
    h.until("the profile running", |h| {
        h.object("schedulerprofiles", "wasmkube.dev", "default-scheduler")
            .is_some_and(|p| {
                p["status"]["phase"] == "Running"
                    && p["status"]["policies"]
                        .as_str()
                        .is_some_and(|s| s.contains("prefer@native"))
            })
    })
    .await;
    for i in 0..5 {
        let name = format!("gold-{i}");
        create(&h.server, "v1", "Pod", pod(&name, "100m")).await;
        assert_eq!(h.node_of(&name).await, "large");
    }

    // A profile naming a policy that does not exist: Failed, the old one stays in force.
    let info = h
        .server
        .registry()
        .get("wasmkube.dev", "v1alpha1", "schedulerprofiles")
        .expect("served")
        .clone();
    delete_object(
        &h.server,
        &info,
        None,
        "default-scheduler",
        &DeleteOptions::background(),
    )
    .await
    .expect("deleted");
    let broken = json!({"metadata": {"name": "default-scheduler"}, "spec": {"policies": [{"plugin": "missing"}]}});
    create(
        &h.server,
        "wasmkube.dev/v1alpha1",
        "SchedulerProfile",
        broken,
    )
    .await;
    h.until("the broken profile Failed", |h| {
        h.object("schedulerprofiles", "wasmkube.dev", "default-scheduler")
            .is_some_and(|p| {
                p["status"]["phase"] == "Failed"
                    && p["status"]["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("no native policy \"missing\""))
            })
    })
    .await;
    create(&h.server, "v1", "Pod", pod("still-scheduled", "100m")).await;
    h.node_of("still-scheduled").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_shadow_policy_delays_no_binding() {
    let h = host().await;
    create(&h.server, "v1", "Node", node("n", "8", json!({}))).await;
    let profile = json!({"metadata": {"name": "default-scheduler"}, "spec": {
        "policies": [{"plugin": "default"}],
        "shadow": {"policies": [{"plugin": "slow"}]}}});
    create(
        &h.server,
        "wasmkube.dev/v1alpha1",
        "SchedulerProfile",
        profile,
    )
    .await;
    h.until("the profile running with its shadow", |h| {
        h.object("schedulerprofiles", "wasmkube.dev", "default-scheduler")
            .is_some_and(|p| {
                p["status"]["phase"] == "Running"
                    && p["status"]["shadow"]["policies"]
                        .as_str()
                        .is_some_and(|s| s.contains("slow"))
            })
    })
    .await;

    // The shadow takes 5 s a pod; binding waits for none of it.
    let started = Instant::now();
    for i in 0..4 {
        create(&h.server, "v1", "Pod", pod(&format!("p{i}"), "100m")).await;
    }
    for i in 0..4 {
        assert_eq!(h.node_of(&format!("p{i}")).await, "n");
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(4), "binding took {elapsed:?}");

    // The shadow still compares, on its own time.
    for _ in 0..600 {
        let compared = h
            .object("schedulerprofiles", "wasmkube.dev", "default-scheduler")
            .and_then(|p| p["status"]["shadow"]["pods"].as_u64())
            .unwrap_or(0);
        if compared >= 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the shadow never compared a pod");
}
