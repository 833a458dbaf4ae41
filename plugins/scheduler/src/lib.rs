//! The default scheduling policy: kube-scheduler's default filter and score plugins
//! (Kubernetes v1.32) over a view of the cluster kept from deltas, and the scheduling cycle
//! that runs the plugins a profile names.

mod affinity;
mod hash;
mod interpod;
mod ports;
mod requests;
mod resources;
mod selector;
mod spread;
mod taints;
mod terms;
mod topology;
mod view;
mod volumes;

#[cfg(test)]
mod tests;

use wasmkube_sdk::k8s_openapi::api::core::v1::{Pod, PodSpec, Toleration};
use wasmkube_sdk::scheduling::{
    Capabilities, CycleConfig, Delta, Failure, NodeScore, PluginConfig, Policy, Verdict,
};
use wasmkube_sdk::{Context, Error};

use crate::affinity::{NodeAffinityFilter, NodeAffinityScore};
use crate::hash::FxHashMap;
use crate::interpod::{InterPodFilter, InterPodScore};
use crate::ports::PortsFilter;
use crate::requests::PodRequest;
use crate::resources::{BalancedScore, FitFilter, FitScore};
use crate::spread::{SpreadFilter, SpreadScore};
use crate::taints::TaintScore;
use crate::view::{NodeInfo, View};
use crate::volumes::VolumeFilter;

/// The filter plugins, in kube-scheduler's default order.
const FILTERS: [&str; 9] = [
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

/// The score plugins.
const SCORES: [&str; 6] = [
    "NodeResourcesFit",
    "NodeResourcesBalancedAllocation",
    "NodeAffinity",
    "TaintToleration",
    "InterPodAffinity",
    "PodTopologySpread",
];

/// The highest score a plugin gives a node.
const MAX_SCORE: i64 = 100;

const NODE_NAME_REASON: &str = "node(s) didn't match the requested node name";

/// The default policy: the view, and where the last cycle stopped looking at nodes.
#[derive(Default)]
pub struct DefaultPolicy {
    view: View,
    next_start: usize,
}

wasmkube_sdk::export_scheduler!(DefaultPolicy);

/// What preparing a filter for a pod found: run it on each node, skip it (every node passes),
/// or reject the pod on every node for a reason.
enum Prepared<T> {
    Run(T),
    Skip,
    Reject(String),
}

impl<T> Prepared<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Prepared<U> {
        match self {
            Prepared::Run(t) => Prepared::Run(f(t)),
            Prepared::Skip => Prepared::Skip,
            Prepared::Reject(reason) => Prepared::Reject(reason),
        }
    }
}

impl Policy for DefaultPolicy {
    fn capabilities() -> Capabilities {
        Capabilities {
            name: "default".into(),
            filters: FILTERS.map(String::from).into(),
            scores: SCORES.map(String::from).into(),
        }
    }

    fn apply(&mut self, delta: Delta) {
        self.view.apply(delta);
    }

    fn schedule(
        &mut self,
        ctx: &Context<'_>,
        pod: &Pod,
        config: &CycleConfig,
    ) -> Result<Verdict, Error> {
        let unknown = |plugins: &[PluginConfig], known: &[&str], kind: &str| {
            let unknown = plugins.iter().find(|p| !known.contains(&p.name.as_str()));
            unknown.map_or(Ok(()), |p| {
                Err(Error::msg(format!("unknown {kind} plugin {}", p.name)))
            })
        };
        unknown(&config.filters, &FILTERS, "filter")?;
        unknown(&config.scores, &SCORES, "score")?;
        self.view.refresh_order();
        let default_spec = PodSpec::default();
        let spec = pod.spec.as_ref().unwrap_or(&default_spec);
        for plugin in config.filters.iter().chain(&config.scores) {
            match plugin.name.as_str() {
                "PodTopologySpread" => self
                    .view
                    .add_columns(spread::topology_keys(spec, &plugin.args)),
                "InterPodAffinity" => self.view.add_columns(interpod::topology_keys(spec)),
                _ => {}
            }
        }
        let DefaultPolicy { view, next_start } = self;
        let cycle = Cycle {
            view,
            ctx,
            pod,
            spec,
            request: PodRequest::of(spec),
        };
        cycle.run(config, next_start)
    }
}

/// One scheduling cycle: the pod and what it is scheduled against.
struct Cycle<'a> {
    view: &'a View,
    ctx: &'a Context<'a>,
    pod: &'a Pod,
    spec: &'a PodSpec,
    request: PodRequest,
}

/// What filtering found.
struct Search<'s> {
    feasible: Vec<usize>,
    failures: FxHashMap<&'s str, u32>,
    evaluated: usize,
}

impl<'a> Cycle<'a> {
    fn run(&self, config: &CycleConfig, next_start: &mut usize) -> Result<Verdict, Error> {
        let candidates: Option<Vec<usize>> = config.candidates.as_ref().map(|names| {
            let indices = names.iter().filter_map(|n| self.view.node_index(n));
            indices.collect()
        });
        let scope: &[usize] = candidates.as_deref().unwrap_or(self.view.order());
        let mut filters = Vec::with_capacity(config.filters.len());
        for plugin in &config.filters {
            match self.filter(plugin)? {
                Prepared::Run(filter) => filters.push(filter),
                Prepared::Skip => {}
                Prepared::Reject(reason) => return Ok(rejected(reason, scope.len())),
            }
        }
        let pinned = match self.pinned(config, scope) {
            Prepared::Run(nodes) => Some(nodes),
            Prepared::Skip => None,
            Prepared::Reject(reason) => return Ok(rejected(reason, scope.len())),
        };
        // Only a search over every node rotates and stops early (candidates were found that
        // way; pinned pods have few nodes).
        let search = match pinned.as_deref() {
            Some(nodes) => self.search(&filters, nodes, 0, 0),
            None if candidates.is_some() || scope.is_empty() => self.search(&filters, scope, 0, 0),
            None => {
                let start = *next_start % scope.len();
                let search = self.search(&filters, scope, start, config.nodes_to_find);
                *next_start = (start + search.evaluated) % scope.len();
                search
            }
        };
        let mut totals = vec![0i64; search.feasible.len()];
        for plugin in &config.scores {
            let scores = self.score(plugin, &search.feasible)?;
            for (total, score) in totals.iter_mut().zip(scores) {
                *total += plugin.weight * score;
            }
        }
        Ok(self.verdict(search, totals))
    }

    /// NodeAffinity's PreFilter: the nodes of the scope a pod pinned by `matchFields` names.
    fn pinned(&self, config: &CycleConfig, scope: &[usize]) -> Prepared<Vec<usize>> {
        if !config.filters.iter().any(|p| p.name == "NodeAffinity") {
            return Prepared::Skip;
        }
        match affinity::node_names(self.spec) {
            None => Prepared::Skip,
            Some(names) if names.is_empty() => Prepared::Reject(affinity::CONFLICT_REASON.into()),
            Some(names) => Prepared::Run(
                scope
                    .iter()
                    .copied()
                    .filter(|&i| names.contains(&self.view.nodes()[i].name))
                    .collect(),
            ),
        }
    }

    /// Runs the filters over `nodes` from `start` on (wrapping around), until `limit` feasible
    /// nodes are found (0: no limit).
    fn search<'s>(
        &self,
        filters: &'s [Filter<'a>],
        nodes: &[usize],
        start: usize,
        limit: usize,
    ) -> Search<'s> {
        let mut search = Search {
            feasible: Vec::new(),
            failures: FxHashMap::default(),
            evaluated: 0,
        };
        let mut reasons = Vec::new();
        for k in 0..nodes.len() {
            if limit > 0 && search.feasible.len() >= limit {
                break;
            }
            let index = nodes[(start + k) % nodes.len()];
            let node = &self.view.nodes()[index];
            search.evaluated += 1;
            reasons.clear();
            if filters.iter().all(|f| f.check(index, node, &mut reasons)) {
                search.feasible.push(index);
            }
            for reason in &reasons {
                *search.failures.entry(reason).or_default() += 1;
            }
        }
        search
    }

    /// The verdict: feasible nodes with their total scores, failures sorted by reason.
    fn verdict(&self, search: Search<'_>, totals: Vec<i64>) -> Verdict {
        let mut failures: Vec<Failure> = search
            .failures
            .into_iter()
            .map(|(reason, nodes)| Failure {
                reason: reason.to_string(),
                nodes,
            })
            .collect();
        failures.sort_by(|a, b| a.reason.cmp(&b.reason));
        let feasible = search.feasible.iter().zip(totals);
        Verdict {
            feasible: feasible
                .map(|(&index, score)| NodeScore {
                    node: self.view.nodes()[index].name.clone(),
                    score,
                })
                .collect(),
            failures,
            evaluated: count(search.evaluated),
        }
    }

    fn tolerations(&self) -> &'a [Toleration] {
        self.spec.tolerations.as_deref().unwrap_or_default()
    }

    /// Prepares a filter plugin for the pod (its PreFilter).
    fn filter(&self, plugin: &PluginConfig) -> Result<Prepared<Filter<'a>>, Error> {
        let (view, ctx, pod, spec, args) = (self.view, self.ctx, self.pod, self.spec, &plugin.args);
        Ok(match plugin.name.as_str() {
            "NodeUnschedulable" if taints::tolerates_unschedulable(self.tolerations()) => {
                Prepared::Skip
            }
            "NodeUnschedulable" => Prepared::Run(Filter::Unschedulable),
            "NodeName" => match spec.node_name.as_deref() {
                Some(name) if !name.is_empty() => Prepared::Run(Filter::NodeName(name)),
                _ => Prepared::Skip,
            },
            "TaintToleration" => Prepared::Run(Filter::Taints(self.tolerations())),
            "NodeAffinity" => NodeAffinityFilter::new(spec, args)?
                .map_or(Prepared::Skip, |f| Prepared::Run(Filter::NodeAffinity(f))),
            "NodePorts" => {
                PortsFilter::new(spec).map_or(Prepared::Skip, |f| Prepared::Run(Filter::Ports(f)))
            }
            "NodeResourcesFit" => Prepared::Run(Filter::Fit(FitFilter::new(&self.request, args))),
            "VolumeBinding" => VolumeFilter::new(ctx, pod, spec)?.map(Filter::Volumes),
            "PodTopologySpread" => {
                SpreadFilter::new(view, ctx, pod, spec, args)?.map(Filter::Spread)
            }
            "InterPodAffinity" => InterPodFilter::new(view, ctx, pod)?.map(Filter::InterPod),
            other => return Err(Error::msg(format!("unknown filter plugin {other}"))),
        })
    }

    /// Runs a score plugin over the feasible nodes: its scores normalized to 0..100.
    fn score(&self, plugin: &PluginConfig, feasible: &[usize]) -> Result<Vec<i64>, Error> {
        let (view, ctx, pod, spec, args) = (self.view, self.ctx, self.pod, self.spec, &plugin.args);
        let nodes = || feasible.iter().map(|&i| &view.nodes()[i]);
        let each = |score: &dyn Fn(&NodeInfo) -> i64| nodes().map(score).collect::<Vec<i64>>();
        let zeros = || vec![0; feasible.len()];
        Ok(match plugin.name.as_str() {
            "NodeResourcesFit" => {
                let fit = FitScore::new(&self.request, args)?;
                each(&|n| fit.score(n))
            }
            "NodeResourcesBalancedAllocation" => match BalancedScore::new(&self.request, args) {
                Some(balanced) => each(&|n| balanced.score(n)),
                None => zeros(),
            },
            "NodeAffinity" => {
                let affinity = NodeAffinityScore::new(spec, args)?;
                normalize(each(&|n| affinity.score(n)), false)
            }
            "TaintToleration" => {
                let taints = TaintScore::new(self.tolerations());
                normalize(each(&|n| taints.score(n)), true)
            }
            "InterPodAffinity" => match InterPodScore::new(view, ctx, pod, args)? {
                Some(interpod) => {
                    let mut scores: Vec<i64> =
                        feasible.iter().map(|&i| interpod.score(i)).collect();
                    interpod::normalize(&mut scores);
                    scores
                }
                None => zeros(),
            },
            "PodTopologySpread" => match SpreadScore::new(view, ctx, pod, spec, args, feasible)? {
                Some(spread) => spread.scores(feasible),
                None => zeros(),
            },
            other => return Err(Error::msg(format!("unknown score plugin {other}"))),
        })
    }
}

/// A filter prepared for one pod.
enum Filter<'a> {
    Unschedulable,
    NodeName(&'a str),
    Taints(&'a [Toleration]),
    NodeAffinity(NodeAffinityFilter),
    Ports(PortsFilter),
    Fit(FitFilter),
    Volumes(VolumeFilter),
    Spread(SpreadFilter<'a>),
    InterPod(InterPodFilter<'a>),
}

impl<'a> Filter<'a> {
    /// Whether the node (and its index) passes; if not, why (in `reasons`).
    fn check<'s>(&'s self, index: usize, node: &'a NodeInfo, reasons: &mut Vec<&'s str>) -> bool {
        let reason = match self {
            Filter::Unschedulable => node.unschedulable.then_some(taints::UNSCHEDULABLE_REASON),
            Filter::NodeName(name) => (*name != node.name).then_some(NODE_NAME_REASON),
            Filter::Taints(tolerations) => taints::check(node, tolerations),
            Filter::NodeAffinity(f) => f.check(node),
            Filter::Ports(f) => (!f.check(node)).then_some(ports::REASON),
            Filter::Fit(f) => return f.check(node, reasons),
            Filter::Volumes(f) => f.check(node),
            Filter::Spread(f) => f.check(index),
            Filter::InterPod(f) => f.check(index),
        };
        reasons.extend(reason);
        reason.is_none()
    }
}

/// Every node of the scope fails for one pod-level reason.
fn rejected(reason: String, nodes: usize) -> Verdict {
    Verdict {
        feasible: Vec::new(),
        failures: vec![Failure {
            reason,
            nodes: count(nodes),
        }],
        evaluated: count(nodes),
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Kubernetes' `DefaultNormalizeScore`: scaled so the highest is 100 (reversed: the highest
/// is 0 and the lowest 100); all zero stays zero, or becomes 100 when reversed.
fn normalize(mut scores: Vec<i64>, reverse: bool) -> Vec<i64> {
    let max = scores.iter().copied().max().unwrap_or(0);
    for score in &mut scores {
        if max <= 0 {
            if reverse {
                *score = MAX_SCORE;
            }
            continue;
        }
        let scaled = MAX_SCORE * *score / max;
        *score = if reverse { MAX_SCORE - scaled } else { scaled };
    }
    scores
}
