//! Unit tests of the policy: builders for nodes, pods and cycles shared by the test modules.
#![allow(clippy::unwrap_used)]

mod cycle;
mod filters;
mod scores;
mod spread_affinity;
mod view;

use wasmkube_sdk::k8s_openapi::api::core::v1::{Node, Pod};
use wasmkube_sdk::scheduling::{CycleConfig, Delta, PluginConfig, Policy, Verdict};
use wasmkube_sdk::serde_json::{self, Value, json};
use wasmkube_sdk::testing::FakeHost;

use crate::DefaultPolicy;

/// Merges `patch` into `value`: objects key by key, anything else replaced.
fn merge(value: &mut Value, patch: Value) {
    match (value, patch) {
        (Value::Object(into), Value::Object(from)) => {
            for (k, v) in from {
                merge(into.entry(k).or_insert(Value::Null), v);
            }
        }
        (value, patch) => *value = patch,
    }
}

/// A node: 4 cpu, 8Gi memory and 110 pods allocatable unless changed.
pub struct NodeBuilder(Value);

pub fn node(name: &str) -> NodeBuilder {
    NodeBuilder(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}},
    }))
}

impl NodeBuilder {
    pub fn allocatable(mut self, resources: Value) -> Self {
        merge(&mut self.0, json!({"status": {"allocatable": resources}}));
        self
    }

    pub fn labels(mut self, labels: &[(&str, &str)]) -> Self {
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        merge(&mut self.0, json!({"metadata": {"labels": labels}}));
        self
    }

    pub fn zone(self, zone: &str) -> Self {
        self.labels(&[("topology.kubernetes.io/zone", zone)])
    }

    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        let mut taints = self.0["spec"]["taints"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        taints.push(json!({"key": key, "value": value, "effect": effect}));
        merge(&mut self.0, json!({"spec": {"taints": taints}}));
        self
    }

    pub fn unschedulable(mut self) -> Self {
        merge(&mut self.0, json!({"spec": {"unschedulable": true}}));
        self
    }

    pub fn build(self) -> Node {
        serde_json::from_value(self.0).unwrap()
    }

    pub fn delta(self) -> Delta {
        Delta::NodeUpsert(Box::new(self.build()))
    }
}

/// A pod in namespace `default` with one container `c` requesting nothing.
pub struct PodBuilder(Value);

pub fn pod(name: &str) -> PodBuilder {
    PodBuilder(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"containers": [{"name": "c"}]},
    }))
}

impl PodBuilder {
    /// Placed on a node.
    pub fn on(self, node: &str) -> Self {
        self.spec(json!({"nodeName": node}))
    }

    /// The container's requests.
    pub fn requests(self, cpu: &str, memory: &str) -> Self {
        self.spec(json!({"containers": [
            {"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}
        ]}))
    }

    pub fn labels(mut self, labels: &[(&str, &str)]) -> Self {
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        merge(&mut self.0, json!({"metadata": {"labels": labels}}));
        self
    }

    pub fn namespace(mut self, namespace: &str) -> Self {
        merge(&mut self.0, json!({"metadata": {"namespace": namespace}}));
        self
    }

    pub fn meta(mut self, patch: Value) -> Self {
        merge(&mut self.0, json!({"metadata": patch}));
        self
    }

    pub fn spec(mut self, patch: Value) -> Self {
        merge(&mut self.0, json!({"spec": patch}));
        self
    }

    pub fn phase(mut self, phase: &str) -> Self {
        merge(&mut self.0, json!({"status": {"phase": phase}}));
        self
    }

    pub fn build(self) -> Pod {
        serde_json::from_value(self.0).unwrap()
    }

    pub fn delta(self) -> Delta {
        Delta::PodUpsert(Box::new(self.build()))
    }
}

/// A policy fed with deltas.
pub fn policy(deltas: impl IntoIterator<Item = Delta>) -> DefaultPolicy {
    let mut policy = DefaultPolicy::default();
    deltas.into_iter().for_each(|d| policy.apply(d));
    policy
}

pub fn plugin(name: &str, weight: i64, args: Value) -> PluginConfig {
    PluginConfig {
        name: name.into(),
        weight,
        args,
    }
}

/// Runs these filters, no scores.
pub fn filters(names: &[&str]) -> CycleConfig {
    CycleConfig {
        filters: names.iter().map(|n| plugin(n, 0, json!({}))).collect(),
        ..CycleConfig::default()
    }
}

/// Every filter, in the default order.
pub fn all_filters() -> CycleConfig {
    filters(&crate::FILTERS)
}

/// One score plugin with weight 1 and args, no filters.
pub fn score(name: &str, args: Value) -> CycleConfig {
    CycleConfig {
        scores: vec![plugin(name, 1, args)],
        ..CycleConfig::default()
    }
}

/// Schedules against an empty host.
pub fn schedule(policy: &mut DefaultPolicy, pod: &Pod, config: &CycleConfig) -> Verdict {
    schedule_with(&FakeHost::new(), policy, pod, config)
}

pub fn schedule_with(
    fake: &FakeHost,
    policy: &mut DefaultPolicy,
    pod: &Pod,
    config: &CycleConfig,
) -> Verdict {
    policy.schedule(&fake.context(), pod, config).unwrap()
}

/// The feasible nodes' names.
pub fn feasible(verdict: &Verdict) -> Vec<&str> {
    verdict.feasible.iter().map(|s| s.node.as_str()).collect()
}

/// The feasible nodes with their scores.
pub fn scores(verdict: &Verdict) -> Vec<(&str, i64)> {
    verdict
        .feasible
        .iter()
        .map(|s| (s.node.as_str(), s.score))
        .collect()
}

/// The failures as (reason, nodes).
pub fn failures(verdict: &Verdict) -> Vec<(&str, u32)> {
    verdict
        .failures
        .iter()
        .map(|f| (f.reason.as_str(), f.nodes))
        .collect()
}
