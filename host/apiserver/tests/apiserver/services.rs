//! Service cluster IPs and node ports: given from the upper band first (the lower one is left to
//! Services that ask for an address, like kube-dns's `.10`), and a full range is a 500 at once,
//! never a request that spins.

use std::net::Ipv4Addr;

use http::StatusCode;
use serde_json::{Value, json};
use wasmkube_apiserver::{ClusterConfig, ServiceRange};

use crate::common::Api;

const SERVICES: &str = "/api/v1/namespaces/default/services";

fn service(name: &str, kind: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {"type": kind, "ports": [{"port": 80}]}})
}

/// Creates `svc`, which must succeed.
async fn created(api: &Api, svc: Value) -> Value {
    let (code, svc) = api.call("POST", SERVICES, Some(svc)).await;
    assert_eq!(code, StatusCode::CREATED, "{svc}");
    svc
}

fn cluster_ip(svc: &Value) -> Ipv4Addr {
    svc["spec"]["clusterIP"]
        .as_str()
        .and_then(|ip| ip.parse().ok())
        .expect("an address")
}

#[tokio::test]
async fn a_full_service_range_is_an_error_and_a_freed_address_is_given_again() {
    let range = ServiceRange::parse("10.0.0.0/28").expect("a valid CIDR");
    let api = Api::with_config(ClusterConfig {
        service_range: range,
        ..ClusterConfig::default()
    })
    .await;
    // 16 addresses: the network, .1 (the apiserver's) and the broadcast are never given.
    let mut given = Vec::new();
    for i in 0..13 {
        let svc = created(&api, service(&format!("s{i}"), "ClusterIP")).await;
        let ip = cluster_ip(&svc);
        given.push(ip);
    }
    given.sort();
    let expected: Vec<Ipv4Addr> = (2..15).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
    assert_eq!(given, expected);

    let (code, status) = api
        .call("POST", SERVICES, Some(service("one-too-many", "ClusterIP")))
        .await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR, "{status}");
    assert_eq!(status["reason"], "InternalError");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("failed to allocate a serviceIP: range is full")),
        "{status}"
    );

    let (code, _) = api.call("DELETE", &format!("{SERVICES}/s3"), None).await;
    assert_eq!(code, StatusCode::OK);
    created(&api, service("one-more", "ClusterIP")).await;
}

#[tokio::test]
async fn addresses_and_node_ports_come_from_the_upper_band() {
    let api = Api::new().await;
    for i in 0..20 {
        let svc = created(&api, service(&format!("n{i}"), "NodePort")).await;
        let ip = cluster_ip(&svc);
        assert!(
            u32::from(ip) >= u32::from(Ipv4Addr::new(10, 96, 1, 0)),
            "{ip} is in the static band 10.96.0.0-255"
        );
        let port = svc["spec"]["ports"][0]["nodePort"]
            .as_i64()
            .expect("a port");
        assert!(
            (30086..=32767).contains(&port),
            "{port} is in the static band"
        );
    }
    // The static band is still there for the asking.
    let mut dns = service("kube-dns", "ClusterIP");
    dns["spec"]["clusterIP"] = json!("10.96.0.10");
    dns["spec"]["ports"][0]["nodePort"] = json!(30000);
    dns["spec"]["type"] = json!("NodePort");
    created(&api, dns).await;
}
