//! The cycle: plugin names, candidates, nodes_to_find and its rotation, node order.

use wasmkube_sdk::serde_json::json;

use super::*;
use crate::DefaultPolicy;

fn numbered(n: usize) -> DefaultPolicy {
    policy((0..n).map(|i| node(&format!("n{i}")).delta()))
}

#[test]
fn capabilities_name_the_plugins() {
    let c = DefaultPolicy::capabilities();
    assert_eq!(c.name, "default");
    assert_eq!(c.filters.len(), 9);
    assert!(
        c.scores
            .contains(&"NodeResourcesBalancedAllocation".to_string())
    );
}

#[test]
fn unknown_plugins_are_errors() {
    let mut p = numbered(1);
    let fake = FakeHost::new();
    let run = |p: &mut DefaultPolicy, config: &CycleConfig| {
        p.schedule(&fake.context(), &pod("p").build(), config)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(run(&mut p, &filters(&["Foo"])), "unknown filter plugin Foo");
    assert_eq!(
        run(&mut p, &score("ImageLocality", json!({}))),
        "unknown score plugin ImageLocality"
    );
}

#[test]
fn nodes_to_find_rotates_the_start() {
    let mut p = numbered(5);
    let config = CycleConfig {
        nodes_to_find: 2,
        ..all_filters()
    };
    let runs: Vec<(Vec<String>, u32)> = (0..3)
        .map(|_| {
            let verdict = schedule(&mut p, &pod("p").build(), &config);
            let names = feasible(&verdict).iter().map(|s| s.to_string()).collect();
            (names, verdict.evaluated)
        })
        .collect();
    let expected = [(["n0", "n1"], 2), (["n2", "n3"], 2), (["n4", "n0"], 2)];
    for ((names, evaluated), (want, want_evaluated)) in runs.iter().zip(expected) {
        assert_eq!(
            (names.clone(), *evaluated),
            (want.map(String::from).to_vec(), want_evaluated)
        );
    }
}

#[test]
fn evaluated_counts_infeasible_nodes_too() {
    let mut p = policy([
        node("n0").delta(),
        node("n1").unschedulable().delta(),
        node("n2").delta(),
        node("n3").delta(),
    ]);
    let config = CycleConfig {
        nodes_to_find: 2,
        ..all_filters()
    };
    let verdict = schedule(&mut p, &pod("p").build(), &config);
    assert_eq!(
        (feasible(&verdict), verdict.evaluated),
        (vec!["n0", "n2"], 3)
    );
    assert_eq!(failures(&verdict), [("node(s) were unschedulable", 1)]);
    let verdict = schedule(&mut p, &pod("p").build(), &config);
    assert_eq!(
        (feasible(&verdict), verdict.evaluated),
        (vec!["n3", "n0"], 2)
    );
    let all = schedule(&mut p, &pod("p").build(), &all_filters());
    assert_eq!((all.feasible.len(), all.evaluated), (3, 4));
}

#[test]
fn candidates_limit_the_nodes_and_keep_the_rotation() {
    let mut p = numbered(4);
    let config = CycleConfig {
        candidates: Some(vec!["n3".into(), "gone".into(), "n1".into()]),
        nodes_to_find: 1,
        ..all_filters()
    };
    let verdict = schedule(&mut p, &pod("p").build(), &config);
    assert_eq!(
        (feasible(&verdict), verdict.evaluated),
        (vec!["n3", "n1"], 2),
        "every candidate is looked at"
    );
    let rotating = CycleConfig {
        nodes_to_find: 1,
        ..all_filters()
    };
    let verdict = schedule(&mut p, &pod("p").build(), &rotating);
    assert_eq!(
        feasible(&verdict),
        ["n0"],
        "candidates did not move the start"
    );
}

#[test]
fn zones_are_interleaved() {
    let mut p = policy([
        node("a1").zone("a").delta(),
        node("a2").zone("a").delta(),
        node("a3").zone("a").delta(),
        node("b1").zone("b").delta(),
        node("c1").zone("c").delta(),
        node("c2").zone("c").delta(),
    ]);
    let verdict = schedule(&mut p, &pod("p").build(), &all_filters());
    assert_eq!(feasible(&verdict), ["a1", "b1", "c1", "a2", "c2", "a3"]);
    p.apply(Delta::NodeRemove("b1".into()));
    let verdict = schedule(&mut p, &pod("p").build(), &all_filters());
    assert_eq!(
        feasible(&verdict),
        ["a1", "c2", "a2", "c1", "a3"],
        "c2 took b1's slot, so it now comes first in zone c"
    );
}

#[test]
fn no_nodes_no_verdict() {
    let mut p = DefaultPolicy::default();
    let verdict = schedule(&mut p, &pod("p").build(), &all_filters());
    assert_eq!(verdict, Verdict::default());
}

#[test]
fn a_realistic_profile() {
    let mut p = policy([
        node("small")
            .allocatable(json!({"cpu": "2", "memory": "4Gi"}))
            .zone("a")
            .delta(),
        node("big")
            .allocatable(json!({"cpu": "8", "memory": "16Gi"}))
            .zone("b")
            .delta(),
        node("tainted")
            .taint("gpu", "", "NoSchedule")
            .zone("a")
            .delta(),
        pod("busy").on("small").requests("1", "1Gi").delta(),
    ]);
    let config = CycleConfig {
        scores: [
            ("TaintToleration", 3),
            ("NodeAffinity", 2),
            ("NodeResourcesFit", 1),
            ("PodTopologySpread", 2),
            ("InterPodAffinity", 2),
            ("NodeResourcesBalancedAllocation", 1),
        ]
        .iter()
        .map(|(name, weight)| plugin(name, *weight, json!({})))
        .collect(),
        ..all_filters()
    };
    let verdict = schedule(&mut p, &pod("p").requests("500m", "1Gi").build(), &config);
    assert_eq!(
        failures(&verdict),
        [("node(s) had untolerated taint {gpu: }", 1)]
    );
    // small: fit (25 + 50) / 2 = 37, balanced 0.75 vs 0.5 → 87; big: fit (93 + 93) / 2 = 93,
    // balanced 0.0625 vs 0.0625 → 100. Taints: 100 × 3 each; no affinity or spread: 0.
    assert_eq!(
        scores(&verdict),
        [("small", 300 + 37 + 87), ("big", 300 + 93 + 100)]
    );
}
