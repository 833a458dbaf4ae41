//! One scheduling cycle over a profile's stages: the first stage filters and scores the nodes,
//! each later one filters and scores the feasible nodes found so far; totals are summed and the
//! best node is picked, ties broken at random. Also the `FailedScheduling` message.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::Rng as _;
use wasmkube_runtime::{CallError, CycleConfig, PluginConfig};

use crate::cache::Feed;
use crate::policy::Policy;

/// A running stage: a policy instance, its feed of deltas, and what of it the profile runs.
pub struct Stage {
    pub plugin: String,
    pub policy: Box<dyn Policy>,
    pub feed: Arc<Feed>,
    /// The call's configuration: the profile's filters and scores, with `nodes_to_find` and
    /// `candidates` set for each cycle.
    pub config: CycleConfig,
}

/// The first 12 characters of a version (a module digest).
pub fn short(version: &str) -> &str {
    &version[..version.len().min(12)]
}

/// `plugin@version` of each stage, as statuses show them.
pub fn labels(stages: &[Stage]) -> Vec<String> {
    stages.iter().map(Stage::label).collect()
}

/// What the stages found for one pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Found {
    /// Feasible nodes with their summed scores, in the first stage's order.
    pub feasible: Vec<(String, i64)>,
    /// Failure reasons with their node counts, over all stages.
    pub failures: BTreeMap<String, u32>,
}

/// A stage's call failed: the instance may be poisoned (a trap) or the guest refused.
#[derive(Debug, thiserror::Error)]
#[error("policy {plugin}: {error}")]
pub struct StageError {
    pub plugin: String,
    pub error: CallError,
}

impl Stage {
    pub fn new(
        plugin: String,
        policy: Box<dyn Policy>,
        feed: Arc<Feed>,
        filters: Vec<PluginConfig>,
        scores: Vec<PluginConfig>,
    ) -> Stage {
        Stage {
            plugin,
            policy,
            feed,
            config: CycleConfig {
                filters,
                scores,
                nodes_to_find: 0,
                candidates: None,
            },
        }
    }

    pub fn label(&self) -> String {
        format!("{}@{}", self.plugin, short(self.policy.version()))
    }

    /// Applies the deltas the policy has not seen: one call, however many.
    pub async fn catch_up(&mut self) -> Result<(), StageError> {
        let deltas = self.feed.drain();
        if deltas.is_empty() {
            return Ok(());
        }
        self.policy
            .apply(&deltas)
            .await
            .map_err(|error| StageError {
                plugin: self.plugin.clone(),
                error,
            })
    }
}

/// Runs `stages` for `pod` (its reduced JSON). The first stage looks at `candidates` (all nodes
/// when `None`) and finds up to `nodes_to_find` feasible ones (0: all).
pub async fn run(
    stages: &mut [Stage],
    pod: &String,
    nodes_to_find: usize,
    candidates: Option<Vec<String>>,
) -> Result<Found, StageError> {
    let mut first_candidates = candidates;
    let mut found = Found::default();
    for (i, stage) in stages.iter_mut().enumerate() {
        stage.catch_up().await?;
        stage.config.nodes_to_find = if i == 0 {
            u32::try_from(nodes_to_find).unwrap_or(u32::MAX)
        } else {
            0
        };
        stage.config.candidates = if i == 0 {
            first_candidates.take()
        } else {
            Some(found.feasible.iter().map(|(n, _)| n.clone()).collect())
        };
        let verdict = stage
            .policy
            .schedule(pod, &stage.config)
            .await
            .map_err(|error| StageError {
                plugin: stage.plugin.clone(),
                error,
            })?;
        for failure in verdict.failures {
            *found.failures.entry(failure.reason).or_default() += failure.nodes;
        }
        if i == 0 {
            found.feasible = verdict
                .feasible
                .into_iter()
                .map(|s| (s.node, s.score))
                .collect();
        } else {
            let scores: BTreeMap<String, i64> = verdict
                .feasible
                .into_iter()
                .map(|s| (s.node, s.score))
                .collect();
            found.feasible = found
                .feasible
                .into_iter()
                .filter_map(|(node, total)| scores.get(&node).map(|s| (node, total + s)))
                .collect();
        }
        if found.feasible.is_empty() {
            break;
        }
    }
    Ok(found)
}

impl Found {
    /// The best-scored node, ties broken at random (reservoir sampling, as kube-scheduler).
    pub fn pick(&self) -> Option<&str> {
        let mut best: Option<(&str, i64)> = None;
        let mut ties = 0u32;
        let mut rng = rand::rng();
        for (node, score) in &self.feasible {
            match best {
                Some((_, b)) if *score < b => {}
                Some((_, b)) if *score == b => {
                    ties += 1;
                    if rng.random_range(0..ties) == 0 {
                        best = Some((node, *score));
                    }
                }
                _ => {
                    best = Some((node, *score));
                    ties = 1;
                }
            }
        }
        best.map(|(node, _)| node)
    }

    /// The best score, if any node is feasible.
    pub fn best_score(&self) -> Option<i64> {
        self.feasible.iter().map(|(_, s)| *s).max()
    }

    /// The score of `node`, if feasible.
    pub fn score_of(&self, node: &str) -> Option<i64> {
        self.feasible
            .iter()
            .find(|(n, _)| n == node)
            .map(|(_, s)| *s)
    }

    /// Kubernetes' `FitError` message: `0/5 nodes are available: 2 node(s) had untolerated taint
    /// {dedicated: gpu}, 3 Insufficient cpu.` (reasons with their counts, sorted).
    pub fn message(&self, all_nodes: usize) -> String {
        if all_nodes == 0 {
            return "no nodes available to schedule pods".into();
        }
        let mut reasons: Vec<String> = self
            .failures
            .iter()
            .map(|(reason, n)| format!("{n} {reason}"))
            .collect();
        reasons.sort();
        if reasons.is_empty() {
            format!("0/{all_nodes} nodes are available.")
        } else {
            format!("0/{all_nodes} nodes are available: {}.", reasons.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_like_kubernetes() {
        let found = Found {
            feasible: vec![],
            failures: BTreeMap::from([
                ("Insufficient cpu".to_string(), 3),
                (
                    "node(s) had untolerated taint {dedicated: gpu}".to_string(),
                    2,
                ),
            ]),
        };
        assert_eq!(
            found.message(5),
            "0/5 nodes are available: 2 node(s) had untolerated taint {dedicated: gpu}, 3 Insufficient cpu."
        );
        assert_eq!(found.message(0), "no nodes available to schedule pods");
    }

    #[test]
    fn picks_the_best_and_breaks_ties_at_random() {
        let found = Found {
            feasible: vec![("a".into(), 5), ("b".into(), 9), ("c".into(), 9)],
            failures: BTreeMap::new(),
        };
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            seen.insert(found.pick().map(String::from));
        }
        assert_eq!(seen.len(), 2, "both tied nodes are picked: {seen:?}");
        assert!(!seen.contains(&Some("a".into())));
        assert_eq!(Found::default().pick(), None);
    }
}
