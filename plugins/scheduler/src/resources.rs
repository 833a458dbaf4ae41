//! NodeResourcesFit (filter, and LeastAllocated, MostAllocated and RequestedToCapacityRatio
//! scores) and NodeResourcesBalancedAllocation.

use wasmkube_sdk::Error;
use wasmkube_sdk::serde_json::Value;

use crate::MAX_SCORE;
use crate::requests::{
    CPU, EPHEMERAL_STORAGE, MEMORY, PodRequest, Resources, is_extended, is_scalar,
};
use crate::view::NodeInfo;

/// The NodeResourcesFit filter for one pod.
pub struct FitFilter {
    request: Resources,
    /// The scalar resources to check, each with its reason.
    scalars: Vec<(String, i64, String)>,
}

impl FitFilter {
    /// Reads args `ignoredResources` and `ignoredResourceGroups` (extended resources the
    /// filter does not check).
    pub fn new(request: &PodRequest, args: &Value) -> FitFilter {
        let strings = |field: &str| -> Vec<String> {
            args[field]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        };
        let ignored = strings("ignoredResources");
        let ignored_groups = strings("ignoredResourceGroups");
        let skipped = |name: &str| {
            is_extended(name)
                && (ignored.iter().any(|i| i == name)
                    || name
                        .split_once('/')
                        .is_some_and(|(group, _)| ignored_groups.iter().any(|g| g == group)))
        };
        FitFilter {
            scalars: request
                .requests
                .scalars
                .iter()
                .filter(|(name, value)| *value != 0 && !skipped(name))
                .map(|(name, value)| (name.clone(), *value, format!("Insufficient {name}")))
                .collect(),
            request: request.requests.clone(),
        }
    }

    /// Kubernetes' `fitsRequest`: every insufficient resource of the node is a reason.
    pub fn check<'s>(&'s self, node: &NodeInfo, reasons: &mut Vec<&'s str>) -> bool {
        let before = reasons.len();
        let (want, free, used) = (&self.request, &node.allocatable, &node.requested);
        if node.pods.len() as i64 + 1 > free.pods {
            reasons.push("Too many pods");
        }
        if want.cpu > 0 && want.cpu > free.cpu - used.cpu {
            reasons.push("Insufficient cpu");
        }
        if want.memory > 0 && want.memory > free.memory - used.memory {
            reasons.push("Insufficient memory");
        }
        if want.ephemeral_storage > 0
            && want.ephemeral_storage > free.ephemeral_storage - used.ephemeral_storage
        {
            reasons.push("Insufficient ephemeral-storage");
        }
        for (name, value, reason) in &self.scalars {
            if *value > free.scalar(name) - used.scalar(name) {
                reasons.push(reason);
            }
        }
        reasons.len() == before
    }
}

/// A resource scoring looks at, with its weight.
struct Weighted {
    name: String,
    weight: i64,
}

/// Reads `[{name, weight}]`, by default cpu and memory with weight 1 (a weight of 0 is 1).
fn weighted_resources(list: &Value) -> Vec<Weighted> {
    let Some(list) = list.as_array() else {
        return [CPU, MEMORY]
            .map(|name| Weighted {
                name: name.to_string(),
                weight: 1,
            })
            .into();
    };
    list.iter()
        .filter_map(|r| {
            Some(Weighted {
                name: r["name"].as_str()?.to_string(),
                weight: r["weight"].as_i64().filter(|w| *w != 0).unwrap_or(1),
            })
        })
        .collect()
}

/// A node's allocatable amount of a resource and what would be requested with the pod on it
/// (Kubernetes' `calculateResourceAllocatableRequest`); `(0, 0)` leaves the resource out.
fn allocatable_and_requested(node: &NodeInfo, name: &str, pod: i64, non_zero: bool) -> (i64, i64) {
    if pod == 0 && is_scalar(name) {
        return (0, 0);
    }
    let (free, used) = (&node.allocatable, &node.requested);
    match name {
        CPU if non_zero => (free.cpu, node.non_zero_cpu + pod),
        MEMORY if non_zero => (free.memory, node.non_zero_memory + pod),
        CPU => (free.cpu, used.cpu + pod),
        MEMORY => (free.memory, used.memory + pod),
        EPHEMERAL_STORAGE => (free.ephemeral_storage, used.ephemeral_storage + pod),
        _ => match free.scalar_if_present(name) {
            Some(alloc) => (alloc, used.scalar(name) + pod),
            None => (0, 0),
        },
    }
}

enum Strategy {
    LeastAllocated,
    MostAllocated,
    /// The broken-line function's points: (utilization, score 0..100).
    RequestedToCapacityRatio(Vec<(i64, i64)>),
}

/// The NodeResourcesFit score for one pod.
pub struct FitScore {
    strategy: Strategy,
    resources: Vec<Weighted>,
    /// The pod's request of each resource.
    pod: Vec<i64>,
}

impl FitScore {
    /// Reads args `scoringStrategy`: `type`, `resources` and `requestedToCapacityRatio.shape`.
    pub fn new(request: &PodRequest, args: &Value) -> Result<FitScore, Error> {
        let strategy_args = &args["scoringStrategy"];
        let strategy = match strategy_args["type"].as_str().unwrap_or("LeastAllocated") {
            "LeastAllocated" => Strategy::LeastAllocated,
            "MostAllocated" => Strategy::MostAllocated,
            "RequestedToCapacityRatio" => {
                let shape: Vec<(i64, i64)> = strategy_args["requestedToCapacityRatio"]["shape"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        let utilization = p["utilization"].as_i64().unwrap_or(0);
                        (
                            utilization,
                            p["score"].as_i64().unwrap_or(0) * (MAX_SCORE / 10),
                        )
                    })
                    .collect();
                if shape.is_empty() {
                    return Err(Error::msg(
                        "NodeResourcesFit: RequestedToCapacityRatio needs a shape",
                    ));
                }
                Strategy::RequestedToCapacityRatio(shape)
            }
            other => {
                return Err(Error::msg(format!(
                    "NodeResourcesFit: unknown scoring strategy {other}"
                )));
            }
        };
        let resources = weighted_resources(&strategy_args["resources"]);
        let pod = resources
            .iter()
            .map(|r| request.get(&r.name, true))
            .collect();
        Ok(FitScore {
            strategy,
            resources,
            pod,
        })
    }

    pub fn score(&self, node: &NodeInfo) -> i64 {
        let (mut total, mut weights) = (0, 0);
        for (resource, pod) in self.resources.iter().zip(&self.pod) {
            let (alloc, req) = allocatable_and_requested(node, &resource.name, *pod, true);
            if alloc == 0 {
                continue;
            }
            let score = match &self.strategy {
                Strategy::LeastAllocated if req > alloc => 0,
                Strategy::LeastAllocated => (alloc - req) * MAX_SCORE / alloc,
                Strategy::MostAllocated => req.min(alloc) * MAX_SCORE / alloc,
                Strategy::RequestedToCapacityRatio(shape) => {
                    let utilization = if req > alloc { 100 } else { req * 100 / alloc };
                    let score = broken_linear(shape, utilization);
                    if score <= 0 {
                        continue;
                    }
                    score
                }
            };
            total += score * resource.weight;
            weights += resource.weight;
        }
        match (&self.strategy, weights) {
            (_, 0) => 0,
            (Strategy::RequestedToCapacityRatio(_), _) => {
                (total as f64 / weights as f64).round() as i64
            }
            _ => total / weights,
        }
    }
}

/// Kubernetes' `BuildBrokenLinearFunction`.
fn broken_linear(shape: &[(i64, i64)], p: i64) -> i64 {
    for (i, &(utilization, score)) in shape.iter().enumerate() {
        if p <= utilization {
            let Some(&(prev_utilization, prev_score)) = i.checked_sub(1).map(|j| &shape[j]) else {
                return score;
            };
            return prev_score
                + (score - prev_score) * (p - prev_utilization) / (utilization - prev_utilization);
        }
    }
    shape.last().map_or(0, |&(_, score)| score)
}

/// The NodeResourcesBalancedAllocation score for one pod.
pub struct BalancedScore {
    resources: Vec<String>,
    pod: Vec<i64>,
}

impl BalancedScore {
    /// Reads args `resources` (names; weights are not used). `None` for a best-effort pod
    /// (no requests of these resources), which the plugin skips.
    pub fn new(request: &PodRequest, args: &Value) -> Option<BalancedScore> {
        let resources: Vec<String> = weighted_resources(&args["resources"])
            .into_iter()
            .map(|r| r.name)
            .collect();
        let pod: Vec<i64> = resources.iter().map(|r| request.get(r, false)).collect();
        pod.iter()
            .any(|r| *r != 0)
            .then_some(BalancedScore { resources, pod })
    }

    /// (1 − the standard deviation of the requested fractions) × 100.
    pub fn score(&self, node: &NodeInfo) -> i64 {
        let fractions = || {
            self.resources
                .iter()
                .zip(&self.pod)
                .filter_map(|(name, pod)| {
                    let (alloc, req) = allocatable_and_requested(node, name, *pod, false);
                    (alloc != 0).then(|| (req as f64 / alloc as f64).min(1.0))
                })
        };
        let (count, sum) = fractions().fold((0usize, 0.0), |(n, s), f| (n + 1, s + f));
        let std = match count {
            0 | 1 => 0.0,
            2 => {
                let mut two = fractions();
                let (a, b) = (two.next().unwrap_or(0.0), two.next().unwrap_or(0.0));
                ((a - b) / 2.0).abs()
            }
            _ => {
                let mean = sum / count as f64;
                let squares: f64 = fractions().map(|f| (f - mean) * (f - mean)).sum();
                (squares / count as f64).sqrt()
            }
        };
        ((1.0 - std) * MAX_SCORE as f64) as i64
    }
}
