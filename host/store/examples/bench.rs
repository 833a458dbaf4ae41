//! Benchmarks both backends side by side: `cargo run --release -p wasmkube-store --example bench
//! [seconds]` (etcd must be installed: scripts/etcd.sh).

use std::time::Duration;

use wasmkube_store::bench::{self, BenchOptions};
use wasmkube_store::embedded::EmbeddedStore;
use wasmkube_store::etcd::EtcdStore;
use wasmkube_store::etcd::testing::EtcdServer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(5);
    let opts = BenchOptions {
        duration: Duration::from_secs(seconds),
        ..BenchOptions::default()
    };
    let dir = tempfile::tempdir()?;
    let embedded = EmbeddedStore::open(&dir.path().join("bench.redb"))?;
    println!(
        "embedded (redb)\n{}",
        bench::run(embedded, opts.clone()).await
    );
    let server = EtcdServer::start().await?;
    let etcd = EtcdStore::connect(&server.endpoints()).await?;
    println!(
        "etcd {}\n{}",
        server.endpoint(),
        bench::run(etcd, opts).await
    );
    Ok(())
}
