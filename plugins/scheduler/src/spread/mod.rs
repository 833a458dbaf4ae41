//! PodTopologySpread: `DoNotSchedule` constraints (filter), `ScheduleAnyway` constraints
//! (score), and the default constraints for pods that have none.

use std::collections::BTreeMap;

use wasmkube_sdk::k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use wasmkube_sdk::k8s_openapi::api::core::v1::{
    Pod, PodSpec, ReplicationController, Service, TopologySpreadConstraint,
};
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use wasmkube_sdk::placement::{RequiredNodeAffinity, untolerated};
use wasmkube_sdk::serde_json::{self, Value};
use wasmkube_sdk::{Context, Error};

use crate::selector::{PodSelector, requirement, with_requirements};
use crate::topology::{Column, NO_DOMAIN};
use crate::view::{NodeInfo, View};

mod filter;
mod score;

pub use filter::SpreadFilter;
pub use score::SpreadScore;

pub const REASON: &str = "node(s) didn't match pod topology spread constraints";
pub const MISSING_LABEL_REASON: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

const HOSTNAME: &str = "kubernetes.io/hostname";
const ZONE: &str = "topology.kubernetes.io/zone";

/// A parsed constraint (Kubernetes' `topologySpreadConstraint`).
struct Constraint {
    max_skew: i64,
    key: String,
    selector: PodSelector,
    min_domains: usize,
    /// `nodeAffinityPolicy: Honor` (the default): only nodes matching the pod's node
    /// selector and required node affinity count.
    honor_affinity: bool,
    /// `nodeTaintsPolicy: Honor`: only nodes whose taints the pod tolerates count.
    honor_taints: bool,
}

/// The incoming pod as the plugin looks at it.
struct Incoming<'p> {
    namespace: &'p str,
    labels: &'p BTreeMap<String, String>,
    spec: &'p PodSpec,
    required: RequiredNodeAffinity,
}

impl<'p> Incoming<'p> {
    fn new(pod: &'p Pod, spec: &'p PodSpec, empty: &'p BTreeMap<String, String>) -> Self {
        Incoming {
            namespace: pod.metadata.namespace.as_deref().unwrap_or_default(),
            labels: pod.metadata.labels.as_ref().unwrap_or(empty),
            spec,
            required: RequiredNodeAffinity::of(spec),
        }
    }

    /// Whether a node counts for a constraint (Kubernetes' `matchNodeInclusionPolicies`).
    fn includes(&self, c: &Constraint, node: &NodeInfo) -> bool {
        let tolerations = self.spec.tolerations.as_deref().unwrap_or_default();
        let affinity = !c.honor_affinity
            || self.required.is_empty()
            || self.required.matches(&node.labels, &node.name);
        affinity
            && (!c.honor_taints
                || untolerated(&node.taints, tolerations, &["NoSchedule", "NoExecute"]).is_none())
    }

    /// For each constraint, the nodes of the existing pods it counts (a node once per pod).
    /// Constraints with the same selector share one pass over the pods.
    fn matching_nodes(&self, view: &View, constraints: &[Constraint]) -> Vec<Vec<usize>> {
        let mut nodes: Vec<Vec<usize>> = Vec::with_capacity(constraints.len());
        for (i, c) in constraints.iter().enumerate() {
            if let Some(same) = constraints[..i]
                .iter()
                .position(|o| o.selector == c.selector)
            {
                nodes.push(nodes[same].clone());
                continue;
            }
            let mut found = Vec::new();
            // Kubernetes' `countPodsMatchSelector`: an empty selector counts nothing; pods of
            // other namespaces and terminating pods do not count.
            if !c.selector.is_everything() {
                view.each_matching(&c.selector, |pod| {
                    if pod.key.namespace == self.namespace
                        && !pod.terminating
                        && let Some(node) = pod.node
                    {
                        found.push(node);
                    }
                });
            }
            nodes.push(found);
        }
        nodes
    }
}

/// The topology keys the plugin may look at for this pod: its constraints' or the defaults'.
pub fn topology_keys<'a>(spec: &'a PodSpec, args: &'a Value) -> Vec<&'a str> {
    let own = spec.topology_spread_constraints.iter().flatten();
    let keys: Vec<&str> = own.map(|c| c.topology_key.as_str()).collect();
    if !keys.is_empty() {
        return keys;
    }
    match args["defaultingType"].as_str().unwrap_or("System") {
        "System" => vec![HOSTNAME, ZONE],
        _ => args["defaultConstraints"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["topologyKey"].as_str())
            .collect(),
    }
}

/// The constraints' columns (the cycle asked the view for them).
fn columns<'v>(view: &'v View, constraints: &[Constraint]) -> Result<Vec<&'v Column>, Error> {
    constraints
        .iter()
        .map(|c| {
            view.column(&c.key)
                .ok_or_else(|| Error::msg(format!("PodTopologySpread: no column for {}", c.key)))
        })
        .collect()
}

/// Whether the node (by index) has every constraint's topology key.
fn has_keys(columns: &[&Column], index: usize) -> bool {
    columns.iter().all(|c| c.domains[index] != NO_DOMAIN)
}

/// The pod's constraints with `action` (`DoNotSchedule` or `ScheduleAnyway`), or, when it has
/// none, the default ones. Also whether nodes must have every topology key to count, which
/// Kubernetes relaxes for its system defaults.
fn constraints(
    ctx: &Context<'_>,
    pod: &Pod,
    spec: &PodSpec,
    args: &Value,
    action: &str,
) -> Result<(Vec<Constraint>, bool), Error> {
    let empty = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    let own = spec
        .topology_spread_constraints
        .as_deref()
        .unwrap_or_default();
    if !own.is_empty() {
        return Ok((parse(own, labels, action)?, true));
    }
    let system = args["defaultingType"].as_str().unwrap_or("System") == "System";
    let defaults = if system {
        vec![soft(HOSTNAME, 3), soft(ZONE, 5)]
    } else {
        let list = args["defaultConstraints"].clone();
        serde_json::from_value::<Option<Vec<TopologySpreadConstraint>>>(list)
            .map_err(|e| Error::msg(format!("PodTopologySpread: defaultConstraints: {e}")))?
            .unwrap_or_default()
    };
    let mut constraints = parse(&defaults, labels, action)?;
    if constraints.is_empty() {
        return Ok((constraints, !system));
    }
    let Some(selector) = default_selector(ctx, pod, labels) else {
        return Ok((Vec::new(), !system));
    };
    for c in &mut constraints {
        c.selector = PodSelector::new(Some(&selector))?;
    }
    Ok((constraints, !system))
}

/// A system default constraint.
fn soft(key: &str, max_skew: i32) -> TopologySpreadConstraint {
    TopologySpreadConstraint {
        topology_key: key.to_string(),
        max_skew,
        when_unsatisfiable: "ScheduleAnyway".to_string(),
        ..TopologySpreadConstraint::default()
    }
}

/// Kubernetes' `filterTopologySpreadConstraints`: `matchLabelKeys` add the pod's own values.
fn parse(
    list: &[TopologySpreadConstraint],
    labels: &BTreeMap<String, String>,
    action: &str,
) -> Result<Vec<Constraint>, Error> {
    list.iter()
        .filter(|c| c.when_unsatisfiable == action)
        .map(|c| {
            let own = c.match_label_keys.iter().flatten();
            let extra = own.filter_map(|k| labels.get(k).map(|v| requirement(k, "In", v)));
            let selector = c
                .label_selector
                .as_ref()
                .map(|s| with_requirements(s, extra));
            Ok(Constraint {
                max_skew: i64::from(c.max_skew),
                key: c.topology_key.clone(),
                selector: PodSelector::new(selector.as_ref())?,
                min_domains: c.min_domains.map_or(1, |m| usize::try_from(m).unwrap_or(0)),
                honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            })
        })
        .collect()
}

/// Kubernetes' `DefaultSelector`: the selectors of the Services selecting the pod and of its
/// controller (ReplicationController, ReplicaSet or StatefulSet), merged; `None` when empty.
/// Objects that cannot be read are left out.
fn default_selector(
    ctx: &Context<'_>,
    pod: &Pod,
    labels: &BTreeMap<String, String>,
) -> Option<LabelSelector> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut set = BTreeMap::new();
    for service in ctx.list::<Service>(namespace, "").unwrap_or_default() {
        let Some(selector) = service.spec.and_then(|s| s.selector) else {
            continue;
        };
        if selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            set.extend(selector);
        }
    }
    let owner = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    let mut owner_selector = None;
    if let Some(owner) = owner {
        let name = owner.name.as_str();
        match (owner.api_version.as_str(), owner.kind.as_str()) {
            ("v1", "ReplicationController") => {
                let rc = ctx.get::<ReplicationController>(namespace, name);
                set.extend(
                    rc.ok()
                        .flatten()
                        .and_then(|r| r.spec?.selector)
                        .unwrap_or_default(),
                );
            }
            ("apps/v1", "ReplicaSet") => {
                let rs = ctx.get::<ReplicaSet>(namespace, name);
                owner_selector = rs.ok().flatten().and_then(|r| Some(r.spec?.selector));
            }
            ("apps/v1", "StatefulSet") => {
                let ss = ctx.get::<StatefulSet>(namespace, name);
                owner_selector = ss.ok().flatten().and_then(|s| Some(s.spec?.selector));
            }
            _ => {}
        }
    }
    let mut selector = LabelSelector {
        match_labels: Some(set),
        match_expressions: None,
    };
    if let Some(owner) = owner_selector.filter(|s| PodSelector::new(Some(s)).is_ok()) {
        let labels = owner.match_labels.iter().flatten();
        let extra = labels
            .map(|(k, v)| requirement(k, "In", v))
            .chain(owner.match_expressions.into_iter().flatten());
        selector = with_requirements(&selector, extra);
    }
    let empty = selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty);
    (!empty).then_some(selector)
}
