//! Runs wasmkube's plugins: WebAssembly components sandboxed by wasmtime.
//!
//! One [`Runtime`] per process holds the engine, compiles each plugin once (cached on disk by the
//! sha256 of its bytes) and hands out [`Module`]s, each of one world: a controller or a scheduling
//! policy. Each [`ControllerInstance`] or [`PolicyInstance`] is one store: its own memory, limits
//! ([`Limits`]) and [`HostApi`] handle. A trap, a memory-limit hit or a missed
//! deadline poisons that instance only; the caller drops it and creates another. See
//! `docs/runtime.md`.

mod bindings;
mod compiler;
mod engine;
mod guest;
mod host;
mod instance;
mod policy;
mod sandbox;

pub use bindings::{
    ApiError, Capabilities, CycleConfig, Delta, EventType, Failure, Gvr, LogLevel, NodeScore,
    ObjectKey, Outcome, PatchType, PluginConfig, Propagation, Registration, Verdict,
};
pub use compiler::Compiler;
pub use engine::{EPOCH_TICK, Module, Runtime, RuntimeError, World};
pub use guest::{CallError, Instance, LATENCY_BUCKETS, Limits, Stats};
pub use host::{EVENT_MESSAGE_BYTES, EVENT_REASON_BYTES, HostApi, LOG_LINE_BYTES};
pub use instance::ControllerInstance;
pub use policy::PolicyInstance;
