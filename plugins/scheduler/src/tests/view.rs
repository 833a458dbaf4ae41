//! The view kept from deltas: pods before their node, moves, removals, node changes.

use wasmkube_sdk::ObjectKey;
use wasmkube_sdk::serde_json::json;

use super::*;

/// Schedules a pod requesting 3 of the nodes' 4 cpus: the feasible nodes are those with at
/// most 1 cpu requested.
fn roomy(p: &mut DefaultPolicy) -> Vec<String> {
    let verdict = schedule(p, &pod("p").requests("3", "0").build(), &all_filters());
    feasible(&verdict).iter().map(|s| s.to_string()).collect()
}

#[test]
fn pods_before_their_node_count_when_it_arrives() {
    let mut p = policy([pod("early").on("n1").requests("2", "0").delta()]);
    p.apply(node("n1").delta());
    p.apply(node("n2").delta());
    assert_eq!(roomy(&mut p), ["n2"]);
}

#[test]
fn a_pod_that_moves_frees_its_old_node() {
    let mut p = policy([
        node("n1").delta(),
        node("n2").delta(),
        pod("mover").on("n1").requests("2", "0").delta(),
    ]);
    assert_eq!(roomy(&mut p), ["n2"]);
    p.apply(pod("mover").on("n2").requests("2", "0").delta());
    assert_eq!(roomy(&mut p), ["n1"]);
    p.apply(Delta::PodRemove(ObjectKey::new("default", "mover")));
    assert_eq!(roomy(&mut p), ["n1", "n2"]);
    p.apply(Delta::PodRemove(ObjectKey::new("default", "never-seen")));
    assert_eq!(roomy(&mut p), ["n1", "n2"]);
}

#[test]
fn failed_pods_and_replaced_pods() {
    let mut p = policy([
        node("n1").delta(),
        pod("a").on("n1").requests("1", "0").delta(),
        pod("a").on("n1").requests("2", "0").delta(),
    ]);
    assert!(roomy(&mut p).is_empty(), "the upsert replaced 1 cpu with 2");
    p.apply(pod("a").on("n1").requests("2", "0").phase("Failed").delta());
    assert_eq!(roomy(&mut p), ["n1"]);
}

#[test]
fn removed_nodes_keep_their_pods_for_when_they_return() {
    let mut p = policy([
        node("n1").delta(),
        node("n2").delta(),
        node("n3").delta(),
        pod("on-1").on("n1").requests("2", "0").delta(),
        pod("on-3").on("n3").requests("2", "0").delta(),
    ]);
    p.apply(Delta::NodeRemove("n1".into()));
    assert_eq!(
        roomy(&mut p),
        ["n2"],
        "n3 moved into n1's slot with its pod"
    );
    p.apply(pod("on-3").on("n3").requests("1", "0").delta());
    assert_eq!(roomy(&mut p), ["n3", "n2"]);
    p.apply(node("n1").delta());
    assert_eq!(roomy(&mut p), ["n3", "n2"], "n1 came back with its pod");
    p.apply(Delta::PodRemove(ObjectKey::new("default", "on-1")));
    assert_eq!(roomy(&mut p), ["n3", "n2", "n1"]);
    p.apply(Delta::NodeRemove("gone".into()));
}

#[test]
fn node_updates_keep_the_pods() {
    let mut p = policy([
        node("n1").delta(),
        pod("big").on("n1").requests("2", "0").delta(),
    ]);
    p.apply(node("n1").allocatable(json!({"cpu": "5"})).delta());
    assert_eq!(roomy(&mut p), ["n1"], "5 cpus, 2 requested");
    p.apply(
        node("n1")
            .allocatable(json!({"cpu": "5"}))
            .taint("x", "", "NoSchedule")
            .delta(),
    );
    assert!(roomy(&mut p).is_empty());
}
