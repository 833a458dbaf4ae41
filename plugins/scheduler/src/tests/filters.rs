//! Each filter's pass and fail with Kubernetes' reasons, the resource math, and how failures
//! are aggregated.

use wasmkube_sdk::k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, PodSpec};
use wasmkube_sdk::k8s_openapi::api::storage::v1::StorageClass;
use wasmkube_sdk::serde_json::{self, json};
use wasmkube_sdk::testing::FakeHost;

use super::*;
use crate::requests::PodRequest;

#[test]
fn unschedulable_nodes_unless_tolerated() {
    let mut p = policy([node("a").unschedulable().delta(), node("b").delta()]);
    let config = filters(&["NodeUnschedulable"]);
    let verdict = schedule(&mut p, &pod("p").build(), &config);
    assert_eq!(feasible(&verdict), ["b"]);
    assert_eq!(failures(&verdict), [("node(s) were unschedulable", 1)]);
    let tolerant = pod("p").spec(json!({"tolerations": [{
        "key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"
    }]}));
    let verdict = schedule(&mut p, &tolerant.build(), &config);
    assert_eq!(feasible(&verdict), ["a", "b"]);
}

#[test]
fn node_name_must_match() {
    let mut p = policy([node("a").delta(), node("b").delta()]);
    let pinned = pod("p").spec(json!({"nodeName": "b"})).build();
    let verdict = schedule(&mut p, &pinned, &filters(&["NodeName"]));
    assert_eq!(feasible(&verdict), ["b"]);
    assert_eq!(
        failures(&verdict),
        [("node(s) didn't match the requested node name", 1)]
    );
}

#[test]
fn untolerated_taints_name_the_first_taint() {
    let mut p = policy([
        node("gpu").taint("dedicated", "gpu", "NoSchedule").delta(),
        node("broken")
            .taint("soft", "", "PreferNoSchedule")
            .taint("broken", "", "NoExecute")
            .delta(),
        node("soft").taint("soft", "", "PreferNoSchedule").delta(),
    ]);
    let config = filters(&["TaintToleration"]);
    let verdict = schedule(&mut p, &pod("p").build(), &config);
    assert_eq!(feasible(&verdict), ["soft"]);
    assert_eq!(
        failures(&verdict),
        [
            ("node(s) had untolerated taint {broken: }", 1),
            ("node(s) had untolerated taint {dedicated: gpu}", 1),
        ]
    );
    let tolerations = |t| pod("p").spec(json!({"tolerations": t})).build();
    let equal = tolerations(json!([{"key": "dedicated", "operator": "Equal", "value": "gpu"}]));
    assert_eq!(
        feasible(&schedule(&mut p, &equal, &config)),
        ["gpu", "soft"]
    );
    let wrong = tolerations(json!([{"key": "dedicated", "value": "cpu"}]));
    assert_eq!(feasible(&schedule(&mut p, &wrong, &config)), ["soft"]);
    let everything = tolerations(json!([{"operator": "Exists"}]));
    assert_eq!(feasible(&schedule(&mut p, &everything, &config)).len(), 3);
    let other_effect = tolerations(json!([{"operator": "Exists", "effect": "NoSchedule"}]));
    assert_eq!(
        feasible(&schedule(&mut p, &other_effect, &config)),
        ["gpu", "soft"]
    );
}

#[test]
fn node_selector_and_required_affinity() {
    let mut p = policy([
        node("ssd-a").labels(&[("disk", "ssd")]).zone("a").delta(),
        node("ssd-b").labels(&[("disk", "ssd")]).zone("b").delta(),
        node("hdd-a").labels(&[("disk", "hdd")]).zone("a").delta(),
        node("big").labels(&[("cores", "64")]).delta(),
    ]);
    let config = filters(&["NodeAffinity"]);
    let selected = pod("p")
        .spec(json!({"nodeSelector": {"disk": "ssd"}}))
        .build();
    let verdict = schedule(&mut p, &selected, &config);
    assert_eq!(feasible(&verdict), ["ssd-a", "ssd-b"]);
    assert_eq!(
        failures(&verdict),
        [("node(s) didn't match Pod's node affinity/selector", 2)]
    );
    let required =
        |terms| {
            pod("p")
            .spec(json!({"nodeSelector": {"disk": "ssd"}, "affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}
            }}}))
            .build()
        };
    let zone_b = required(json!([{"matchExpressions": [
        {"key": "topology.kubernetes.io/zone", "operator": "NotIn", "values": ["a"]}
    ]}]));
    assert_eq!(feasible(&schedule(&mut p, &zone_b, &config)), ["ssd-b"]);
    let ored = required(json!([
        {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["b"]}]},
        {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["ssd-b"]}]},
    ]));
    assert_eq!(
        feasible(&schedule(&mut p, &ored, &config)),
        ["ssd-a", "ssd-b"]
    );
    let empty_term = required(json!([{}]));
    assert!(feasible(&schedule(&mut p, &empty_term, &config)).is_empty());
    let numeric = pod("p")
        .spec(json!({"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["32"]}]}
            ]}
        }}}))
        .build();
    assert_eq!(feasible(&schedule(&mut p, &numeric, &config)), ["big"]);
}

#[test]
fn match_fields_on_the_name_limit_the_nodes_looked_at() {
    let mut p = policy((0..5).map(|i| node(&format!("n{i}")).delta()));
    let pinned = |names: serde_json::Value| {
        pod("p")
            .spec(json!({"affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": names}]}
                ]}
            }}}))
            .build()
    };
    let verdict = schedule(&mut p, &pinned(json!(["n3"])), &all_filters());
    assert_eq!((feasible(&verdict), verdict.evaluated), (vec!["n3"], 1));
    let verdict = schedule(&mut p, &pinned(json!(["gone"])), &all_filters());
    assert_eq!((verdict.feasible.len(), verdict.evaluated), (0, 0));
    let conflicting = pod("p")
        .spec(json!({"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [
                    {"key": "metadata.name", "operator": "In", "values": ["n1"]},
                    {"key": "metadata.name", "operator": "In", "values": ["n2"]},
                ]}
            ]}
        }}}))
        .build();
    let verdict = schedule(&mut p, &conflicting, &all_filters());
    assert_eq!(failures(&verdict), [("pod affinity terms conflict", 5)]);
}

#[test]
fn added_affinity_from_args() {
    let mut p = policy([
        node("a").labels(&[("pool", "web")]).delta(),
        node("b").delta(),
    ]);
    let config = CycleConfig {
        filters: vec![plugin(
            "NodeAffinity",
            0,
            json!({"addedAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "pool", "operator": "Exists"}
                ]}]
            }}}),
        )],
        ..CycleConfig::default()
    };
    let verdict = schedule(&mut p, &pod("p").build(), &config);
    assert_eq!(feasible(&verdict), ["a"]);
    assert_eq!(
        failures(&verdict),
        [("node(s) didn't match scheduler-enforced node affinity", 1)]
    );
}

#[test]
fn host_ports_conflict_by_protocol_and_ip() {
    let ports = |ports: serde_json::Value| json!({"containers": [{"name": "c", "ports": ports}]});
    let mut p = policy([
        node("any").delta(),
        node("one-ip").delta(),
        node("free").delta(),
        pod("web")
            .on("any")
            .spec(ports(json!([{"containerPort": 80, "hostPort": 8080}])))
            .delta(),
        pod("dns")
            .on("one-ip")
            .spec(ports(json!([
                {"containerPort": 53, "hostPort": 8080, "hostIP": "10.0.0.1", "protocol": "UDP"},
                {"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"},
            ])))
            .delta(),
    ]);
    let config = filters(&["NodePorts"]);
    let wants = |port: serde_json::Value| pod("p").spec(ports(json!([port]))).build();
    let all_ips = wants(json!({"containerPort": 80, "hostPort": 8080}));
    let verdict = schedule(&mut p, &all_ips, &config);
    assert_eq!(feasible(&verdict), ["free"]);
    assert_eq!(
        failures(&verdict),
        [(
            "node(s) didn't have free ports for the requested pod ports",
            2
        )]
    );
    let other_ip = wants(json!({"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.2"}));
    assert_eq!(
        feasible(&schedule(&mut p, &other_ip, &config)),
        ["one-ip", "free"]
    );
    let sctp = wants(json!({"containerPort": 80, "hostPort": 8080, "protocol": "SCTP"}));
    assert_eq!(feasible(&schedule(&mut p, &sctp, &config)).len(), 3);
    let no_host_port = wants(json!({"containerPort": 8080}));
    assert_eq!(feasible(&schedule(&mut p, &no_host_port, &config)).len(), 3);
    p.apply(Delta::PodRemove(wasmkube_sdk::ObjectKey::new(
        "default", "web",
    )));
    assert_eq!(
        feasible(&schedule(&mut p, &all_ips, &config)),
        ["any", "free"]
    );
}

#[test]
fn each_insufficient_resource_is_a_reason() {
    let mut p = policy([
        node("small")
            .allocatable(json!({"cpu": "1", "memory": "1Gi"}))
            .delta(),
        node("no-cpu").allocatable(json!({"cpu": "1"})).delta(),
        node("full").allocatable(json!({"pods": "1"})).delta(),
        node("ok").delta(),
        pod("existing").on("full").delta(),
        pod("half").on("no-cpu").requests("500m", "0").delta(),
    ]);
    let big = pod("p").requests("2", "4Gi").build();
    let verdict = schedule(&mut p, &big, &filters(&["NodeResourcesFit"]));
    assert_eq!(feasible(&verdict), ["ok"]);
    assert_eq!(
        failures(&verdict),
        [
            ("Insufficient cpu", 2),
            ("Insufficient memory", 1),
            ("Too many pods", 1)
        ]
    );
    let fits_half = pod("p").requests("500m", "1Gi").build();
    let verdict = schedule(&mut p, &fits_half, &filters(&["NodeResourcesFit"]));
    assert_eq!(feasible(&verdict), ["small", "no-cpu", "ok"]);
}

#[test]
fn failures_aggregate_like_kubernetes_message_parts() {
    let mut p = policy([
        node("t1")
            .taint("maintenance", "true", "NoSchedule")
            .delta(),
        node("t2")
            .taint("maintenance", "true", "NoSchedule")
            .delta(),
        node("c1").allocatable(json!({"cpu": "1"})).delta(),
        node("c2").allocatable(json!({"cpu": "1"})).delta(),
        node("c3")
            .allocatable(json!({"cpu": "1", "memory": "1Gi"}))
            .delta(),
    ]);
    let verdict = schedule(
        &mut p,
        &pod("p").requests("2", "2Gi").build(),
        &all_filters(),
    );
    assert!(verdict.feasible.is_empty());
    assert_eq!(verdict.evaluated, 5);
    assert_eq!(
        failures(&verdict),
        [
            ("Insufficient cpu", 3),
            ("Insufficient memory", 1),
            ("node(s) had untolerated taint {maintenance: true}", 2),
        ]
    );
}

#[test]
fn extended_resources_and_ignored_ones() {
    let mut p = policy([
        node("gpu").allocatable(json!({"example.com/gpu": "2"})).delta(),
        node("plain").delta(),
        pod("trainer")
            .on("gpu")
            .spec(json!({"containers": [{"name": "c", "resources": {"requests": {"example.com/gpu": "1"}}}]}))
            .delta(),
    ]);
    let wants = |n: &str| {
        pod("p")
            .spec(json!({"containers": [{"name": "c", "resources": {"requests": {"example.com/gpu": n}}}]}))
            .build()
    };
    let config = filters(&["NodeResourcesFit"]);
    let verdict = schedule(&mut p, &wants("1"), &config);
    assert_eq!(feasible(&verdict), ["gpu"]);
    assert_eq!(failures(&verdict), [("Insufficient example.com/gpu", 1)]);
    assert!(schedule(&mut p, &wants("2"), &config).feasible.is_empty());
    for args in [
        json!({"ignoredResources": ["example.com/gpu"]}),
        json!({"ignoredResourceGroups": ["example.com"]}),
    ] {
        let config = CycleConfig {
            filters: vec![plugin("NodeResourcesFit", 0, args)],
            ..CycleConfig::default()
        };
        assert_eq!(feasible(&schedule(&mut p, &wants("2"), &config)).len(), 2);
    }
}

fn request(spec: serde_json::Value) -> PodRequest {
    PodRequest::of(&serde_json::from_value::<PodSpec>(spec).unwrap())
}

fn container(cpu: &str) -> serde_json::Value {
    json!({"name": format!("c{cpu}"), "resources": {"requests": {"cpu": cpu}}})
}

#[test]
fn init_containers_set_a_floor() {
    let sum = request(json!({"containers": [container("100m"), container("200m")]}));
    assert_eq!(sum.requests.cpu, 300);
    let init = request(json!({
        "containers": [container("100m"), container("200m")],
        "initContainers": [container("500m"), container("50m")],
    }));
    assert_eq!(
        init.requests.cpu, 500,
        "max(sum of containers, each init container)"
    );
    let sidecar = |c: serde_json::Value| {
        let mut c = c;
        c["restartPolicy"] = json!("Always");
        c
    };
    let with_sidecar = request(json!({
        "containers": [container("300m")],
        "initContainers": [sidecar(container("100m")), container("450m")],
    }));
    assert_eq!(
        with_sidecar.requests.cpu, 550,
        "the init container runs next to the sidecar started before it"
    );
    let sidecar_only = request(json!({
        "containers": [container("300m")],
        "initContainers": [container("200m"), sidecar(container("100m"))],
    }));
    assert_eq!(
        sidecar_only.requests.cpu, 400,
        "sidecars add to the containers"
    );
    let overhead = request(
        json!({"containers": [container("100m")], "overhead": {"cpu": "250m", "memory": "64Mi"}}),
    );
    assert_eq!(
        (overhead.requests.cpu, overhead.requests.memory),
        (350, 64 << 20)
    );
    assert_eq!(
        (overhead.non_zero_cpu, overhead.non_zero_memory),
        (350, (200 << 20) + (64 << 20)),
        "scoring counts 200Mi for the container without a memory request"
    );
}

#[test]
fn init_container_requests_decide_the_fit() {
    let mut p = policy([node("n").allocatable(json!({"cpu": "400m"})).delta()]);
    let config = filters(&["NodeResourcesFit"]);
    let init = |cpu: &str| {
        pod("p")
            .spec(json!({"containers": [container("100m")], "initContainers": [container(cpu)]}))
            .build()
    };
    assert_eq!(feasible(&schedule(&mut p, &init("400m"), &config)), ["n"]);
    let verdict = schedule(&mut p, &init("500m"), &config);
    assert_eq!(failures(&verdict), [("Insufficient cpu", 1)]);
}

#[test]
fn finished_pods_free_their_resources() {
    let mut p = policy([
        node("n").allocatable(json!({"cpu": "1"})).delta(),
        pod("job").on("n").requests("1", "0").delta(),
    ]);
    let wants = pod("p").requests("500m", "0").build();
    let config = filters(&["NodeResourcesFit"]);
    assert!(schedule(&mut p, &wants, &config).feasible.is_empty());
    p.apply(
        pod("job")
            .on("n")
            .requests("1", "0")
            .phase("Succeeded")
            .delta(),
    );
    assert_eq!(feasible(&schedule(&mut p, &wants, &config)), ["n"]);
}

fn claim(name: &str, volume: Option<&str>, class: Option<&str>) -> PersistentVolumeClaim {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"volumeName": volume, "storageClassName": class},
    }))
    .unwrap()
}

fn with_claim(name: &str) -> Pod {
    pod("p")
        .spec(json!({"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": name}}]}))
        .build()
}

fn zones() -> DefaultPolicy {
    policy([
        node("a1").zone("a").delta(),
        node("a2").zone("a").delta(),
        node("b1").zone("b").delta(),
    ])
}

#[test]
fn missing_and_unbound_immediate_claims_reject_the_pod() {
    let fake = FakeHost::new();
    let mut p = zones();
    let config = filters(&["VolumeBinding"]);
    let verdict = schedule_with(&fake, &mut p, &with_claim("data"), &config);
    assert_eq!(
        failures(&verdict),
        [("persistentvolumeclaim \"data\" not found", 3)]
    );
    fake.insert(&claim("data", None, None)).unwrap();
    let verdict = schedule_with(&fake, &mut p, &with_claim("data"), &config);
    assert_eq!(
        failures(&verdict),
        [("pod has unbound immediate PersistentVolumeClaims", 3)]
    );
    let class: StorageClass = serde_json::from_value(json!({
        "metadata": {"name": "local"},
        "provisioner": "example.com/local",
        "volumeBindingMode": "WaitForFirstConsumer",
    }))
    .unwrap();
    fake.insert(&class).unwrap();
    fake.insert(&claim("later", None, Some("local"))).unwrap();
    let verdict = schedule_with(&fake, &mut p, &with_claim("later"), &config);
    assert_eq!(feasible(&verdict).len(), 3, "waits for its first consumer");
    assert!(
        schedule(&mut p, &pod("p").build(), &config)
            .failures
            .is_empty()
    );
}

#[test]
fn bound_volumes_node_affinity() {
    let fake = FakeHost::new();
    let mut p = zones();
    fake.insert(&claim("data", Some("pv-a"), None)).unwrap();
    let config = filters(&["VolumeBinding"]);
    let verdict = schedule_with(&fake, &mut p, &with_claim("data"), &config);
    assert_eq!(
        failures(&verdict),
        [(
            "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)",
            3
        )]
    );
    let volume: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": "pv-a"},
        "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}
        ]}]}}},
    }))
    .unwrap();
    fake.insert(&volume).unwrap();
    let verdict = schedule_with(&fake, &mut p, &with_claim("data"), &config);
    assert_eq!(feasible(&verdict), ["a1", "a2"]);
    assert_eq!(
        failures(&verdict),
        [("node(s) had volume node affinity conflict", 1)]
    );
}

#[test]
fn ephemeral_volumes_need_their_claim_owned_by_the_pod() {
    let fake = FakeHost::new();
    let mut p = zones();
    let config = filters(&["VolumeBinding"]);
    let scratch = pod("p")
        .spec(json!({"volumes": [{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]}))
        .build();
    let verdict = schedule_with(&fake, &mut p, &scratch, &config);
    assert_eq!(
        failures(&verdict),
        [(
            "waiting for ephemeral volume controller to create the persistentvolumeclaim \"p-scratch\"",
            3
        )]
    );
    fake.insert(&claim("p-scratch", Some("pv-x"), None))
        .unwrap();
    let verdict = schedule_with(&fake, &mut p, &scratch, &config);
    assert_eq!(
        failures(&verdict),
        [(
            "PVC default/p-scratch was not created for pod default/p (pod is not owner)",
            3
        )]
    );
}

#[test]
fn unparsable_pod_affinity_rejects_the_pod() {
    let mut p = zones();
    let bad = pod("p")
        .spec(json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchExpressions": [
                {"key": "app", "operator": "Near", "values": ["x"]}
            ]}}
        ]}}}))
        .build();
    let verdict = schedule(&mut p, &bad, &filters(&["InterPodAffinity"]));
    assert_eq!(verdict.evaluated, 3);
    assert_eq!(verdict.failures.len(), 1);
    assert!(verdict.failures[0].reason.starts_with("parsing pod: "));
    assert_eq!(verdict.failures[0].nodes, 3);
}
