//! Score plugins and their normalization, on small hand-computed examples.

use wasmkube_sdk::serde_json::json;

use super::*;

/// Node `a` (4 cpu, 8Gi) runs a pod requesting 1 cpu and 1Gi; node `b` (2 cpu, 4Gi) is empty.
fn two_nodes() -> DefaultPolicy {
    policy([
        node("a").delta(),
        node("b")
            .allocatable(json!({"cpu": "2", "memory": "4Gi"}))
            .delta(),
        pod("existing").on("a").requests("1", "1Gi").delta(),
    ])
}

fn incoming() -> Pod {
    pod("p").requests("1", "2Gi").build()
}

#[test]
fn least_allocated() {
    // a: cpu (4000-2000)/4000 = 50, memory (8-3)/8 = 62 → 56; b: cpu 50, memory 50 → 50.
    let verdict = schedule(
        &mut two_nodes(),
        &incoming(),
        &score("NodeResourcesFit", json!({})),
    );
    assert_eq!(scores(&verdict), [("a", 56), ("b", 50)]);
}

#[test]
fn most_allocated_with_weights() {
    // a: cpu 2000/4000 = 50, memory 3/8 = 37; b: 50 and 50.
    let args =
        |resources| json!({"scoringStrategy": {"type": "MostAllocated", "resources": resources}});
    let equal = args(json!([{"name": "cpu", "weight": 1}, {"name": "memory", "weight": 1}]));
    let verdict = schedule(
        &mut two_nodes(),
        &incoming(),
        &score("NodeResourcesFit", equal),
    );
    assert_eq!(scores(&verdict), [("a", 43), ("b", 50)]);
    // (50×1 + 37×3) / 4 = 40.
    let memory_heavy = args(json!([{"name": "cpu", "weight": 1}, {"name": "memory", "weight": 3}]));
    let verdict = schedule(
        &mut two_nodes(),
        &incoming(),
        &score("NodeResourcesFit", memory_heavy),
    );
    assert_eq!(scores(&verdict), [("a", 40), ("b", 50)]);
}

#[test]
fn requested_to_capacity_ratio_rounds() {
    // Utilization a: cpu 50, memory 37 → shape scores 50 and 37 → round(43.5) = 44.
    let args = json!({"scoringStrategy": {
        "type": "RequestedToCapacityRatio",
        "requestedToCapacityRatio": {"shape": [{"utilization": 0, "score": 0}, {"utilization": 100, "score": 10}]},
    }});
    let verdict = schedule(
        &mut two_nodes(),
        &incoming(),
        &score("NodeResourcesFit", args),
    );
    assert_eq!(scores(&verdict), [("a", 44), ("b", 50)]);
    let mut p = two_nodes();
    let no_shape = json!({"scoringStrategy": {"type": "RequestedToCapacityRatio"}});
    let config = score("NodeResourcesFit", no_shape);
    assert!(
        p.schedule(&FakeHost::new().context(), &incoming(), &config)
            .is_err()
    );
}

#[test]
fn pods_without_requests_count_the_defaults() {
    // 100m of 1 cpu → 90; 200Mi of 1000Mi → 80.
    let mut p = policy([node("n")
        .allocatable(json!({"cpu": "1", "memory": "1000Mi"}))
        .delta()]);
    let verdict = schedule(
        &mut p,
        &pod("p").build(),
        &score("NodeResourcesFit", json!({})),
    );
    assert_eq!(scores(&verdict), [("n", 85)]);
}

#[test]
fn balanced_allocation() {
    // a: fractions 0.5 and 0.375 → std 0.0625 → 93; b: 0.5 and 0.5 → 100.
    let config = score("NodeResourcesBalancedAllocation", json!({}));
    let verdict = schedule(&mut two_nodes(), &incoming(), &config);
    assert_eq!(scores(&verdict), [("a", 93), ("b", 100)]);
    let verdict = schedule(&mut two_nodes(), &pod("p").build(), &config);
    assert_eq!(
        scores(&verdict),
        [("a", 0), ("b", 0)],
        "skipped for best-effort pods"
    );
}

#[test]
fn weighted_sum_of_plugins() {
    let config = CycleConfig {
        scores: vec![
            plugin("NodeResourcesFit", 2, json!({})),
            plugin("NodeResourcesBalancedAllocation", 1, json!({})),
        ],
        ..CycleConfig::default()
    };
    let verdict = schedule(&mut two_nodes(), &incoming(), &config);
    assert_eq!(scores(&verdict), [("a", 2 * 56 + 93), ("b", 2 * 50 + 100)]);
}

#[test]
fn node_affinity_preferences() {
    let mut p = policy([
        node("both")
            .labels(&[("zone", "a"), ("disk", "ssd")])
            .delta(),
        node("zone").labels(&[("zone", "a")]).delta(),
        node("none").delta(),
    ]);
    let preferring = pod("p")
        .spec(json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 2, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}},
            {"weight": 5, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
        ]}}}))
        .build();
    let mut config = score("NodeAffinity", json!({}));
    config.scores[0].weight = 2;
    // Raw 7, 2, 0 → 100, 28, 0 → × 2.
    let verdict = schedule(&mut p, &preferring, &config);
    assert_eq!(scores(&verdict), [("both", 200), ("zone", 56), ("none", 0)]);
    let verdict = schedule(&mut p, &pod("p").build(), &config);
    assert!(verdict.feasible.iter().all(|s| s.score == 0));
    let added = score(
        "NodeAffinity",
        json!({"addedAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "preference": {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}}
        ]}}),
    );
    let verdict = schedule(&mut p, &pod("p").build(), &added);
    assert_eq!(scores(&verdict), [("both", 100), ("zone", 0), ("none", 0)]);
}

#[test]
fn taint_toleration_prefers_fewer_untolerated_soft_taints() {
    let mut p = policy([
        node("two")
            .taint("a", "", "PreferNoSchedule")
            .taint("b", "", "PreferNoSchedule")
            .delta(),
        node("one").taint("a", "", "PreferNoSchedule").delta(),
        node("hard").taint("a", "", "NoSchedule").delta(),
    ]);
    let config = score("TaintToleration", json!({}));
    let verdict = schedule(&mut p, &pod("p").build(), &config);
    assert_eq!(scores(&verdict), [("two", 0), ("one", 50), ("hard", 100)]);
    let tolerating_b = pod("p")
        .spec(json!({"tolerations": [{"key": "b", "operator": "Exists", "effect": "PreferNoSchedule"}]}))
        .build();
    let verdict = schedule(&mut p, &tolerating_b, &config);
    assert_eq!(scores(&verdict), [("two", 0), ("one", 0), ("hard", 100)]);
}

#[test]
fn inter_pod_preferences_both_ways() {
    let mut p = policy([
        node("n1").zone("a").delta(),
        node("n2").zone("a").delta(),
        node("n3").zone("b").delta(),
        pod("db").on("n1").labels(&[("app", "db")]).delta(),
        pod("web").on("n2").labels(&[("app", "web")]).delta(),
    ]);
    let config = score("InterPodAffinity", json!({}));
    let term = |weight: i64, app: &str, key: &str| {
        json!({"weight": weight, "podAffinityTerm": {
            "labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key
        }})
    };
    let preferring = pod("p")
        .labels(&[("app", "api")])
        .spec(json!({"affinity": {
            "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                term(10, "db", "kubernetes.io/hostname")
            ]},
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                term(5, "web", "topology.kubernetes.io/zone")
            ]},
        }}))
        .build();
    // Raw: n1 10 - 5 = 5, n2 -5, n3 0 → min-max.
    let verdict = schedule(&mut p, &preferring, &config);
    assert_eq!(scores(&verdict), [("n1", 100), ("n3", 50), ("n2", 0)]);

    // An existing pod's preferences and required terms (hardPodAffinityWeight) count too.
    p.apply(
        pod("cache")
            .on("n3")
            .spec(json!({"affinity": {"podAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [term(4, "api", "kubernetes.io/hostname")],
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "api"}}, "topologyKey": "topology.kubernetes.io/zone"}
                ],
            }}}))
            .delta(),
    );
    let plain = pod("p").labels(&[("app", "api")]).build();
    // n3: 4 + 1 (hard weight) → 100; n1, n2: 0.
    let verdict = schedule(&mut p, &plain, &config);
    assert_eq!(scores(&verdict), [("n1", 0), ("n3", 100), ("n2", 0)]);
    let heavy = score("InterPodAffinity", json!({"hardPodAffinityWeight": 0}));
    let verdict = schedule(&mut p, &plain, &heavy);
    assert_eq!(scores(&verdict), [("n1", 0), ("n3", 100), ("n2", 0)]);
    let ignoring = score(
        "InterPodAffinity",
        json!({"ignorePreferredTermsOfExistingPods": true}),
    );
    let verdict = schedule(&mut p, &plain, &ignoring);
    assert!(verdict.feasible.iter().all(|s| s.score == 0));
}

#[test]
fn topology_spread_prefers_less_crowded_domains() {
    let mut p = policy([
        node("a1").zone("a").delta(),
        node("a2").zone("a").delta(),
        node("b1").zone("b").delta(),
        node("bare").delta(),
        pod("w1").on("a1").labels(&[("app", "web")]).delta(),
        pod("w2").on("a1").labels(&[("app", "web")]).delta(),
    ]);
    let spread = |key: &str| {
        pod("p")
            .labels(&[("app", "web")])
            .spec(json!({"topologySpreadConstraints": [{
                "maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app": "web"}},
            }]}))
            .build()
    };
    let config = score("PodTopologySpread", json!({}));
    // Zones: 2 domains, weight ln 4; a: 2 × 1.386 → 3, b: 0 → a 0, b 100; bare has no zone: 0.
    let verdict = schedule(&mut p, &spread("topology.kubernetes.io/zone"), &config);
    assert_eq!(
        scores(&verdict),
        [("a1", 0), ("b1", 100), ("bare", 0), ("a2", 0)]
    );
    // Hostnames: 4 nodes, weight ln 6; a1 has 2 → 3.6 → 4, the others 0 → 100.
    let verdict = schedule(&mut p, &spread("kubernetes.io/hostname"), &config);
    assert_eq!(
        scores(&verdict),
        [("a1", 0), ("b1", 100), ("bare", 100), ("a2", 100)]
    );
}

#[test]
fn system_default_spreading_for_replica_set_pods() {
    let fake = FakeHost::new();
    let rs: wasmkube_sdk::k8s_openapi::api::apps::v1::ReplicaSet =
        wasmkube_sdk::serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {}},
        }))
        .unwrap();
    fake.insert(&rs).unwrap();
    let owned = |name: &str| {
        pod(name).labels(&[("app", "web")]).meta(json!({"ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "rs-uid", "controller": true
        }]}))
    };
    let mut p = policy([
        node("n1").delta(),
        node("n2").delta(),
        owned("w1").on("n1").delta(),
        owned("w2").on("n1").delta(),
    ]);
    // Hostname (maxSkew 3, weight ln 4): n1 2 × 1.386 + 2 → 5, n2 → 2; the zone constraint
    // scores nothing on nodes without zones. Normalized: n1 100 × 2/5 = 40, n2 100.
    let config = score("PodTopologySpread", json!({}));
    let verdict = schedule_with(&fake, &mut p, &owned("p").build(), &config);
    assert_eq!(scores(&verdict), [("n1", 40), ("n2", 100)]);
    let verdict = schedule_with(&fake, &mut p, &pod("bare").build(), &config);
    assert_eq!(
        scores(&verdict),
        [("n1", 0), ("n2", 0)],
        "no controller, no service: no default constraints"
    );
    let listed = score(
        "PodTopologySpread",
        json!({"defaultingType": "List", "defaultConstraints": [
            {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule"}
        ]}),
    );
    let verdict = schedule_with(&fake, &mut p, &owned("p").build(), &listed);
    assert_eq!(
        scores(&verdict),
        [("n1", 0), ("n2", 0)],
        "DoNotSchedule defaults do not score"
    );
    let mut filtering = filters(&["PodTopologySpread"]);
    filtering.filters[0].args = listed.scores[0].args.clone();
    let verdict = schedule_with(&fake, &mut p, &owned("p").build(), &filtering);
    assert_eq!(feasible(&verdict), ["n2"]);
}

#[test]
fn services_selecting_the_pod_give_default_spreading() {
    let fake = FakeHost::new();
    let service: wasmkube_sdk::k8s_openapi::api::core::v1::Service =
        wasmkube_sdk::serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"}},
        }))
        .unwrap();
    fake.insert(&service).unwrap();
    let mut p = policy([
        node("n1").delta(),
        node("n2").delta(),
        pod("w1").on("n1").labels(&[("app", "web")]).delta(),
    ]);
    // Hostname (maxSkew 3, weight ln 4): n1 1.386 + 2 → 3, n2 2 → n1 100 × 2/3 = 66.
    let config = score("PodTopologySpread", json!({}));
    let web = pod("p").labels(&[("app", "web")]).build();
    let verdict = schedule_with(&fake, &mut p, &web, &config);
    assert_eq!(scores(&verdict), [("n1", 66), ("n2", 100)]);
    let api = pod("p").labels(&[("app", "api")]).build();
    let verdict = schedule_with(&fake, &mut p, &api, &config);
    assert_eq!(
        scores(&verdict),
        [("n1", 0), ("n2", 0)],
        "no service selects it"
    );
}
