//! The `heap-profile` build's hook: SIGUSR2 writes jemalloc's heap profile for `jeprof`.
//!
//! Only in a binary built with `--features heap-profile` (jemalloc with its profiler) and run
//! with `_RJEM_MALLOC_CONF=prof:true,lg_prof_sample:N`; see docs/benchmarks.md, Memory.

use tokio::signal::unix::{SignalKind, signal};

/// Where the profiles go unless `WASMKUBE_HEAP_PROFILE_DIR` says otherwise.
const DEFAULT_DIR: &str = "/tmp";

/// Listens for SIGUSR2 for the life of the runtime; each signal writes
/// `DIR/wasmkube.PID.N.heap` and logs jemalloc's totals (allocated, active, resident,
/// metadata, retained) beside it.
pub fn spawn() {
    let dir = std::env::var("WASMKUBE_HEAP_PROFILE_DIR").unwrap_or_else(|_| DEFAULT_DIR.into());
    tokio::spawn(async move {
        let mut signals = match signal(SignalKind::user_defined2()) {
            Ok(signals) => signals,
            Err(error) => {
                tracing::warn!(%error, "heap profile: SIGUSR2 not handled");
                return;
            }
        };
        let mut dumps = 0u32;
        while signals.recv().await.is_some() {
            dumps = dumps.saturating_add(1);
            let path = format!("{dir}/wasmkube.{}.{dumps}.heap", std::process::id());
            dump(&path);
        }
    });
}

fn dump(path: &str) {
    // jemalloc keeps the name's pointer only for the call, but the safe setter asks for a
    // static string: each dump leaks its path (a few dozen bytes), in this diagnostic build only.
    let name: &'static [u8] = Box::leak(format!("{path}\0").into_bytes().into_boxed_slice());
    if let Err(error) = tikv_jemalloc_ctl::raw::write_str(b"prof.dump\0", name) {
        tracing::warn!(%error, path, "heap profile not written (is prof:true in _RJEM_MALLOC_CONF?)");
        return;
    }
    let mb = |read: fn() -> tikv_jemalloc_ctl::Result<usize>| {
        read().map_or(f64::NAN, |bytes| bytes as f64 / 1048576.0)
    };
    if let Err(error) = tikv_jemalloc_ctl::epoch::advance() {
        tracing::warn!(%error, "heap profile: jemalloc's statistics not refreshed");
    }
    use tikv_jemalloc_ctl::stats;
    tracing::info!(
        path,
        allocated_mb = mb(stats::allocated::read),
        active_mb = mb(stats::active::read),
        resident_mb = mb(stats::resident::read),
        metadata_mb = mb(stats::metadata::read),
        retained_mb = mb(stats::retained::read),
        "heap profile written"
    );
}
