//! Runs wasmkube's controller plugins: WebAssembly components sandboxed by wasmtime.
//!
//! One [`Runtime`] per process holds the engine, compiles each plugin once (cached on disk by the
//! sha256 of its bytes) and hands out [`Module`]s. Each [`ControllerInstance`] is one store: its
//! own memory, limits ([`Limits`]) and [`HostApi`] handle. A trap, a memory-limit hit or a missed
//! deadline poisons that instance only; the caller drops it and creates another. See
//! `docs/runtime.md`.

mod bindings;
mod engine;
mod host;
mod instance;
mod sandbox;

pub use bindings::{
    ApiError, EventType, Gvr, LogLevel, ObjectKey, Outcome, PatchType, Propagation, Registration,
};
pub use engine::{EPOCH_TICK, Module, Runtime, RuntimeError};
pub use host::HostApi;
pub use instance::{CallError, ControllerInstance, LATENCY_BUCKETS, Limits, Stats};
