//! The node controllers through the API: pod CIDRs, node health with paused time (a silent node becomes Unknown and tainted at 40 s, and recovers), NoExecute taint eviction, default tolerations.

use crate::apiserver as common;

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Api, FrozenTime, pause_for_real, until};
use http::StatusCode;
use serde_json::{Value, json};
use wasmkube_apiserver::config::ClusterCidr;
use wasmkube_apiserver::{ClusterConfig, node_agent};
use wasmkube_controller::native;
use wasmkube_model::names::LEASE_NAMESPACE;

const NOT_READY: &str = "node.kubernetes.io/not-ready";
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// A server with its controllers and the `kube-node-lease` namespace.
async fn cluster(config: ClusterConfig) -> Api {
    let api = Api::with_config(config).await;
    native::spawn(api.server.clone());
    let ns = json!({"metadata": {"name": LEASE_NAMESPACE}});
    let (code, _) = api.call("POST", "/api/v1/namespaces", Some(ns)).await;
    assert_eq!(code, StatusCode::CREATED);
    api
}

/// A wall-clock time `ago` seconds back, as Kubernetes writes times.
fn time_ago(ago: i64) -> String {
    (chrono::Utc::now() - chrono::TimeDelta::seconds(ago))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A Ready condition with a heartbeat `ago` seconds back, as a kubelet posts it.
fn ready_ago(status: &str, ago: i64) -> Value {
    json!({"type": "Ready", "status": status, "reason": "KubeletReady",
        "lastHeartbeatTime": time_ago(ago), "lastTransitionTime": time_ago(ago)})
}

/// A Ready condition with a heartbeat now.
fn ready(status: &str) -> Value {
    ready_ago(status, 0)
}

async fn create_node(api: &Api, name: &str, conditions: Value) {
    let node = json!({"metadata": {"name": name}, "status": {"conditions": conditions}});
    let (code, created) = api.call("POST", "/api/v1/nodes", Some(node)).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
}

/// Creates a node and waits until the controllers have seen it (it has a pod CIDR), so its
/// heartbeat counts from before any time the test lets pass.
async fn register_node(api: &Api, name: &str, conditions: Value) {
    create_node(api, name, conditions).await;
    until("the node seen", async || {
        !cidr(&node(api, name).await).is_empty()
    })
    .await;
}

async fn node(api: &Api, name: &str) -> Value {
    api.call("GET", &format!("/api/v1/nodes/{name}"), None)
        .await
        .1
}

async fn post_status(api: &Api, name: &str, conditions: Value) {
    let (code, _) = api
        .raw(
            "PATCH",
            &format!("/api/v1/nodes/{name}/status"),
            "application/merge-patch+json",
            json!({"status": {"conditions": conditions}}).to_string(),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
}

fn condition<'a>(node: &'a Value, kind: &str) -> &'a Value {
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
        .unwrap_or(&Value::Null)
}

/// `key:effect` of each taint.
fn taints(node: &Value) -> Vec<String> {
    node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "{}:{}",
                t["key"].as_str().unwrap_or(""),
                t["effect"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn pair(key: &str) -> Vec<String> {
    vec![format!("{key}:NoSchedule"), format!("{key}:NoExecute")]
}

fn cidr(node: &Value) -> &str {
    node["spec"]["podCIDR"].as_str().unwrap_or("")
}

async fn advance(seconds: u64) {
    tokio::time::advance(Duration::from_secs(seconds)).await;
}

/// Enough real time for the controllers to act on what they have seen (before checking that
/// something did not happen).
async fn settle() {
    pause_for_real(Duration::from_millis(200)).await;
}

/// Waits until the controllers have taken in every write so far, so that time let pass next
/// does not pass before they see them: a node created now gets its pod CIDR only once they got
/// to it, after everything written before.
async fn caught_up(api: &Api) {
    static MARKERS: AtomicUsize = AtomicUsize::new(0);
    let name = format!("marker-{}", MARKERS.fetch_add(1, Ordering::Relaxed));
    register_node(api, &name, json!([])).await;
}

#[tokio::test]
async fn a_silent_node_becomes_unknown_and_tainted_and_recovers() {
    let _time = FrozenTime::new();
    let api = cluster(ClusterConfig::default()).await;
    create_node(&api, "n1", json!([ready("True")])).await;
    node_agent::renew_lease(&api.server, "n1")
        .await
        .expect("renewed");
    until("n1 gets a pod CIDR", async || {
        cidr(&node(&api, "n1").await) == "10.244.0.0/24"
    })
    .await;
    caught_up(&api).await;

    advance(39).await;
    settle().await;
    let n1 = node(&api, "n1").await;
    assert_eq!(
        condition(&n1, "Ready")["status"],
        "True",
        "39 s of silence is fine"
    );
    assert!(taints(&n1).is_empty());
    let heartbeat = condition(&n1, "Ready")["lastHeartbeatTime"].clone();

    advance(2).await;
    until("n1 unreachable", async || {
        taints(&node(&api, "n1").await) == pair(UNREACHABLE)
    })
    .await;
    let n1 = node(&api, "n1").await;
    let ready_now = condition(&n1, "Ready");
    assert_eq!(ready_now["status"], "Unknown");
    assert_eq!(ready_now["reason"], "NodeStatusUnknown");
    assert_eq!(ready_now["message"], "Kubelet stopped posting node status.");
    assert_eq!(
        ready_now["lastHeartbeatTime"], heartbeat,
        "the heartbeat is kept"
    );
    for kind in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        assert_eq!(condition(&n1, kind)["status"], "Unknown", "{kind}");
    }
    assert!(n1["spec"]["taints"][1]["timeAdded"].is_string());

    // The kubelet is back: its Lease renews and it posts Ready again; the taints go, and the
    // node has another grace period from there.
    node_agent::renew_lease(&api.server, "n1")
        .await
        .expect("renewed");
    post_status(&api, "n1", json!([ready("True")])).await;
    until("n1 untainted", async || {
        taints(&node(&api, "n1").await).is_empty()
    })
    .await;
    advance(30).await;
    node_agent::renew_lease(&api.server, "n1")
        .await
        .expect("renewed");
    caught_up(&api).await;
    advance(30).await;
    settle().await;
    assert_eq!(
        condition(&node(&api, "n1").await, "Ready")["status"],
        "True",
        "the Lease keeps it Ready"
    );

    // A node that says it is not ready gets the not-ready taints.
    post_status(&api, "n1", json!([ready("False")])).await;
    until("n1 not ready", async || {
        taints(&node(&api, "n1").await) == pair(NOT_READY)
    })
    .await;
}

#[tokio::test]
async fn a_node_that_never_reported_is_unknown_after_the_grace_period() {
    let _time = FrozenTime::new();
    let config = ClusterConfig {
        node_monitor_grace_period: Duration::from_secs(120),
        ..ClusterConfig::default()
    };
    let api = cluster(config).await;
    register_node(&api, "quiet", json!([])).await;
    advance(100).await;
    settle().await;
    assert!(
        taints(&node(&api, "quiet").await).is_empty(),
        "the grace period is 120 s"
    );
    advance(21).await;
    until("quiet unreachable", async || {
        taints(&node(&api, "quiet").await) == pair(UNREACHABLE)
    })
    .await;
    let quiet = node(&api, "quiet").await;
    let ready_now = condition(&quiet, "Ready");
    assert_eq!(ready_now["status"], "Unknown");
    assert_eq!(ready_now["reason"], "NodeStatusNeverUpdated");
}

#[tokio::test]
async fn after_a_restart_a_node_that_reported_gets_a_whole_grace_period() {
    let _time = FrozenTime::new();
    let api = Api::new().await;
    let controllers = native::spawn(api.server.clone());
    // Its heartbeat was written 35 s ago (wall clock): the controllers count from when they see
    // it, not from when it was written.
    register_node(&api, "n1", json!([ready_ago("True", 35)])).await;
    advance(30).await;
    settle().await;
    assert!(taints(&node(&api, "n1").await).is_empty());
    controllers.abort();
    let _ = controllers.await;
    native::spawn(api.server.clone());
    // The new controllers are at work, past their first list.
    caught_up(&api).await;

    advance(30).await;
    settle().await;
    assert!(
        taints(&node(&api, "n1").await).is_empty(),
        "95 s since its heartbeat, 30 s since the restart"
    );
    advance(11).await;
    until("n1 unreachable", async || {
        taints(&node(&api, "n1").await) == pair(UNREACHABLE)
    })
    .await;
}

/// Creates a pod on `node` with `tolerations` (beside the defaults admission adds).
async fn bound_pod(api: &Api, name: &str, node: &str, tolerations: Value) {
    let pod = json!({"metadata": {"name": name}, "spec": {"nodeName": node, "tolerations": tolerations,
        "containers": [{"name": "c", "image": "busybox"}]}});
    let (code, created) = api
        .call("POST", "/api/v1/namespaces/default/pods", Some(pod))
        .await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
}

async fn terminating(api: &Api, name: &str) -> bool {
    let (_, pod) = api
        .call(
            "GET",
            &format!("/api/v1/namespaces/default/pods/{name}"),
            None,
        )
        .await;
    pod["metadata"]["deletionTimestamp"].is_string()
}

#[tokio::test]
async fn pods_are_evicted_from_an_unreachable_node_after_their_toleration_seconds() {
    let _time = FrozenTime::new();
    let api = cluster(ClusterConfig::default()).await;
    register_node(&api, "n1", json!([ready("True")])).await;
    let for_a_minute = json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}]);
    bound_pod(&api, "defaults", "n1", json!([])).await;
    bound_pod(&api, "minute", "n1", for_a_minute).await;
    bound_pod(&api, "forever", "n1", json!([{"operator": "Exists"}])).await;

    advance(41).await;
    until("n1 unreachable", async || {
        taints(&node(&api, "n1").await) == pair(UNREACHABLE)
    })
    .await;
    caught_up(&api).await;
    advance(59).await;
    settle().await;
    assert!(!terminating(&api, "minute").await, "tolerated for 60 s");
    advance(2).await;
    until("the one-minute pod evicted", async || {
        terminating(&api, "minute").await
    })
    .await;
    let (_, minute) = api
        .call("GET", "/api/v1/namespaces/default/pods/minute", None)
        .await;
    assert_eq!(
        minute["metadata"]["deletionGracePeriodSeconds"], 30,
        "through the graceful path"
    );
    until("an Event saying why", async || {
        let (_, events) = api
            .call("GET", "/api/v1/namespaces/default/events", None)
            .await;
        events["items"].as_array().into_iter().flatten().any(|e| {
            e["reason"] == "TaintManagerEviction"
                && e["involvedObject"]["name"] == "minute"
                && e["message"] == "Marking for deletion Pod default/minute"
        })
    })
    .await;
    assert!(!terminating(&api, "defaults").await);

    advance(240).await;
    until("the pod with the default 300 s evicted", async || {
        terminating(&api, "defaults").await
    })
    .await;
    advance(3600).await;
    settle().await;
    assert!(
        !terminating(&api, "forever").await,
        "tolerates everything for good"
    );
}

#[tokio::test]
async fn an_untolerated_no_execute_taint_evicts_at_once() {
    let api = cluster(ClusterConfig::default()).await;
    create_node(&api, "gpu", json!([ready("True")])).await;
    bound_pod(&api, "plain", "gpu", json!([])).await;
    let tolerant =
        json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoExecute"}]);
    bound_pod(&api, "tolerant", "gpu", tolerant).await;
    let taint =
        json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoExecute"}]}});
    let (code, _) = api
        .raw(
            "PATCH",
            "/api/v1/nodes/gpu",
            "application/merge-patch+json",
            taint.to_string(),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    until("plain evicted", async || terminating(&api, "plain").await).await;
    settle().await;
    assert!(!terminating(&api, "tolerant").await);
}

#[tokio::test]
async fn pods_get_the_default_tolerations_on_create() {
    let config = ClusterConfig {
        default_toleration_seconds: 120,
        ..ClusterConfig::default()
    };
    let api = Api::with_config(config).await;
    bound_pod(&api, "plain", "n1", json!([])).await;
    let own = json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]);
    bound_pod(&api, "own", "n1", own).await;
    let tolerations = async |name: &str| -> Vec<(String, i64)> {
        let (_, pod) = api
            .call(
                "GET",
                &format!("/api/v1/namespaces/default/pods/{name}"),
                None,
            )
            .await;
        pod["spec"]["tolerations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                assert_eq!(
                    (&t["operator"], &t["effect"]),
                    (&json!("Exists"), &json!("NoExecute"))
                );
                (
                    t["key"].as_str().unwrap_or("").to_string(),
                    t["tolerationSeconds"].as_i64().unwrap_or(-1),
                )
            })
            .collect()
    };
    assert_eq!(
        tolerations("plain").await,
        [(NOT_READY.to_string(), 120), (UNREACHABLE.to_string(), 120)]
    );
    assert_eq!(
        tolerations("own").await,
        [(UNREACHABLE.to_string(), 5), (NOT_READY.to_string(), 120)]
    );
}

async fn cidrs(api: &Api, names: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for name in names {
        found.push(cidr(&node(api, name).await).to_string());
    }
    found
}

#[tokio::test]
async fn pod_cidrs_are_handed_out_in_order_reused_and_kept_across_restarts() {
    let config = ClusterConfig {
        cluster_cidr: ClusterCidr::from_str("10.8.0.0/23").expect("valid"),
        ..ClusterConfig::default()
    };
    let api = Api::with_config(config).await;
    let controllers = native::spawn(api.server.clone());
    create_node(&api, "a", json!([])).await;
    until("a gets the first /24", async || {
        cidrs(&api, &["a"]).await == ["10.8.0.0/24"]
    })
    .await;
    create_node(&api, "b", json!([])).await;
    until("b gets the next", async || {
        cidrs(&api, &["b"]).await == ["10.8.1.0/24"]
    })
    .await;
    assert_eq!(
        node(&api, "b").await["spec"]["podCIDRs"],
        json!(["10.8.1.0/24"])
    );

    // The range is full: an Event says so, and the node waits.
    create_node(&api, "c", json!([])).await;
    until("a CIDRNotAvailable event", async || {
        let (_, events) = api
            .call("GET", "/api/v1/namespaces/default/events", None)
            .await;
        events["items"].as_array().into_iter().flatten().any(|e| {
            e["reason"] == "CIDRNotAvailable"
                && e["type"] == "Warning"
                && e["involvedObject"]["name"] == "c"
        })
    })
    .await;
    // Deleting a frees its CIDR for c.
    api.call("DELETE", "/api/v1/nodes/a", None).await;
    until("c gets a's CIDR", async || {
        cidrs(&api, &["c"]).await == ["10.8.0.0/24"]
    })
    .await;

    // The controllers start over (as after a restart): they read the CIDRs back from the nodes
    // and hand out none twice.
    controllers.abort();
    let _ = controllers.await;
    native::spawn(api.server.clone());
    create_node(&api, "d", json!([])).await;
    settle().await;
    assert_eq!(cidrs(&api, &["c", "d"]).await, ["10.8.0.0/24", ""]);
    api.call("DELETE", "/api/v1/nodes/b", None).await;
    until("d gets b's CIDR", async || {
        cidrs(&api, &["d"]).await == ["10.8.1.0/24"]
    })
    .await;
    assert_eq!(cidrs(&api, &["c"]).await, ["10.8.0.0/24"]);
}
