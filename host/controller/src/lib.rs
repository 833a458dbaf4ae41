//! The controller manager: shared informers over the apiserver's store, work queues with backoff, workers that call reconcilers, and the native controllers.

pub mod builtin;
pub mod informer;
pub mod leader;
pub mod manager;
pub mod module;
pub mod native;
pub mod plugin;
pub mod plugin_host;
pub mod probe;
pub mod queue;
pub mod record;
pub mod shadow;
pub mod supervisor;
pub mod wasm;

pub use manager::{Controller, Manager, ObjectKey, Outcome, Reconciler, Running};
