//! InterPodAffinity: the incoming pod's required pod affinity and anti-affinity and the
//! existing pods' required anti-affinity (filter); preferred terms both ways (score). Counts
//! are kept by topology domain, with the view's columns.

use std::collections::BTreeMap;

use wasmkube_sdk::k8s_openapi::api::core::v1::{Pod, PodSpec};
use wasmkube_sdk::serde_json::Value;
use wasmkube_sdk::{Context, Error};

use crate::hash::FxHashMap;
use crate::terms::{Kind, NamespaceLabels, PodTerms, Term};
use crate::topology::{Column, NO_DOMAIN};
use crate::view::View;
use crate::{MAX_SCORE, Prepared};

pub const AFFINITY_REASON: &str = "node(s) didn't match pod affinity rules";
pub const ANTI_AFFINITY_REASON: &str = "node(s) didn't match pod anti-affinity rules";
pub const EXISTING_ANTI_AFFINITY_REASON: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// The topology keys of the pod's own terms, for the view's columns.
pub fn topology_keys(spec: &PodSpec) -> Vec<&str> {
    let Some(affinity) = spec.affinity.as_ref() else {
        return Vec::new();
    };
    let mut keys = Vec::new();
    if let Some(a) = &affinity.pod_affinity {
        let required = a.required_during_scheduling_ignored_during_execution.iter();
        keys.extend(required.flatten().map(|t| t.topology_key.as_str()));
        let preferred = a
            .preferred_during_scheduling_ignored_during_execution
            .iter();
        keys.extend(
            preferred
                .flatten()
                .map(|t| t.pod_affinity_term.topology_key.as_str()),
        );
    }
    if let Some(a) = &affinity.pod_anti_affinity {
        let required = a.required_during_scheduling_ignored_during_execution.iter();
        keys.extend(required.flatten().map(|t| t.topology_key.as_str()));
        let preferred = a
            .preferred_during_scheduling_ignored_during_execution
            .iter();
        keys.extend(
            preferred
                .flatten()
                .map(|t| t.pod_affinity_term.topology_key.as_str()),
        );
    }
    keys
}

/// Sums by topology pair: for each topology key, a sum per domain of the key's column.
struct DomainSums<'v> {
    view: &'v View,
    sums: Vec<(&'v str, &'v Column, FxHashMap<u32, i64>)>,
    /// Something was added (Kubernetes checks whether its map is empty).
    touched: bool,
}

impl<'v> DomainSums<'v> {
    fn new(view: &'v View) -> Self {
        DomainSums {
            view,
            sums: Vec::new(),
            touched: false,
        }
    }

    /// Adds `value` to the domain of node `index` for `key`; nothing when the node lacks it.
    fn add(&mut self, key: &str, index: usize, value: i64) {
        let position = match self.sums.iter().position(|(k, ..)| *k == key) {
            Some(position) => position,
            None => {
                let Some((key, column)) = self.view.column_entry(key) else {
                    return;
                };
                self.sums.push((key, column, FxHashMap::default()));
                self.sums.len() - 1
            }
        };
        let (_, column, sums) = &mut self.sums[position];
        let domain = column.domains[index];
        if domain != NO_DOMAIN {
            *sums.entry(domain).or_default() += value;
            self.touched = true;
        }
    }

    /// The sum in the domain of node `index` for `key`; `None` when the node lacks the key.
    fn get(&self, key: &str, index: usize) -> Option<i64> {
        let domain = *self.view.column(key)?.domains.get(index)?;
        if domain == NO_DOMAIN {
            return None;
        }
        let sums = self.sums.iter().find(|(k, ..)| *k == key);
        Some(
            sums.and_then(|(_, _, s)| s.get(&domain))
                .copied()
                .unwrap_or(0),
        )
    }

    /// The sums of the node's domains, one per key.
    fn each_at(&self, index: usize) -> impl Iterator<Item = i64> {
        self.sums
            .iter()
            .filter_map(move |(_, column, sums)| sums.get(&column.domains[index]).copied())
    }
}

/// The incoming pod's namespace and labels.
fn identity(pod: &Pod) -> (&str, &BTreeMap<String, String>) {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    (namespace, pod.metadata.labels.as_ref().unwrap_or(&EMPTY))
}

/// The InterPodAffinity filter for one pod, with the counts its PreFilter computes.
pub struct InterPodFilter<'v> {
    terms: PodTerms,
    /// Existing pods matching all the incoming pod's affinity terms.
    affinity: DomainSums<'v>,
    /// Existing pods matching one of its anti-affinity terms.
    anti: DomainSums<'v>,
    /// Existing pods with an anti-affinity term matching the incoming pod.
    existing_anti: DomainSums<'v>,
    /// The incoming pod matches all its own affinity terms.
    self_match: bool,
}

impl<'v> InterPodFilter<'v> {
    pub fn new(view: &'v View, ctx: &Context<'_>, pod: &Pod) -> Result<Prepared<Self>, Error> {
        let terms = match PodTerms::of_incoming(ctx, pod)? {
            Ok(terms) => terms,
            Err(reason) => return Ok(Prepared::Reject(reason)),
        };
        let (namespace, labels) = identity(pod);
        let namespace_labels = NamespaceLabels::new(ctx, namespace);

        let mut existing_anti = DomainSums::new(view);
        view.anti_terms()
            .each_candidate(labels, |(id, kind, position)| {
                let Some((pod, node)) = view.placed(id) else {
                    return;
                };
                let term = pod.terms.as_ref().and_then(|t| t.get(kind, position));
                if let Some((_, term)) = term
                    && term.matches(namespace, labels, Some(&namespace_labels))
                {
                    existing_anti.add(&term.topology_key, node, 1);
                }
            });
        if !existing_anti.touched
            && terms.required_affinity.is_empty()
            && terms.required_anti.is_empty()
        {
            return Ok(Prepared::Skip);
        }

        let mut affinity = DomainSums::new(view);
        if let Some(first) = terms.required_affinity.first() {
            view.each_matching(&first.selector, |existing| {
                let Some(node) = existing.node else {
                    return;
                };
                if terms
                    .required_affinity
                    .iter()
                    .all(|t| t.matches_pod(existing))
                {
                    for term in &terms.required_affinity {
                        affinity.add(&term.topology_key, node, 1);
                    }
                }
            });
        }
        let mut anti = DomainSums::new(view);
        for term in &terms.required_anti {
            view.each_matching(&term.selector, |existing| {
                if let Some(node) = existing.node
                    && term.matches_pod(existing)
                {
                    anti.add(&term.topology_key, node, 1);
                }
            });
        }
        let self_match = !terms.required_affinity.is_empty()
            && terms
                .required_affinity
                .iter()
                .all(|t| t.matches(namespace, labels, None));
        Ok(Prepared::Run(InterPodFilter {
            terms,
            affinity,
            anti,
            existing_anti,
            self_match,
        }))
    }

    /// The reason the node (by index) fails, if it does.
    pub fn check(&self, index: usize) -> Option<&'static str> {
        let mut pods_exist = true;
        for term in &self.terms.required_affinity {
            match self.affinity.get(&term.topology_key, index) {
                None => return Some(AFFINITY_REASON),
                Some(count) if count <= 0 => pods_exist = false,
                Some(_) => {}
            }
        }
        // The first of a group of pods with affinity to each other may go where the topology
        // keys are, when no pod matches yet.
        let first_of_group = !self.affinity.touched && self.self_match;
        if !pods_exist && !first_of_group {
            return Some(AFFINITY_REASON);
        }
        let repelled = |t: &Term| self.anti.get(&t.topology_key, index).is_some_and(|c| c > 0);
        if self.anti.touched && self.terms.required_anti.iter().any(repelled) {
            return Some(ANTI_AFFINITY_REASON);
        }
        let conflicts = self.existing_anti.each_at(index).any(|count| count > 0);
        conflicts.then_some(EXISTING_ANTI_AFFINITY_REASON)
    }
}

/// The InterPodAffinity score for one pod: weights by topology domain.
pub struct InterPodScore<'v>(DomainSums<'v>);

impl<'v> InterPodScore<'v> {
    /// Reads args `hardPodAffinityWeight` (default 1) and `ignorePreferredTermsOfExistingPods`.
    /// `None` when no term applies: every node scores 0.
    pub fn new(
        view: &'v View,
        ctx: &Context<'_>,
        pod: &Pod,
        args: &Value,
    ) -> Result<Option<Self>, Error> {
        let hard_weight = args["hardPodAffinityWeight"].as_i64().unwrap_or(1);
        let ignore_existing = args["ignorePreferredTermsOfExistingPods"]
            .as_bool()
            .unwrap_or(false);
        let terms = PodTerms::of_incoming(ctx, pod)?.map_err(Error::msg)?;
        let has_preferred =
            !terms.preferred_affinity.is_empty() || !terms.preferred_anti.is_empty();
        if ignore_existing && !has_preferred {
            return Ok(None);
        }
        let (namespace, labels) = identity(pod);
        let namespace_labels = NamespaceLabels::new(ctx, namespace);

        let mut sums = DomainSums::new(view);
        let affinity = terms.preferred_affinity.iter().map(|(w, t)| (*w, t));
        let anti = terms.preferred_anti.iter().map(|(w, t)| (-w, t));
        for (weight, term) in affinity.chain(anti) {
            view.each_matching(&term.selector, |existing| {
                if let Some(node) = existing.node
                    && term.matches_pod(existing)
                {
                    sums.add(&term.topology_key, node, weight);
                }
            });
        }
        view.score_terms()
            .each_candidate(labels, |(id, kind, position)| {
                let Some((existing, node)) = view.placed(id) else {
                    return;
                };
                let Some((weight, term)) =
                    existing.terms.as_ref().and_then(|t| t.get(kind, position))
                else {
                    return;
                };
                let weight = match kind {
                    Kind::RequiredAffinity if hard_weight > 0 => hard_weight,
                    Kind::PreferredAffinity => weight,
                    Kind::PreferredAnti => -weight,
                    Kind::RequiredAffinity | Kind::RequiredAnti => return,
                };
                if term.matches(namespace, labels, Some(&namespace_labels)) {
                    sums.add(&term.topology_key, node, weight);
                }
            });
        Ok(sums.touched.then_some(InterPodScore(sums)))
    }

    pub fn score(&self, index: usize) -> i64 {
        self.0.each_at(index).sum()
    }
}

/// Min-max normalization to 0..100.
pub fn normalize(scores: &mut [i64]) {
    let (Some(&min), Some(&max)) = (scores.iter().min(), scores.iter().max()) else {
        return;
    };
    for score in scores {
        *score = if max > min {
            (MAX_SCORE as f64 * ((*score - min) as f64 / (max - min) as f64)) as i64
        } else {
            0
        };
    }
}
