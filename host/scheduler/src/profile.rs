//! Scheduler profiles: which policy plugins schedule the pods naming a scheduler, with which
//! filters, score weights and arguments, and a candidate policy in shadow mode. Read from
//! `SchedulerProfile` objects; the built-in default stands in for `default-scheduler` until one
//! names it.

use serde_json::Value;
use wasmkube_runtime::{Capabilities, PluginConfig};

/// The scheduler name of pods that name none.
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";
/// The Plugin running the default policy (`server --plugin wasmkube_policy_default.wasm`).
pub const DEFAULT_POLICY: &str = "default";

/// One stage of a profile: a policy plugin and what of it to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// The Plugin's name.
    pub plugin: String,
    /// `None`: all of the component's filters.
    pub filters: Option<Vec<PluginConfig>>,
    /// `None`: all of the component's scores, weight 1.
    pub scores: Option<Vec<PluginConfig>>,
}

impl Stage {
    /// The filters and scores to run with a component that offers `capabilities`, or which
    /// named plugin it lacks.
    pub fn plugins(
        &self,
        capabilities: &Capabilities,
    ) -> Result<(Vec<PluginConfig>, Vec<PluginConfig>), String> {
        let all = |names: &[String]| -> Vec<PluginConfig> {
            names
                .iter()
                .map(|name| PluginConfig {
                    name: name.clone(),
                    weight: 1,
                    args: "{}".into(),
                })
                .collect()
        };
        let filters = self
            .filters
            .clone()
            .unwrap_or_else(|| all(&capabilities.filters));
        let scores = self
            .scores
            .clone()
            .unwrap_or_else(|| all(&capabilities.scores));
        for (kind, wanted, offered) in [
            ("filter", &filters, &capabilities.filters),
            ("score", &scores, &capabilities.scores),
        ] {
            if let Some(missing) = wanted.iter().find(|p| !offered.contains(&p.name)) {
                return Err(format!(
                    "policy {:?} has no {kind} plugin {:?}",
                    self.plugin, missing.name
                ));
            }
        }
        Ok((filters, scores))
    }
}

/// A profile as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// The SchedulerProfile object's name (empty for the built-in default).
    pub object: String,
    pub scheduler_name: String,
    /// 0: adaptive, as Kubernetes.
    pub percentage_of_nodes_to_score: u32,
    pub policies: Vec<Stage>,
    pub shadow: Vec<Stage>,
}

fn config(name: &str, weight: i64, args: &str) -> PluginConfig {
    PluginConfig {
        name: name.into(),
        weight,
        args: args.into(),
    }
}

impl Profile {
    /// Kubernetes' default profile over the default policy plugin: its filters, and its score
    /// plugins with the default weights.
    pub fn default_profile() -> Profile {
        let filters = [
            "NodeUnschedulable",
            "NodeName",
            "TaintToleration",
            "NodeAffinity",
            "NodePorts",
            "NodeResourcesFit",
            "VolumeBinding",
            "PodTopologySpread",
            "InterPodAffinity",
        ];
        let scores = vec![
            config(
                "NodeResourcesFit",
                1,
                r#"{"scoringStrategy":{"type":"LeastAllocated"}}"#,
            ),
            config("NodeResourcesBalancedAllocation", 1, "{}"),
            config("InterPodAffinity", 2, "{}"),
            config("NodeAffinity", 2, "{}"),
            config("PodTopologySpread", 2, "{}"),
            config("TaintToleration", 3, "{}"),
        ];
        Profile {
            object: String::new(),
            scheduler_name: DEFAULT_SCHEDULER.into(),
            percentage_of_nodes_to_score: 0,
            policies: vec![Stage {
                plugin: DEFAULT_POLICY.into(),
                filters: Some(filters.iter().map(|f| config(f, 1, "{}")).collect()),
                scores: Some(scores),
            }],
            shadow: Vec::new(),
        }
    }

    /// The profile a `SchedulerProfile` object describes (its schema was checked on write).
    pub fn from_object(obj: &Value) -> Profile {
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let spec = &obj["spec"];
        Profile {
            object: name.to_string(),
            scheduler_name: spec["schedulerName"]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or(name)
                .to_string(),
            percentage_of_nodes_to_score: spec["percentageOfNodesToScore"]
                .as_u64()
                .and_then(|p| u32::try_from(p).ok())
                .unwrap_or(0),
            policies: stages(&spec["policies"]),
            shadow: stages(&spec["shadow"]["policies"]),
        }
    }

    /// Every Plugin the profile runs, the shadow's included.
    pub fn plugins(&self) -> impl Iterator<Item = &str> {
        self.policies
            .iter()
            .chain(&self.shadow)
            .map(|s| s.plugin.as_str())
    }

    /// How many feasible nodes to find before scoring, of `nodes`: Kubernetes'
    /// `numFeasibleNodesToFind` (all of them up to 100 nodes; adaptively 50 % less 1 % per 125
    /// nodes, at least 5 %, when the percentage is 0; at least 100 nodes).
    pub fn nodes_to_find(&self, nodes: usize) -> usize {
        const MIN_FEASIBLE: usize = 100;
        if nodes < MIN_FEASIBLE || self.percentage_of_nodes_to_score >= 100 {
            return nodes;
        }
        let percentage = match self.percentage_of_nodes_to_score {
            0 => 50usize.saturating_sub(nodes / 125).max(5),
            p => p as usize,
        };
        (nodes * percentage / 100).max(MIN_FEASIBLE)
    }
}

fn stages(list: &Value) -> Vec<Stage> {
    let plugins = |v: &Value| -> Option<Vec<PluginConfig>> {
        v.as_array().map(|list| {
            list.iter()
                .map(|p| PluginConfig {
                    name: p["name"].as_str().unwrap_or_default().to_string(),
                    weight: p["weight"].as_i64().unwrap_or(1),
                    args: if p["args"].is_object() {
                        p["args"].to_string()
                    } else {
                        "{}".into()
                    },
                })
                .collect()
        })
    };
    list.as_array()
        .into_iter()
        .flatten()
        .map(|s| Stage {
            plugin: s["plugin"].as_str().unwrap_or_default().to_string(),
            filters: plugins(&s["filters"]),
            scores: plugins(&s["scores"]),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn adaptive_nodes_to_find_like_kubernetes() {
        let p = Profile::default_profile();
        assert_eq!(p.nodes_to_find(50), 50);
        assert_eq!(p.nodes_to_find(1000), 420); // 50 - 8 = 42 %
        assert_eq!(p.nodes_to_find(5000), 500); // 50 - 40 = 10 %
        assert_eq!(p.nodes_to_find(100_000), 5000); // at least 5 %
        let fixed = Profile {
            percentage_of_nodes_to_score: 1,
            ..p
        };
        assert_eq!(fixed.nodes_to_find(5000), 100, "never fewer than 100");
    }

    #[test]
    fn reads_an_object() {
        let obj = json!({"metadata": {"name": "gold"}, "spec": {
            "policies": [{"plugin": "default"}, {"plugin": "prefer", "scores": [{"name": "PreferLabel", "weight": 5, "args": {"key": "tier"}}]}],
            "shadow": {"policies": [{"plugin": "candidate", "filters": []}]}}});
        let p = Profile::from_object(&obj);
        assert_eq!(p.scheduler_name, "gold");
        assert_eq!(
            p.plugins().collect::<Vec<_>>(),
            ["default", "prefer", "candidate"]
        );
        let caps = Capabilities {
            name: "x".into(),
            filters: vec!["F".into()],
            scores: vec!["S".into()],
        };
        let (filters, scores) = p.policies[0].plugins(&caps).expect("offered");
        assert_eq!((filters[0].name.as_str(), scores[0].weight), ("F", 1));
        let err = p.policies[1]
            .plugins(&caps)
            .expect_err("PreferLabel is not offered");
        assert_eq!(err, r#"policy "prefer" has no score plugin "PreferLabel""#);
        let caps = Capabilities {
            scores: vec!["PreferLabel".into()],
            ..caps
        };
        let (filters, scores) = p.policies[1].plugins(&caps).expect("offered");
        assert_eq!(filters[0].name, "F");
        assert_eq!(
            (scores[0].weight, scores[0].args.as_str()),
            (5, r#"{"key":"tier"}"#)
        );
        assert!(p.shadow[0].plugins(&caps).expect("offered").0.is_empty());
    }
}
