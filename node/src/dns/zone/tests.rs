use std::str::FromStr;

use serde_json::{Value, json};

use super::*;

fn service(ns: &str, name: &str, spec: Value) -> Arc<Service> {
    let object = json!({"metadata": {"namespace": ns, "name": name}, "spec": spec});
    Arc::new(serde_json::from_value(object).expect("an object"))
}

fn slice(ns: &str, service: &str, endpoints: Value, ports: Value) -> Arc<EndpointSlice> {
    let object = json!({
        "metadata": {"namespace": ns, "name": format!("{service}-abc"),
            "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4", "endpoints": endpoints, "ports": ports,
    });
    Arc::new(serde_json::from_value(object).expect("an object"))
}

/// A Deployment's Service, a StatefulSet's headless one, an ExternalName and a Service
/// whose name cannot be a DNS label.
fn zone() -> Zone {
    let services = [
        service(
            "t1",
            "echo",
            json!({"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"port": 81}]}),
        ),
        service(
            "t1",
            "web",
            json!({"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}),
        ),
        service(
            "t1",
            "empty",
            json!({"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}),
        ),
        service(
            "t1",
            "ext",
            json!({"type": "ExternalName", "externalName": "example.org"}),
        ),
        service("t1", "Bad_Name", json!({"clusterIP": "10.96.0.21"})),
    ];
    let slices = [
        slice(
            "t1",
            "web",
            json!([
                {"addresses": ["10.244.0.6"], "hostname": "web-1", "conditions": {"ready": true}},
                {"addresses": ["10.244.0.5"], "hostname": "web-0", "conditions": {"ready": true}},
                {"addresses": ["10.244.0.7"], "hostname": "web-2", "conditions": {"ready": false}},
            ]),
            json!([{"name": "http", "port": 8080, "protocol": "TCP"}]),
        ),
        slice(
            "t1",
            "echo",
            json!([{"addresses": ["10.244.0.9"], "conditions": {"ready": true}}]),
            json!([{"name": "http", "port": 8080}]),
        ),
        slice(
            "t1",
            "empty",
            json!([{"addresses": ["10.244.0.8"], "conditions": {"ready": false}}]),
            json!([]),
        ),
    ];
    Zone::build(
        origin("cluster.local").expect("a domain"),
        7,
        &services,
        &slices,
    )
}

fn ask(zone: &Zone, name: &str, qtype: RecordType) -> Answer {
    zone.answer(&Name::from_str(name).expect("a name"), qtype)
}

/// The answers' data as text, in order.
fn data(answer: &Answer) -> Vec<String> {
    match answer {
        Answer::Found { answers, .. } => answers.iter().map(|r| r.data.to_string()).collect(),
        other => panic!("expected records, got {other:?}"),
    }
}

#[test]
fn a_service_answers_its_cluster_ip() {
    let zone = zone();
    let answer = ask(&zone, "echo.t1.svc.cluster.local.", RecordType::A);
    assert_eq!(data(&answer), ["10.96.0.20"]);
    let Answer::Found { answers, .. } = answer else {
        unreachable!()
    };
    assert_eq!(answers[0].ttl, TTL);
    // Names are case-insensitive; the owner keeps the asked case.
    let answer = ask(&zone, "ECHO.t1.svc.Cluster.Local.", RecordType::A);
    assert_eq!(data(&answer), ["10.96.0.20"]);
}

#[test]
fn nodata_when_the_name_exists_without_that_type() {
    let zone = zone();
    assert_eq!(
        ask(&zone, "echo.t1.svc.cluster.local.", RecordType::AAAA),
        Answer::NoData
    );
    assert_eq!(
        ask(&zone, "echo.t1.svc.cluster.local.", RecordType::TXT),
        Answer::NoData
    );
    assert_eq!(
        ask(&zone, "t1.svc.cluster.local.", RecordType::A),
        Answer::NoData
    );
    assert_eq!(
        ask(&zone, "svc.cluster.local.", RecordType::A),
        Answer::NoData
    );
    assert_eq!(ask(&zone, "cluster.local.", RecordType::A), Answer::NoData);
    assert_eq!(
        data(&ask(&zone, "cluster.local.", RecordType::SOA)).len(),
        1,
        "the apex has its SOA"
    );
}

#[test]
fn nxdomain_for_names_that_do_not_exist() {
    let zone = zone();
    for name in [
        "nope.t1.svc.cluster.local.",
        "echo.t2.svc.cluster.local.",
        "t2.svc.cluster.local.",
        "bad_name.t1.svc.cluster.local.",
        "a.b.c.d.e.f.svc.cluster.local.",
        "echo.t1.pod.cluster.local.",
        "web-9.web.t1.svc.cluster.local.",
        "_https._tcp.echo.t1.svc.cluster.local.",
        "_http._udp.echo.t1.svc.cluster.local.",
        "x.cluster.local.",
    ] {
        assert_eq!(ask(&zone, name, RecordType::A), Answer::NxDomain, "{name}");
    }
}

#[test]
fn srv_records_for_named_ports() {
    let zone = zone();
    let answer = ask(
        &zone,
        "_http._tcp.echo.t1.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(data(&answer), ["0 100 80 echo.t1.svc.cluster.local."]);
    let Answer::Found { additionals, .. } = answer else {
        unreachable!()
    };
    assert_eq!(additionals.len(), 1);
    assert_eq!(additionals[0].data.to_string(), "10.96.0.20");
    // The bare name lists every named port; the unnamed one has no SRV record.
    let answer = ask(&zone, "echo.t1.svc.cluster.local.", RecordType::SRV);
    assert_eq!(data(&answer), ["0 100 80 echo.t1.svc.cluster.local."]);
    assert_eq!(
        ask(
            &zone,
            "_http._tcp.echo.t1.svc.cluster.local.",
            RecordType::A
        ),
        Answer::NoData
    );
}

#[test]
fn a_headless_service_answers_its_ready_endpoints() {
    let zone = zone();
    let answer = ask(&zone, "web.t1.svc.cluster.local.", RecordType::A);
    assert_eq!(data(&answer), ["10.244.0.5", "10.244.0.6"]);
    let answer = ask(
        &zone,
        "_http._tcp.web.t1.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(
        data(&answer),
        [
            "0 50 8080 web-0.web.t1.svc.cluster.local.",
            "0 50 8080 web-1.web.t1.svc.cluster.local."
        ]
    );
    assert_eq!(
        ask(&zone, "empty.t1.svc.cluster.local.", RecordType::A),
        Answer::NxDomain,
        "no ready endpoints: the name does not exist, as in CoreDNS"
    );
}

#[test]
fn endpoints_by_hostname_or_dashed_address() {
    let zone = zone();
    let answer = ask(&zone, "web-0.web.t1.svc.cluster.local.", RecordType::A);
    assert_eq!(data(&answer), ["10.244.0.5"]);
    let answer = ask(
        &zone,
        "10-244-0-9.echo.t1.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(data(&answer), ["10.244.0.9"]);
    assert_eq!(
        ask(&zone, "web-2.web.t1.svc.cluster.local.", RecordType::A),
        Answer::NxDomain,
        "a not-ready endpoint has no name"
    );
}

#[test]
fn external_names_are_cnames() {
    let zone = zone();
    let answer = ask(&zone, "ext.t1.svc.cluster.local.", RecordType::A);
    assert_eq!(data(&answer), ["example.org."]);
}

#[test]
fn ptr_records_for_service_and_endpoint_addresses() {
    let zone = zone();
    let answer = ask(&zone, "20.0.96.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(data(&answer), ["echo.t1.svc.cluster.local."]);
    let answer = ask(&zone, "5.0.244.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(data(&answer), ["web-0.web.t1.svc.cluster.local."]);
    assert_eq!(
        ask(&zone, "5.0.244.10.in-addr.arpa.", RecordType::A),
        Answer::NoData
    );
    assert_eq!(
        ask(&zone, "1.1.1.10.in-addr.arpa.", RecordType::PTR),
        Answer::Elsewhere,
        "an address the cluster does not know goes upstream"
    );
}

#[test]
fn names_outside_the_cluster_domain_go_elsewhere() {
    let zone = zone();
    assert_eq!(ask(&zone, "example.org.", RecordType::A), Answer::Elsewhere);
    assert_eq!(ask(&zone, "local.", RecordType::A), Answer::Elsewhere);
}

#[test]
fn the_cluster_domain_is_a_dns_subdomain() {
    assert!(origin("cluster.local").is_ok());
    assert!(origin("example.com.").is_ok());
    for bad in ["", "a b", "x/../y", "-x.local"] {
        assert!(origin(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_big_headless_service_is_bounded() {
    let services = [service("t1", "big", json!({"clusterIP": "None"}))];
    let endpoints: Vec<Value> = (0..1000u32)
        .map(|i| json!({"addresses": [format!("10.244.{}.{}", i / 200, i % 200 + 1)]}))
        .collect();
    let slices = [slice("t1", "big", json!(endpoints), json!([]))];
    let zone = Zone::build(
        origin("cluster.local").expect("a domain"),
        1,
        &services,
        &slices,
    );
    let answer = ask(&zone, "big.t1.svc.cluster.local.", RecordType::A);
    assert_eq!(data(&answer).len(), MAX_RECORDS);
}
