//! `wasmkube bench dns`: the node agent's DNS server, in process on 127.0.0.1 with a zone of
//! many Services, under a closed loop of UDP clients; queries per second and latency.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use arc_swap::ArcSwap;
use hickory_server::proto::op::{Message, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use tokio::net::UdpSocket;
use wasmkube_node::dns::{self, Forwarder, Handler, Zone};

use super::node::percentile;

#[derive(clap::Args)]
pub struct DnsArgs {
    /// Services in the zone (one in ten headless), each with an EndpointSlice of 10 endpoints.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    services: u64,
    /// Concurrent clients, each with one question in flight.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    clients: u64,
    /// Seconds the clients ask.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    duration_secs: u64,
}

/// How the clients' questions are mixed: ClusterIP A, headless A, SRV, PTR, NXDOMAIN.
const MIX: usize = 10;

pub async fn run(args: DnsArgs) -> anyhow::Result<()> {
    let services = args.services as usize;
    let address = serve(services)?;
    let until = Instant::now() + Duration::from_secs(args.duration_secs);
    let mut clients = Vec::new();
    for client in 0..args.clients as usize {
        clients.push(tokio::spawn(ask(address, services, client, until)));
    }
    let mut latencies = Vec::new();
    let mut wrong = 0;
    for client in clients {
        let (times, errors) = client.await??;
        latencies.extend(times);
        wrong += errors;
    }
    latencies.sort();
    let answered = latencies.len();
    if answered == 0 {
        bail!("no question was answered");
    }
    let per_second = answered as f64 / args.duration_secs as f64;
    let (p50, p99) = (percentile(&latencies, 50.0), percentile(&latencies, 99.0));
    let max = latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    println!(
        "cluster DNS: {services} Services, {} UDP clients, {} s",
        args.clients, args.duration_secs
    );
    println!("  answered     {answered} ({per_second:.0} queries/s), {wrong} wrong or lost");
    println!("  latency      p50 {p50:.3} ms   p99 {p99:.3} ms   max {max:.3} ms");
    let report = json!({
        "bench": "dns", "services": services, "clients": args.clients,
        "duration_secs": args.duration_secs, "answered": answered, "wrong": wrong,
        "queries_per_second": per_second, "p50_ms": p50, "p99_ms": p99, "max_ms": max,
    });
    println!("{report}");
    Ok(())
}

/// Starts a server of a zone with `count` Services on a free port of 127.0.0.1.
fn serve(count: usize) -> anyhow::Result<SocketAddr> {
    let mut services = Vec::with_capacity(count);
    let mut slices = Vec::with_capacity(count);
    for i in 0..count {
        let (ns, name) = names(i);
        let cluster_ip = if i.is_multiple_of(MIX) {
            "None".to_string()
        } else {
            service_ip(i)
        };
        let service: Service = serde_json::from_value(json!({
            "metadata": {"namespace": ns, "name": name},
            "spec": {"clusterIP": cluster_ip, "ports": [{"name": "http", "port": 80}]},
        }))?;
        let endpoints: Vec<_> = (0..10)
            .map(|e| {
                let k = i * 10 + e;
                json!({"addresses": [format!("10.{}.{}.{}", 100 + k / 65536, k / 256 % 256, k % 256)]})
            })
            .collect();
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"namespace": ns, "name": format!("{name}-x"),
                "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "endpoints": endpoints,
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        }))?;
        services.push(Arc::new(service));
        slices.push(Arc::new(slice));
    }
    let origin = dns::zone::origin(dns::DEFAULT_DOMAIN)?;
    let zone = Zone::build(origin, 1, &services, &slices);
    let handler = Handler::new(
        Arc::new(ArcSwap::from_pointee(zone)),
        Forwarder::new(Vec::new(), 1),
    );
    let free = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let address = free.local_addr()?;
    drop(free);
    dns::serve(address, handler).context("serving DNS")?;
    Ok(address)
}

fn names(i: usize) -> (String, String) {
    (format!("ns-{}", i % 10), format!("svc-{i}"))
}

fn service_ip(i: usize) -> String {
    format!("10.96.{}.{}", i / 250, i % 250 + 2)
}

/// One client's closed loop until `until`: each question's latency, and how many answers were
/// missing or not what the zone holds.
async fn ask(
    server: SocketAddr,
    services: usize,
    client: usize,
    until: Instant,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    socket.connect(server).await?;
    let mut latencies = Vec::new();
    let mut wrong = 0;
    let mut buffer = vec![0; 4096];
    let mut n = client;
    while Instant::now() < until {
        n = n.wrapping_mul(2_654_435_761).wrapping_add(12_345);
        let i = n % services;
        let (ns, name) = names(i);
        let (question, expected) = match n / services % MIX {
            0 => (
                format!("nope-{i}.{ns}.svc.cluster.local."),
                ResponseCode::NXDomain,
            ),
            1 => {
                let ip = service_ip(i);
                let reversed: Vec<&str> = ip.split('.').rev().collect();
                (
                    format!("{}.in-addr.arpa.", reversed.join(".")),
                    ResponseCode::NoError,
                )
            }
            2 => (
                format!("_http._tcp.{name}.{ns}.svc.cluster.local."),
                ResponseCode::NoError,
            ),
            _ => (
                format!("{name}.{ns}.svc.cluster.local."),
                ResponseCode::NoError,
            ),
        };
        let qtype = match n / services % MIX {
            1 => RecordType::PTR,
            2 => RecordType::SRV,
            _ => RecordType::A,
        };
        let mut message = Message::query();
        message.add_query(Query::query(Name::from_ascii(&question)?, qtype));
        let bytes = message.to_vec()?;
        let began = Instant::now();
        socket.send(&bytes).await?;
        let read = tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buffer)).await;
        let Ok(Ok(read)) = read else {
            wrong += 1;
            continue;
        };
        latencies.push(began.elapsed());
        let answer = Message::from_vec(&buffer[..read])?;
        // A PTR of a headless Service's number names nothing in the zone: forwarded, SERVFAIL.
        let forwarded = qtype == RecordType::PTR && i.is_multiple_of(MIX);
        let right = answer.metadata.id == message.metadata.id
            && (answer.metadata.response_code == expected || forwarded);
        if !right {
            wrong += 1;
        }
    }
    Ok((latencies, wrong))
}
