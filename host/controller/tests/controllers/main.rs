//! The controller crate's integration tests, one binary (one link, one file on disk): each module is a suite.

mod common;
// The apiserver's harness, a server driven through `app()` with `oneshot` (for gc and nodes).
#[path = "../../../apiserver/tests/apiserver/common/mod.rs"]
mod apiserver;

mod confinement;
mod daemonset;
mod deployment;
mod endpoints;
mod events;
mod faults;
mod gc;
mod job;
mod manager;
mod nodes;
mod replicaset;
mod shadow;
mod statefulset;
mod supervisor;
