//! Scheduling policies: the `Policy` trait a scheduler plugin implements, and the types of one
//! scheduling cycle (see the `scheduler` interface in `wit/wasmkube.wit`).
//!
//! A policy keeps its own view of the cluster, fed by [`Delta`]s, and answers one pod at a time
//! with a [`Verdict`]: the feasible nodes with their weighted scores, and why the others failed.
//! The same type runs as a Wasm component (wired with [`crate::export_scheduler!`]) and natively
//! in the host, for tests and for comparison.

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::Value;

use crate::context::Context;
use crate::error::Error;
use crate::types::ObjectKey;

/// A change to the cluster as the scheduler sees it.
#[derive(Debug, Clone)]
pub enum Delta {
    /// A node joined or changed.
    NodeUpsert(Box<Node>),
    /// A node left.
    NodeRemove(String),
    /// A pod is on a node (`spec.nodeName` set): assumed, bound or running.
    PodUpsert(Box<Pod>),
    /// A pod left its node.
    PodRemove(ObjectKey),
}

/// A plugin of the policy as a profile configures it.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    pub name: String,
    /// For score plugins: the multiplier of the normalized score (0 to 100).
    pub weight: i64,
    /// Plugin arguments (`{}` when none).
    pub args: Value,
}

/// What one cycle runs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CycleConfig {
    /// Filters in order; a node must pass them all.
    pub filters: Vec<PluginConfig>,
    /// Score plugins with their weights.
    pub scores: Vec<PluginConfig>,
    /// Stop once this many feasible nodes are found (0: all), continuing where the last cycle
    /// stopped.
    pub nodes_to_find: usize,
    /// Only these nodes, when set (an earlier policy's feasible nodes).
    pub candidates: Option<Vec<String>>,
}

/// A feasible node and its total score (the sum of weight × normalized score).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeScore {
    pub node: String,
    pub score: i64,
}

/// Nodes that failed a filter for one reason (`Insufficient cpu`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    pub nodes: u32,
}

/// The answer for one pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verdict {
    pub feasible: Vec<NodeScore>,
    pub failures: Vec<Failure>,
    /// Nodes looked at.
    pub evaluated: u32,
}

/// The plugins a policy offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    pub name: String,
    pub filters: Vec<String>,
    pub scores: Vec<String>,
}

/// A scheduling policy. One value lives for the life of an instance; the host brings a new
/// instance up to date with deltas from its snapshot before it serves.
pub trait Policy: Default + 'static {
    /// The policy's name and the filter and score plugins it offers.
    fn capabilities() -> Capabilities;

    /// Applies one change to the policy's view of the cluster.
    fn apply(&mut self, delta: Delta);

    /// Filters and scores nodes for `pod` with the plugins `config` names. `ctx` reads what the
    /// deltas do not carry (PersistentVolumeClaims, PersistentVolumes ...) from the host's cache.
    fn schedule(
        &mut self,
        ctx: &Context<'_>,
        pod: &Pod,
        config: &CycleConfig,
    ) -> Result<Verdict, Error>;
}

/// Decodes JSON text as it crosses the boundary (`what` names it in the error).
pub fn decode<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, Error> {
    serde_json::from_str(text).map_err(|source| Error::Decode {
        what: what.to_string(),
        source,
    })
}

impl Delta {
    /// A node upsert from its JSON.
    pub fn node(text: &str) -> Result<Delta, Error> {
        Ok(Delta::NodeUpsert(Box::new(decode("node", text)?)))
    }

    /// A pod upsert from its JSON.
    pub fn pod(text: &str) -> Result<Delta, Error> {
        Ok(Delta::PodUpsert(Box::new(decode("pod", text)?)))
    }
}
