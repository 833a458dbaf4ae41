//! `wasmkube bench services`: the node agent's service proxy on this machine's nftables, with
//! 1000 Services × 10 endpoints: the time and memory to program them from scratch, and the time
//! from an EndpointSlice change to its rules in force.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use wasmkube_node::informer::Informer;
use wasmkube_node::proxy::{
    ConntrackCommand, Nft, NftCommand, NftError, Proxy, Settings, table_name,
};

use super::node::status_kb;

/// A bridge, pod network and service range of the bench's own (no bridge is made: the rules
/// only sit in the table, and the table is deleted at the end).
const BRIDGE: &str = "wkbsvc0";
const POD_NETWORK: &str = "10.238.0.0/16";
const SERVICE_RANGE: &str = "10.138.0.0/16";

#[derive(clap::Args)]
pub struct ServicesArgs {
    /// Services programmed.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=60000))]
    services: u32,
    /// Ready endpoints per Service.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=250))]
    endpoints: u32,
    /// EndpointSlice changes timed one after another, once all are programmed.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10000))]
    changes: u32,
}

/// The real `nft`, telling the bench when each batch is in the kernel.
struct Timed {
    applied: mpsc::UnboundedSender<(Instant, usize)>,
}

#[async_trait::async_trait]
impl Nft for Timed {
    async fn apply(&self, batch: &str) -> Result<(), NftError> {
        NftCommand.apply(batch).await?;
        let _ = self.applied.send((Instant::now(), batch.lines().count()));
        Ok(())
    }

    async fn list(&self, table: &str) -> Result<Option<Value>, NftError> {
        NftCommand.list(table).await
    }
}

/// Service `i` (`svc-i` in `bench`, cluster IP the `i+2`th address of the range).
fn service(i: u32) -> anyhow::Result<Service> {
    let ip = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 138, 0, 0)) + i + 2);
    Ok(serde_json::from_value(json!({
        "metadata": {"namespace": "bench", "name": format!("svc-{i}"), "resourceVersion": "1"},
        "spec": {"clusterIP": ip.to_string(), "ports": [{"port": 80, "targetPort": 8080}]},
    }))?)
}

/// The slice of Service `i` with `n` ready endpoints; `generation` moves the first one.
fn slice(i: u32, n: u32, generation: u32) -> anyhow::Result<EndpointSlice> {
    let endpoints: Vec<Value> = (0..n)
        .map(|e| {
            let host = i * n + e + if e == 0 { generation * 7919 } else { 0 };
            let ip = std::net::Ipv4Addr::from(
                u32::from(std::net::Ipv4Addr::new(10, 238, 0, 0)) + (host % 65000) + 2,
            );
            json!({"addresses": [ip.to_string()], "conditions": {"ready": true}})
        })
        .collect();
    Ok(serde_json::from_value(json!({
        "metadata": {"namespace": "bench", "name": format!("svc-{i}-x"),
            "resourceVersion": (generation + 1).to_string(),
            "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
        "addressType": "IPv4",
        "ports": [{"port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    }))?)
}

/// This process's anonymous resident memory in KiB.
fn anon_kb() -> anyhow::Result<u64> {
    status_kb(&std::fs::read_to_string("/proc/self/status")?, "RssAnon")
}

/// Runs `nft ARGS…`; its standard output.
fn nft(args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new("nft")
        .args(args)
        .output()
        .context("running nft")?;
    if !out.status.success() {
        bail!(
            "nft {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

pub async fn run(args: ServicesArgs) -> anyhow::Result<()> {
    let table = table_name(BRIDGE);
    nft(&["list", "tables"]).context("the bench needs nft and root")?;
    let _ = nft(&["delete", "table", "ip", &table]);
    let (n, per) = (args.services, args.endpoints);
    let before_kb = anon_kb()?;
    let services = Informer::new();
    services.replace((0..n).map(service).collect::<anyhow::Result<_>>()?);
    let slices = Informer::new();
    slices.replace(
        (0..n)
            .map(|i| slice(i, per, 0))
            .collect::<anyhow::Result<_>>()?,
    );
    let cached_kb = anon_kb()?;
    let (tx, mut applied) = mpsc::unbounded_channel();
    let settings = Settings::new("bench-node", BRIDGE, POD_NETWORK, SERVICE_RANGE)?;
    let began = Instant::now();
    let timed = Timed { applied: tx };
    let proxy = Proxy::new(timed, ConntrackCommand, settings, services, slices.clone());
    let proxy = tokio::spawn(proxy.run());
    let (done, lines) = applied.recv().await.context("the proxy stopped")?;
    let from_scratch = done - began;
    let programmed_kb = anon_kb()?;
    let elements = nft(&["list", "map", "ip", &table, "service-ips"])?
        .matches(" : goto ")
        .count();
    let mut latencies = Vec::new();
    for c in 0..args.changes {
        let i = (c * 7 + 3) % n;
        let changed = slice(i, per, c + 1)?;
        let start = Instant::now();
        slices.apply("MODIFIED", changed);
        let (at, _) = tokio::time::timeout(Duration::from_secs(10), applied.recv())
            .await
            .context("no batch within 10 s of a change")?
            .context("the proxy stopped")?;
        latencies.push(at - start);
    }
    proxy.abort();
    nft(&["delete", "table", "ip", &table])?;
    latencies.sort();
    let pick = |q: f64| {
        let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(index).copied().unwrap_or_default()
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("service proxy: {n} Services × {per} endpoints on nftables");
    println!(
        "  programmed from scratch   {:>9.1} ms  ({lines} nft lines, {elements} cluster IPs in the kernel)",
        ms(from_scratch)
    );
    println!(
        "  memory (RssAnon)          {:>9} KiB informers, {:>6} KiB more while programming",
        cached_kb.saturating_sub(before_kb),
        programmed_kb.saturating_sub(cached_kb)
    );
    println!(
        "  slice change → in force   p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} changes)",
        ms(pick(0.5)),
        ms(pick(0.99)),
        ms(pick(1.0)),
        latencies.len()
    );
    if elements != n as usize {
        bail!("{elements} of {n} cluster IPs were in the kernel");
    }
    println!(
        "{}",
        json!({
            "bench": "services", "services": n, "endpoints": per,
            "from_scratch_ms": ms(from_scratch), "nft_lines": lines,
            "informers_kib": cached_kb.saturating_sub(before_kb),
            "proxy_kib": programmed_kb.saturating_sub(cached_kb),
            "change_p50_ms": ms(pick(0.5)), "change_p99_ms": ms(pick(0.99)), "change_max_ms": ms(pick(1.0)),
        })
    );
    Ok(())
}
