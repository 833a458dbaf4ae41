//! An example scheduling policy written with the SDK: the score plugin `PreferLabel` gives 100 to
//! nodes whose label `args.key` has the value `args.value` (any value when `args.value` is
//! unset) and 0 to the others. It filters nothing: put it in a profile after the default policy,
//! which finds the feasible nodes, to steer pods towards labelled nodes.

use std::collections::BTreeMap;

use wasmkube_sdk::k8s_openapi::api::core::v1::Pod;
use wasmkube_sdk::scheduling::{Capabilities, CycleConfig, Delta, NodeScore, Policy, Verdict};
use wasmkube_sdk::{Context, Error, serde_json::Value};

/// The policy's view: each node's labels.
#[derive(Default)]
pub struct PreferLabel {
    nodes: BTreeMap<String, BTreeMap<String, String>>,
}

wasmkube_sdk::export_scheduler!(PreferLabel);

impl PreferLabel {
    fn score(&self, labels: &BTreeMap<String, String>, args: &Value) -> i64 {
        let Some(key) = args["key"].as_str() else {
            return 0;
        };
        let matches = match (labels.get(key), args["value"].as_str()) {
            (Some(have), Some(want)) => have == want,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if matches { 100 } else { 0 }
    }
}

impl Policy for PreferLabel {
    fn capabilities() -> Capabilities {
        Capabilities {
            name: "prefer-label".into(),
            filters: vec![],
            scores: vec!["PreferLabel".into()],
        }
    }

    fn apply(&mut self, delta: Delta) {
        match delta {
            Delta::NodeUpsert(node) => {
                let name = node.metadata.name.clone().unwrap_or_default();
                self.nodes
                    .insert(name, node.metadata.labels.unwrap_or_default());
            }
            Delta::NodeRemove(name) => {
                self.nodes.remove(&name);
            }
            Delta::PodUpsert(_) | Delta::PodRemove(_) => {}
        }
    }

    fn schedule(
        &mut self,
        _ctx: &Context<'_>,
        _pod: &Pod,
        config: &CycleConfig,
    ) -> Result<Verdict, Error> {
        let names: Vec<&String> = match &config.candidates {
            Some(candidates) => candidates
                .iter()
                .filter(|n| self.nodes.contains_key(*n))
                .collect(),
            None => self.nodes.keys().collect(),
        };
        let feasible = names
            .iter()
            .map(|name| NodeScore {
                node: (*name).clone(),
                score: config
                    .scores
                    .iter()
                    .filter(|s| s.name == "PreferLabel")
                    .map(|s| s.weight * self.score(&self.nodes[*name], &s.args))
                    .sum(),
            })
            .collect();
        Ok(Verdict {
            feasible,
            failures: vec![],
            evaluated: u32::try_from(names.len()).unwrap_or(u32::MAX),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use wasmkube_sdk::k8s_openapi::api::core::v1::Node;
    use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use wasmkube_sdk::scheduling::PluginConfig;
    use wasmkube_sdk::serde_json::json;
    use wasmkube_sdk::testing::FakeHost;

    use super::*;

    fn node(name: &str, labels: &[(&str, &str)]) -> Delta {
        Delta::NodeUpsert(Box::new(Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            ..Node::default()
        }))
    }

    #[test]
    fn prefers_labelled_candidates() {
        let mut policy = PreferLabel::default();
        policy.apply(node("a", &[("tier", "gold")]));
        policy.apply(node("b", &[("tier", "silver")]));
        policy.apply(node("c", &[]));
        let config = CycleConfig {
            scores: vec![PluginConfig {
                name: "PreferLabel".into(),
                weight: 2,
                args: json!({"key": "tier", "value": "gold"}),
            }],
            candidates: Some(vec!["a".into(), "c".into(), "gone".into()]),
            ..CycleConfig::default()
        };
        let fake = FakeHost::new();
        let verdict = policy
            .schedule(&fake.context(), &Pod::default(), &config)
            .unwrap();
        let scores: Vec<(&str, i64)> = verdict
            .feasible
            .iter()
            .map(|s| (s.node.as_str(), s.score))
            .collect();
        assert_eq!(scores, [("a", 200), ("c", 0)]);
        policy.apply(Delta::NodeRemove("a".into()));
        let verdict = policy
            .schedule(
                &fake.context(),
                &Pod::default(),
                &CycleConfig {
                    candidates: None,
                    ..config
                },
            )
            .unwrap();
        assert!(verdict.feasible.iter().all(|s| s.score == 0));
        assert_eq!(verdict.evaluated, 2);
    }
}
