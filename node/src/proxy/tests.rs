//! The proxy against a fake kernel: what it writes on start, on adoption and on one change.

use serde_json::{Value, json};

use super::conntrack::FakeConntrack;
use super::nft::FakeNft;
use super::*;

fn settings() -> Settings {
    Settings::new("n1", "wk0", "10.244.0.0/16", "10.96.0.0/12").expect("valid settings")
}

fn service(name: &str, ip: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": {"namespace": "t", "name": name, "resourceVersion": "1"},
        "spec": {"clusterIP": ip, "ports": [{"port": 80, "targetPort": 8080}]},
    }))
    .expect("a Service")
}

fn slice(service: &str, ips: &[&str], version: &str) -> EndpointSlice {
    let endpoints: Vec<Value> = ips
        .iter()
        .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": "t", "name": format!("{service}-x"), "resourceVersion": version,
            "labels": {SERVICE_NAME_LABEL: service}},
        "addressType": "IPv4",
        "ports": [{"port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    }))
    .expect("a slice")
}

fn proxy(listing: Option<Value>) -> Proxy<FakeNft, FakeConntrack> {
    let services = Informer::new();
    services.replace(vec![service("a", "10.96.0.5"), service("b", "10.96.0.6")]);
    let slices = Informer::new();
    slices.replace(vec![
        slice("a", &["10.244.0.3", "10.244.0.4"], "1"),
        slice("b", &["10.244.0.7"], "1"),
    ]);
    let nft = FakeNft::default();
    *nft.listing.lock().expect("not poisoned") = listing;
    Proxy::new(nft, FakeConntrack::default(), settings(), services, slices)
}

fn batches(p: &Proxy<FakeNft, FakeConntrack>) -> Vec<String> {
    p.nft.batches.lock().expect("not poisoned").clone()
}

/// What `nft -j list table` would answer for `programme`.
fn listing(programme: &Programme) -> Value {
    let mut items: Vec<Value> = programme
        .chains
        .keys()
        .map(|name| json!({"chain": {"name": name}}))
        .collect();
    for map in Map::ALL {
        let elem: Vec<Value> = programme
            .elements
            .iter()
            .filter(|((m, _), _)| *m == map)
            .map(|((_, key), target)| {
                let parts: Vec<Value> = key
                    .split(" . ")
                    .map(|p| p.parse::<u16>().map_or_else(|_| json!(p), |n| json!(n)))
                    .collect();
                json!([{"concat": parts}, {"goto": {"target": target}}])
            })
            .collect();
        items.push(json!({"map": {"name": map.name(), "elem": elem}}));
    }
    json!({ "nftables": items })
}

#[tokio::test]
async fn the_first_sync_writes_the_skeleton_and_every_service() {
    let mut p = proxy(None);
    p.sync_all().await.expect("synced");
    let batch = &batches(&p)[0];
    assert!(batch.starts_with("add table ip wasmkube-wk0\n"));
    assert!(
        batch
            .contains("add element ip wasmkube-wk0 service-ips { 10.96.0.5 . tcp . 80 : goto svc-")
    );
    assert!(
        batch
            .contains("add element ip wasmkube-wk0 service-ips { 10.96.0.6 . tcp . 80 : goto svc-")
    );
    assert!(batch.contains("dnat to 10.244.0.7:8080"));
}

#[tokio::test]
async fn a_restarted_proxy_adopts_the_table_without_rewriting_services() {
    let mut first = proxy(None);
    first.sync_all().await.expect("synced");
    let mut all = Programme::default();
    for programme in first.programmed.values() {
        all.extend(programme.clone());
    }
    let mut second = proxy(Some(listing(&all)));
    second.sync_all().await.expect("synced");
    let batch = &batches(&second)[0];
    assert_eq!(
        batch,
        &rules::skeleton(&settings()),
        "only the fixed chains are rewritten"
    );
}

#[tokio::test]
async fn an_endpoint_change_rewrites_only_that_service() {
    let mut p = proxy(None);
    p.sync_all().await.expect("synced");
    p.slices.apply("MODIFIED", slice("a", &["10.244.0.3"], "2"));
    let mut changed = BTreeSet::new();
    p.note(Change::Slice("t/a-x".into()), &mut changed);
    p.sync(changed).await.expect("synced");
    let batch = &batches(&p)[1];
    assert!(batch.contains("delete element ip wasmkube-wk0 service-ips { 10.96.0.5 . tcp . 80 }"));
    assert!(batch.contains("delete chain ip wasmkube-wk0 ep-"));
    assert!(
        !batch.contains("10.96.0.6") && !batch.contains("10.244.0.7"),
        "{batch}"
    );
    assert!(
        !batch.contains("add chain ip wasmkube-wk0 ep-"),
        "the kept endpoint's chain stays"
    );
}

#[tokio::test]
async fn a_deleted_service_and_its_slice_leave_nothing_behind() {
    let mut p = proxy(None);
    p.sync_all().await.expect("synced");
    p.services.apply("DELETED", service("b", "10.96.0.6"));
    p.slices.apply("DELETED", slice("b", &["10.244.0.7"], "1"));
    let mut changed = BTreeSet::new();
    p.note(Change::Slice("t/b-x".into()), &mut changed);
    p.note(Change::Service("t/b".into()), &mut changed);
    p.sync(changed).await.expect("synced");
    let batch = &batches(&p)[1];
    assert!(batch.contains("delete element ip wasmkube-wk0 service-ips { 10.96.0.6 . tcp . 80 }"));
    assert_eq!(batch.matches("delete chain").count(), 2, "{batch}");
    assert!(!p.programmed.contains_key("t/b"));
}

#[tokio::test]
async fn a_second_service_cannot_take_an_address_and_port_already_held() {
    let mut p = proxy(None);
    p.sync_all().await.expect("synced");
    p.services.apply("ADDED", service("c", "10.96.0.5"));
    p.slices.apply("ADDED", slice("c", &["10.244.0.9"], "1"));
    let mut changed = BTreeSet::new();
    p.note(Change::Service("t/c".into()), &mut changed);
    p.sync(changed).await.expect("synced");
    let batch = &batches(&p)[1];
    assert!(!batch.contains("add element"), "{batch}");
}

#[tokio::test]
async fn a_refused_service_does_not_hold_back_the_others() {
    let mut p = proxy(None);
    p.sync_all().await.expect("synced");
    p.slices
        .apply("MODIFIED", slice("a", &["10.244.0.66"], "2"));
    p.slices.apply("MODIFIED", slice("b", &["10.244.0.8"], "2"));
    *p.nft.refuse.lock().expect("not poisoned") = Some("10.244.0.66".into());
    let mut changed = BTreeSet::new();
    p.note(Change::Slice("t/a-x".into()), &mut changed);
    p.note(Change::Slice("t/b-x".into()), &mut changed);
    p.sync(changed).await.expect("b went in");
    let batches = batches(&p);
    assert_eq!(batches.len(), 2, "the skeleton, then b alone");
    assert!(batches[1].contains("10.244.0.8") && !batches[1].contains("10.244.0.66"));
    let a = p.programmed["t/a"]
        .chains
        .keys()
        .any(|c| c.contains("10.244.0.3"));
    assert!(a, "a keeps what the kernel has");
}

#[test]
fn bridges_that_cannot_name_a_table_are_refused() {
    assert!(Settings::new("n", "wk0", "10.244.0.0/16", "10.96.0.0/12").is_ok());
    for bad in ["", "wk0\"; flush ruleset", "a-very-long-bridge-name", "0wk"] {
        assert!(
            Settings::new("n", bad, "10.244.0.0/16", "10.96.0.0/12").is_err(),
            "{bad}"
        );
    }
    assert!(Settings::new("n", "wk0", "10.244.0.0/16", "nonsense").is_err());
}

/// Where nft is there and may be asked (as root), it accepts the rules in check mode (`-c`).
#[tokio::test]
async fn nft_accepts_the_rules() {
    let check = std::process::Command::new("nft")
        .args(["-c", "list", "tables"])
        .output();
    if !check.is_ok_and(|o| o.status.success()) {
        return;
    }
    let mut p = proxy(None);
    let mut s = service("d", "10.96.0.8");
    let spec = s.spec.as_mut().expect("a spec");
    spec.type_ = Some("NodePort".into());
    spec.external_ips = Some(vec!["203.0.113.9".into()]);
    spec.session_affinity = Some("ClientIP".into());
    spec.external_traffic_policy = Some("Local".into());
    spec.ports.as_mut().expect("ports")[0].node_port = Some(30080);
    p.services.apply("ADDED", s);
    p.slices.apply("ADDED", slice("d", &["10.244.0.10"], "1"));
    p.sync_all().await.expect("synced");
    let batch = batches(&p).remove(0);
    let mut child = std::process::Command::new("nft")
        .args(["-c", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nft runs");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(batch.as_bytes())
        .expect("written");
    let out = child.wait_with_output().expect("nft ends");
    assert!(
        out.status.success(),
        "{}\n{batch}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn udp_service(name: &str, ip: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": {"namespace": "t", "name": name, "resourceVersion": "1"},
        "spec": {"clusterIP": ip, "type": "NodePort",
            "ports": [{"port": 53, "protocol": "UDP", "targetPort": 53, "nodePort": 30053}]},
    }))
    .expect("a Service")
}

fn udp_slice(service: &str, ips: &[&str], version: &str) -> EndpointSlice {
    let mut slice = slice(service, ips, version);
    slice.ports = serde_json::from_value(json!([{"port": 53, "protocol": "UDP"}])).ok();
    slice
}

async fn change(p: &mut Proxy<FakeNft, FakeConntrack>, slice: EndpointSlice) -> Vec<Stale> {
    let key = key_of(&slice.metadata);
    p.slices.apply("MODIFIED", slice);
    let mut changed = BTreeSet::new();
    p.note(Change::Slice(key), &mut changed);
    p.sync(changed).await.expect("synced");
    std::mem::take(&mut *p.conntrack.forgotten.lock().expect("not poisoned"))
}

#[tokio::test]
async fn udp_flows_to_a_gone_endpoint_or_to_a_service_that_had_none_are_forgotten() {
    let mut p = proxy(None);
    p.services.apply("ADDED", udp_service("dns", "10.96.0.53"));
    p.sync_all().await.expect("synced");
    assert!(
        p.conntrack
            .forgotten
            .lock()
            .expect("not poisoned")
            .is_empty()
    );

    // No endpoint, then a first one: the flows rejected meanwhile go.
    let forgotten = change(&mut p, udp_slice("dns", &["10.244.0.8"], "2")).await;
    assert_eq!(
        forgotten,
        [
            Stale::Address(Ipv4Addr::new(10, 96, 0, 53)),
            Stale::NodePort(30053)
        ]
    );
    // A second endpoint: nothing is stale.
    let forgotten = change(&mut p, udp_slice("dns", &["10.244.0.8", "10.244.0.9"], "3")).await;
    assert_eq!(forgotten, []);
    // The first goes: its flows go with it.
    let forgotten = change(&mut p, udp_slice("dns", &["10.244.0.9"], "4")).await;
    assert_eq!(forgotten, [Stale::Endpoint(Ipv4Addr::new(10, 244, 0, 8))]);
    // TCP Services never ask.
    let forgotten = change(&mut p, slice("a", &["10.244.0.3"], "2")).await;
    assert_eq!(forgotten, []);
}
