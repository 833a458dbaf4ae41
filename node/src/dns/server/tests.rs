use std::str::FromStr;

use hickory_server::proto::op::{Message, Query};
use hickory_server::proto::rr::{Name, RecordType};
use serde_json::json;

use super::*;
use crate::dns::forward::{exchange, tcp};
use crate::dns::zone::origin;

/// A server of `zone` on a free port of 127.0.0.1, with no upstream.
fn start(zone: Zone) -> SocketAddr {
    let free = std::net::UdpSocket::bind("127.0.0.1:0").expect("a free port");
    let address = free.local_addr().expect("an address");
    drop(free);
    let handler = Handler::new(
        Arc::new(ArcSwap::from_pointee(zone)),
        Forwarder::new(Vec::new(), 1),
    );
    serve(address, handler).expect("serving");
    address
}

/// A server with one Service in its zone.
fn server() -> SocketAddr {
    let service = serde_json::from_value(json!({
        "metadata": {"namespace": "t1", "name": "echo"},
        "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80}]},
    }))
    .expect("a service");
    let zone = Zone::build(
        origin("cluster.local").expect("a domain"),
        1,
        &[Arc::new(service)],
        &[],
    );
    start(zone)
}

fn question(name: &str, qtype: RecordType) -> Query {
    Query::query(Name::from_str(name).expect("a name"), qtype)
}

#[tokio::test]
async fn answers_over_udp_and_tcp() {
    let address = server();
    let answer = exchange(
        address,
        &question("echo.t1.svc.cluster.local.", RecordType::A),
    )
    .await
    .expect("an answer over UDP");
    assert_eq!(answer.answers[0].data.to_string(), "10.96.0.20");
    assert!(answer.metadata.authoritative);

    let nx = exchange(
        address,
        &question("nope.t1.svc.cluster.local.", RecordType::A),
    )
    .await
    .expect("an answer");
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(nx.authorities.len(), 1, "the SOA for negative caching");

    let mut query = Message::query();
    query.add_query(question("echo.t1.svc.cluster.local.", RecordType::SRV));
    let answer = tcp(address, &query.to_vec().expect("a query"))
        .await
        .expect("an answer over TCP");
    assert_eq!(answer.answers.len(), 1);
    assert_eq!(answer.additionals.len(), 1);

    // Outside the cluster domain with no upstream: SERVFAIL, at once.
    let outside = exchange(address, &question("example.org.", RecordType::A))
        .await
        .expect("an answer");
    assert_eq!(outside.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn a_zone_not_yet_synced_answers_servfail_not_nxdomain() {
    let address = start(Zone::pending(origin("cluster.local").expect("a domain")));
    let answer = exchange(
        address,
        &question("echo.t1.svc.cluster.local.", RecordType::A),
    )
    .await
    .expect("an answer");
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn tcp_connections_are_bounded() {
    use tokio::io::AsyncReadExt;

    let address = server();
    let mut held = Vec::new();
    for _ in 0..MAX_TCP_CONNECTIONS {
        held.push(
            tokio::net::TcpStream::connect(address)
                .await
                .expect("a connection"),
        );
    }
    // One too many: accepted and closed at once, while the others stay open.
    let mut extra = tokio::net::TcpStream::connect(address)
        .await
        .expect("a connection");
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(3), extra.read(&mut byte))
        .await
        .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    drop(held);
    // Once they are gone, questions over TCP are answered again.
    let mut query = Message::query();
    query.add_query(question("echo.t1.svc.cluster.local.", RecordType::A));
    let answer = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            if let Ok(answer) = tcp(address, &query.to_vec().expect("a query")).await {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("an answer over TCP");
    assert_eq!(answer.answers.len(), 1);
}
