//! NodeAffinity: the pod's node selector and required node affinity, and args'
//! `addedAffinity` (filter); preferred terms (score); the nodes `matchFields` pins a pod to.

use std::collections::BTreeSet;

use wasmkube_sdk::Error;
use wasmkube_sdk::k8s_openapi::api::core::v1::{NodeAffinity, PodSpec};
use wasmkube_sdk::placement::{NodeSelectorTerms, RequiredNodeAffinity, SelectorTerm};
use wasmkube_sdk::serde_json::{self, Value};

use crate::view::NodeInfo;

pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";
pub const ENFORCED_REASON: &str = "node(s) didn't match scheduler-enforced node affinity";
pub const CONFLICT_REASON: &str = "pod affinity terms conflict";

/// Args `addedAffinity`: node affinity the profile adds to every pod.
fn added_affinity(args: &Value) -> Result<Option<NodeAffinity>, Error> {
    serde_json::from_value(args["addedAffinity"].clone())
        .map_err(|e| Error::msg(format!("NodeAffinity: addedAffinity: {e}")))
}

/// The NodeAffinity filter for one pod.
pub struct NodeAffinityFilter {
    added: Option<NodeSelectorTerms>,
    required: RequiredNodeAffinity,
}

impl NodeAffinityFilter {
    /// `None` when neither the pod nor the args require anything.
    pub fn new(spec: &PodSpec, args: &Value) -> Result<Option<NodeAffinityFilter>, Error> {
        let added = added_affinity(args)?
            .and_then(|a| a.required_during_scheduling_ignored_during_execution)
            .map(|s| NodeSelectorTerms::new(&s));
        let required = RequiredNodeAffinity::of(spec);
        if added.is_none() && required.is_empty() {
            return Ok(None);
        }
        Ok(Some(NodeAffinityFilter { added, required }))
    }

    /// The reason the node fails, if it does.
    pub fn check(&self, node: &NodeInfo) -> Option<&'static str> {
        if let Some(added) = &self.added
            && !added.matches(&node.labels, &node.name)
        {
            return Some(ENFORCED_REASON);
        }
        (!self.required.matches(&node.labels, &node.name)).then_some(REASON)
    }
}

/// The nodes the pod's required node affinity names with `matchFields` `metadata.name In`
/// (Kubernetes' NodeAffinity PreFilter): `None` when some term does not limit the names.
pub fn node_names(spec: &PodSpec) -> Option<BTreeSet<String>> {
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    let mut names = BTreeSet::new();
    for term in terms {
        let mut term_names: Option<BTreeSet<String>> = None;
        for r in term.match_fields.iter().flatten() {
            if r.key == "metadata.name" && r.operator == "In" {
                let values: BTreeSet<String> = r.values.iter().flatten().cloned().collect();
                term_names = Some(match term_names {
                    Some(names) => names.intersection(&values).cloned().collect(),
                    None => values,
                });
            }
        }
        names.extend(term_names?);
    }
    (!terms.is_empty()).then_some(names)
}

/// The NodeAffinity score for one pod: the weights of the preferred terms a node matches.
pub struct NodeAffinityScore(Vec<(i64, SelectorTerm)>);

impl NodeAffinityScore {
    /// The pod's preferred terms and args' `addedAffinity` preferred terms; terms with weight
    /// 0 are left out, terms that do not parse match nothing.
    pub fn new(spec: &PodSpec, args: &Value) -> Result<NodeAffinityScore, Error> {
        let added = added_affinity(args)?;
        let own = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref());
        let mut terms = Vec::new();
        for affinity in [added.as_ref(), own].into_iter().flatten() {
            let preferred = &affinity.preferred_during_scheduling_ignored_during_execution;
            terms.extend(
                preferred
                    .iter()
                    .flatten()
                    .filter(|t| t.weight != 0)
                    .map(|t| (i64::from(t.weight), SelectorTerm::new(&t.preference))),
            );
        }
        Ok(NodeAffinityScore(terms))
    }

    pub fn score(&self, node: &NodeInfo) -> i64 {
        self.0
            .iter()
            .filter(|(_, term)| term.matches(&node.labels, &node.name))
            .map(|(weight, _)| weight)
            .sum()
    }
}
