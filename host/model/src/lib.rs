//! The Kubernetes API model: which resources exist, and the pure logic applied to objects on their way into the store.
//!
//! Objects travel as `serde_json::Value` (any kind, custom resources included); built-in kinds are
//! checked through their `k8s-openapi` types. Nothing here does I/O.

pub mod apply;
pub mod bounded;
pub mod convert;
pub mod defaults;
pub mod event;
pub mod meta;
pub mod names;
pub mod openapi;
pub mod patch;
pub mod printable;
pub mod protobuf;
pub mod quantity;
pub mod resource;
pub mod schema;
pub mod selector;
pub mod table;
pub mod typed;
pub mod validation;
