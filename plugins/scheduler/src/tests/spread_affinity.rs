//! The PodTopologySpread and InterPodAffinity filters.

use wasmkube_sdk::k8s_openapi::api::core::v1::Namespace;
use wasmkube_sdk::serde_json::{self, Value, json};

use super::*;

const SKEW: &str = "node(s) didn't match pod topology spread constraints";
const MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";
const AFFINITY: &str = "node(s) didn't match pod affinity rules";
const ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
const EXISTING_ANTI_AFFINITY: &str = "node(s) didn't satisfy existing pods anti-affinity rules";
const ZONE: &str = "topology.kubernetes.io/zone";
const HOSTNAME: &str = "kubernetes.io/hostname";

fn web(name: &str) -> PodBuilder {
    pod(name).labels(&[("app", "web")])
}

/// A web pod spread over zones with maxSkew 1, plus `extra` fields of the constraint.
fn spread_web(extra: Value) -> Pod {
    let mut constraint = json!({
        "maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "web"}},
    });
    super::merge(&mut constraint, extra);
    web("p")
        .labels(&[("pod-template-hash", "v2")])
        .spec(json!({"topologySpreadConstraints": [constraint]}))
        .build()
}

/// Zone a: a1 with two web pods, a2; zone b: b1 with one; c1 without a zone. In zone b also
/// a web pod of another namespace and a terminating one, neither of which counts.
fn spread_cluster() -> DefaultPolicy {
    policy([
        node("a1").zone("a").delta(),
        node("a2").zone("a").delta(),
        node("b1").zone("b").delta(),
        node("c1").delta(),
        web("w1")
            .on("a1")
            .labels(&[("pod-template-hash", "v1")])
            .delta(),
        web("w2")
            .on("a1")
            .labels(&[("pod-template-hash", "v1")])
            .delta(),
        web("w3")
            .on("b1")
            .labels(&[("pod-template-hash", "v1")])
            .delta(),
        web("w4").on("b1").namespace("other").delta(),
        web("w5")
            .on("b1")
            .meta(json!({"deletionTimestamp": "2025-01-01T00:00:00Z"}))
            .delta(),
    ])
}

#[test]
fn spread_over_zones_with_max_skew_1() {
    let mut p = spread_cluster();
    let config = filters(&["PodTopologySpread"]);
    let verdict = schedule(&mut p, &spread_web(json!({})), &config);
    assert_eq!(feasible(&verdict), ["b1"]);
    assert_eq!(failures(&verdict), [(SKEW, 2), (MISSING_LABEL, 1)]);

    p.apply(web("w6").on("b1").delta());
    let verdict = schedule(&mut p, &spread_web(json!({})), &config);
    assert_eq!(feasible(&verdict), ["a1", "b1", "a2"], "a 2, b 2: both fit");

    p.apply(web("w7").on("a2").delta());
    let verdict = schedule(&mut p, &spread_web(json!({})), &config);
    assert_eq!(feasible(&verdict), ["b1"]);
    let other_app = pod("p")
        .labels(&[("app", "api")])
        .spec(json!({"topologySpreadConstraints": [{
            "maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "web"}},
        }]}))
        .build();
    let verdict = schedule(&mut p, &other_app, &config);
    assert_eq!(
        feasible(&verdict),
        ["a1", "b1", "a2"],
        "a pod that does not match adds no skew"
    );
}

#[test]
fn min_domains_makes_the_minimum_zero() {
    let mut p = spread_cluster();
    let config = filters(&["PodTopologySpread"]);
    let verdict = schedule(&mut p, &spread_web(json!({"minDomains": 3})), &config);
    assert!(verdict.feasible.is_empty());
    assert_eq!(failures(&verdict), [(SKEW, 3), (MISSING_LABEL, 1)]);
    let verdict = schedule(&mut p, &spread_web(json!({"minDomains": 2})), &config);
    assert_eq!(feasible(&verdict), ["b1"]);
}

#[test]
fn match_label_keys_narrow_the_selector() {
    let mut p = spread_cluster();
    let config = filters(&["PodTopologySpread"]);
    let revision = spread_web(json!({"matchLabelKeys": ["pod-template-hash"]}));
    let verdict = schedule(&mut p, &revision, &config);
    assert_eq!(
        feasible(&verdict),
        ["a1", "b1", "a2"],
        "no v2 pod anywhere: every zone fits"
    );
}

#[test]
fn schedule_anyway_constraints_do_not_filter() {
    let mut p = spread_cluster();
    let soft = spread_web(json!({"whenUnsatisfiable": "ScheduleAnyway"}));
    let verdict = schedule(&mut p, &soft, &filters(&["PodTopologySpread"]));
    assert_eq!(verdict.feasible.len(), 4);
}

#[test]
fn node_affinity_policy_decides_which_domains_count() {
    let mut p = policy([
        node("a1").zone("a").labels(&[("disk", "ssd")]).delta(),
        node("a2").zone("a").labels(&[("disk", "ssd")]).delta(),
        node("c1").zone("c").delta(),
        web("w1").on("a1").delta(),
    ]);
    let config = filters(&["PodTopologySpread"]);
    let on_ssd = |policy: &str| {
        web("p")
            .spec(json!({
                "nodeSelector": {"disk": "ssd"},
                "topologySpreadConstraints": [{
                    "maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
                    "labelSelector": {"matchLabels": {"app": "web"}},
                    "nodeAffinityPolicy": policy,
                }],
            }))
            .build()
    };
    let verdict = schedule(&mut p, &on_ssd("Honor"), &config);
    assert_eq!(
        feasible(&verdict),
        ["a1", "c1", "a2"],
        "zone c does not count: the minimum is zone a's 1"
    );
    let verdict = schedule(&mut p, &on_ssd("Ignore"), &config);
    assert_eq!(feasible(&verdict), ["c1"], "zone c counts with 0 pods");
}

/// n1 and n2 in zone a, n3 in zone b, n4 without a zone; a web pod on n1.
fn affinity_cluster() -> DefaultPolicy {
    policy([
        node("n1").zone("a").delta(),
        node("n2").zone("a").delta(),
        node("n3").zone("b").delta(),
        node("n4").delta(),
        web("w1").on("n1").labels(&[("version", "v1")]).delta(),
    ])
}

fn term(selector: Value, key: &str) -> Value {
    json!({"labelSelector": selector, "topologyKey": key})
}

fn requiring(kind: &str, terms: Value) -> PodBuilder {
    pod("p").spec(json!({"affinity": {
        kind: {"requiredDuringSchedulingIgnoredDuringExecution": terms}
    }}))
}

fn app(name: &str) -> Value {
    json!({"matchLabels": {"app": name}})
}

#[test]
fn anti_affinity_by_hostname_and_zone() {
    let mut p = affinity_cluster();
    let config = filters(&["InterPodAffinity"]);
    let by_host = requiring("podAntiAffinity", json!([term(app("web"), HOSTNAME)])).build();
    let verdict = schedule(&mut p, &by_host, &config);
    assert_eq!(feasible(&verdict), ["n3", "n4", "n2"]);
    assert_eq!(failures(&verdict), [(ANTI_AFFINITY, 1)]);
    let by_zone = requiring("podAntiAffinity", json!([term(app("web"), ZONE)])).build();
    let verdict = schedule(&mut p, &by_zone, &config);
    assert_eq!(feasible(&verdict), ["n3", "n4"]);
    assert_eq!(failures(&verdict), [(ANTI_AFFINITY, 2)]);
    let other_version = requiring(
        "podAntiAffinity",
        json!([{"labelSelector": app("web"), "topologyKey": HOSTNAME, "matchLabelKeys": ["version"]}]),
    )
    .labels(&[("version", "v2")])
    .build();
    let verdict = schedule(&mut p, &other_version, &config);
    assert_eq!(
        verdict.feasible.len(),
        4,
        "matchLabelKeys: only v2 pods repel"
    );
}

#[test]
fn existing_pods_anti_affinity() {
    let mut p = affinity_cluster();
    p.apply(
        requiring("podAntiAffinity", json!([term(app("web"), ZONE)]))
            .on("n3")
            .delta(),
    );
    let config = filters(&["InterPodAffinity"]);
    let verdict = schedule(&mut p, &web("p").build(), &config);
    assert_eq!(feasible(&verdict), ["n1", "n4", "n2"]);
    assert_eq!(failures(&verdict), [(EXISTING_ANTI_AFFINITY, 1)]);
    let verdict = schedule(&mut p, &pod("p").labels(&[("app", "api")]).build(), &config);
    assert_eq!(verdict.feasible.len(), 4);
}

#[test]
fn required_affinity_to_a_zone() {
    let mut p = affinity_cluster();
    let config = filters(&["InterPodAffinity"]);
    let near_web = requiring("podAffinity", json!([term(app("web"), ZONE)])).build();
    let verdict = schedule(&mut p, &near_web, &config);
    assert_eq!(feasible(&verdict), ["n1", "n2"]);
    assert_eq!(failures(&verdict), [(AFFINITY, 2)]);
    let near_db = requiring("podAffinity", json!([term(app("db"), ZONE)])).build();
    assert!(schedule(&mut p, &near_db, &config).feasible.is_empty());
}

#[test]
fn the_first_pod_of_a_self_affine_group_goes_anywhere_with_the_key() {
    let mut p = affinity_cluster();
    p.apply(
        pod("elsewhere")
            .namespace("other")
            .labels(&[("app", "cache")])
            .on("n1")
            .delta(),
    );
    let config = filters(&["InterPodAffinity"]);
    let first = requiring("podAffinity", json!([term(app("cache"), ZONE)]))
        .labels(&[("app", "cache")])
        .build();
    let verdict = schedule(&mut p, &first, &config);
    assert_eq!(feasible(&verdict), ["n1", "n3", "n2"]);
    assert_eq!(failures(&verdict), [(AFFINITY, 1)]);
}

#[test]
fn term_namespaces_and_namespace_selectors() {
    let fake = FakeHost::new();
    let namespace = |name: &str, team: &str| -> Namespace {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {"team": team}}}))
            .unwrap()
    };
    fake.insert(&namespace("default", "red")).unwrap();
    fake.insert(&namespace("other", "blue")).unwrap();
    let mut p = affinity_cluster();
    p.apply(web("w2").namespace("other").on("n3").delta());
    let config = filters(&["InterPodAffinity"]);
    let anti = |extra: Value| {
        let mut t = term(app("web"), HOSTNAME);
        super::merge(&mut t, extra);
        requiring("podAntiAffinity", json!([t])).build()
    };
    let check =
        |p: &mut DefaultPolicy, pod: &Pod| feasible(&schedule_with(&fake, p, pod, &config)).len();
    assert_eq!(check(&mut p, &anti(json!({}))), 3, "its own namespace: n1");
    assert_eq!(
        check(&mut p, &anti(json!({"namespaces": ["other"]}))),
        3,
        "n3"
    );
    let blue = json!({"namespaceSelector": {"matchLabels": {"team": "blue"}}});
    assert_eq!(
        check(&mut p, &anti(blue)),
        3,
        "namespaces labelled blue: n3"
    );
    let all = json!({"namespaceSelector": {}});
    assert_eq!(check(&mut p, &anti(all)), 2, "every namespace: n1 and n3");

    let guard = requiring(
        "podAntiAffinity",
        json!([{"labelSelector": app("web"), "topologyKey": HOSTNAME,
                "namespaceSelector": {"matchLabels": {"team": "red"}}}]),
    )
    .namespace("other")
    .on("n4");
    p.apply(Delta::PodUpsert(Box::new(guard.build())));
    let verdict = schedule_with(&fake, &mut p, &web("p").build(), &config);
    assert_eq!(
        failures(&verdict),
        [(EXISTING_ANTI_AFFINITY, 1)],
        "the guard's selector matches the red namespace of the incoming pod"
    );
}

#[test]
fn anti_affinity_selectors_of_every_shape() {
    let mut p = policy([
        node("n1").delta(),
        node("n2").delta(),
        node("n3").delta(),
        node("n4").delta(),
        pod("web-v1")
            .on("n1")
            .labels(&[("app", "web"), ("v", "1")])
            .delta(),
        pod("web-v2")
            .on("n2")
            .labels(&[("app", "web"), ("v", "2")])
            .delta(),
        pod("db").on("n3").labels(&[("app", "db")]).delta(),
    ]);
    let config = filters(&["InterPodAffinity"]);
    let mut avoiding = |selector: Value| -> Vec<String> {
        let pod = requiring("podAntiAffinity", json!([term(selector, HOSTNAME)])).build();
        let verdict = schedule(&mut p, &pod, &config);
        feasible(&verdict).iter().map(|s| s.to_string()).collect()
    };
    let both = json!({"matchLabels": {"app": "web", "v": "2"}});
    assert_eq!(avoiding(both), ["n1", "n3", "n4"]);
    let either =
        json!({"matchExpressions": [{"key": "v", "operator": "In", "values": ["1", "2"]}]});
    assert_eq!(avoiding(either), ["n3", "n4"]);
    let not_web = json!({"matchExpressions": [
        {"key": "app", "operator": "Exists"},
        {"key": "app", "operator": "NotIn", "values": ["web"]},
    ]});
    assert_eq!(avoiding(not_web), ["n1", "n2", "n4"]);
    let versioned = json!({"matchExpressions": [{"key": "v", "operator": "Exists"}]});
    assert_eq!(avoiding(versioned), ["n3", "n4"]);
    assert_eq!(
        avoiding(json!({})),
        ["n4"],
        "an empty selector matches every pod"
    );
    let without_selector = requiring("podAntiAffinity", json!([{"topologyKey": HOSTNAME}])).build();
    let verdict = schedule(&mut p, &without_selector, &config);
    assert_eq!(verdict.feasible.len(), 4, "no selector matches no pod");
}

#[test]
fn existing_anti_affinity_terms_of_every_shape_and_their_removal() {
    let guard = |name: &str, node: &str, selector: Value| {
        requiring("podAntiAffinity", json!([term(selector, HOSTNAME)]))
            .meta(json!({"name": name}))
            .on(node)
            .delta()
    };
    let mut p = policy([
        node("n1").delta(),
        node("n2").delta(),
        node("n3").delta(),
        guard("by-value", "n1", json!({"matchLabels": {"app": "web"}})),
        guard(
            "by-exists",
            "n2",
            json!({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}),
        ),
        guard("everything", "n3", json!({})),
    ]);
    let config = filters(&["InterPodAffinity"]);
    let ok = |p: &mut DefaultPolicy, labels: &[(&str, &str)]| -> Vec<String> {
        let verdict = schedule(p, &pod("p").labels(labels).build(), &config);
        feasible(&verdict).iter().map(|s| s.to_string()).collect()
    };
    assert_eq!(ok(&mut p, &[("app", "web")]), ["n2"]);
    assert_eq!(ok(&mut p, &[("tier", "x")]), ["n1"]);
    assert_eq!(ok(&mut p, &[("app", "api")]), ["n1", "n2"]);
    p.apply(Delta::PodRemove(wasmkube_sdk::ObjectKey::new(
        "default",
        "everything",
    )));
    p.apply(Delta::PodRemove(wasmkube_sdk::ObjectKey::new(
        "default", "by-value",
    )));
    assert_eq!(ok(&mut p, &[("app", "web")]), ["n1", "n2", "n3"]);
    assert_eq!(ok(&mut p, &[("tier", "x")]), ["n1", "n3"]);
}

#[test]
fn domains_follow_node_label_changes() {
    let mut p = spread_cluster();
    let config = filters(&["PodTopologySpread"]);
    assert_eq!(
        feasible(&schedule(&mut p, &spread_web(json!({})), &config)),
        ["b1"]
    );
    // a1 (two pods) moves to zone c: a 0, b 1, c 2; only zone a is at the minimum.
    p.apply(node("a1").zone("c").delta());
    let verdict = schedule(&mut p, &spread_web(json!({})), &config);
    assert_eq!(feasible(&verdict), ["a2"]);
    // A new node in a new zone d, also empty.
    p.apply(node("d1").zone("d").delta());
    let verdict = schedule(&mut p, &spread_web(json!({})), &config);
    assert_eq!(feasible(&verdict), ["a2", "d1"]);
    assert_eq!(failures(&verdict), [(SKEW, 2), (MISSING_LABEL, 1)]);
}
