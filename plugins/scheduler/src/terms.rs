//! Pod affinity and anti-affinity terms: parsed from pods (Kubernetes' `AffinityTerm`), matched
//! against pods, and indexed by the labels they select so that a cycle finds the existing pods'
//! terms that may match the incoming pod without looking at every pod.

use std::cell::OnceCell;
use std::collections::BTreeMap;

use wasmkube_sdk::k8s_openapi::api::core::v1::{
    Namespace, Pod, PodAffinityTerm, WeightedPodAffinityTerm,
};
use wasmkube_sdk::selector::{self, Selector};
use wasmkube_sdk::{Context, Error};

use crate::hash::{FxHashMap, FxHashSet};
use crate::selector::{Hint, PodSelector, requirement, with_requirements};
use crate::view::{PodId, PodInfo};

/// A parsed pod affinity term.
#[derive(Debug)]
pub struct Term {
    pub selector: PodSelector,
    namespaces: Vec<String>,
    /// `None`: no namespace selector (matches no namespace); an empty one matches all.
    namespace_selector: Option<Selector>,
    pub topology_key: String,
}

/// Which list of a pod's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    RequiredAffinity,
    RequiredAnti,
    PreferredAffinity,
    PreferredAnti,
}

/// Every kind of term.
pub const ALL_KINDS: &[Kind] = &[
    Kind::RequiredAffinity,
    Kind::RequiredAnti,
    Kind::PreferredAffinity,
    Kind::PreferredAnti,
];

/// A pod's pod affinity and anti-affinity terms; preferred terms with their weights.
#[derive(Debug, Default)]
pub struct PodTerms {
    pub required_affinity: Vec<Term>,
    pub required_anti: Vec<Term>,
    pub preferred_affinity: Vec<(i64, Term)>,
    pub preferred_anti: Vec<(i64, Term)>,
}

/// The labels of the incoming pod's namespace, read once when a namespace selector of an
/// existing pod's term needs them (none when the namespace cannot be read).
pub struct NamespaceLabels<'c> {
    ctx: &'c Context<'c>,
    namespace: &'c str,
    labels: OnceCell<BTreeMap<String, String>>,
}

impl<'c> NamespaceLabels<'c> {
    pub fn new(ctx: &'c Context<'c>, namespace: &'c str) -> NamespaceLabels<'c> {
        NamespaceLabels {
            ctx,
            namespace,
            labels: OnceCell::new(),
        }
    }

    fn get(&self) -> &BTreeMap<String, String> {
        self.labels.get_or_init(|| {
            let namespace = self.ctx.get::<Namespace>("", self.namespace);
            namespace
                .ok()
                .flatten()
                .and_then(|n| n.metadata.labels)
                .unwrap_or_default()
        })
    }
}

impl Term {
    /// A term of a pod in `namespace` with `labels`; `matchLabelKeys` and `mismatchLabelKeys`
    /// become `In` and `NotIn` requirements on the pod's own values (which Kubernetes' API
    /// server does when the pod is created).
    fn new(
        namespace: &str,
        labels: &BTreeMap<String, String>,
        term: &PodAffinityTerm,
    ) -> Result<Term, Error> {
        let own = |keys: &Option<Vec<String>>, operator: &'static str| {
            keys.iter()
                .flatten()
                .filter_map(|k| labels.get(k).map(|v| requirement(k, operator, v)))
                .collect::<Vec<_>>()
        };
        let selector = match &term.label_selector {
            Some(s) => {
                let extra = own(&term.match_label_keys, "In")
                    .into_iter()
                    .chain(own(&term.mismatch_label_keys, "NotIn"));
                PodSelector::new(Some(&with_requirements(s, extra)))?
            }
            None => PodSelector::Nothing,
        };
        let listed = term.namespaces.clone().unwrap_or_default();
        let namespaces = if listed.is_empty() && term.namespace_selector.is_none() {
            vec![namespace.to_string()]
        } else {
            listed
        };
        Ok(Term {
            selector,
            namespaces,
            namespace_selector: term
                .namespace_selector
                .as_ref()
                .map(selector::selector)
                .transpose()?,
            topology_key: term.topology_key.clone(),
        })
    }

    /// Whether a pod in `namespace` with `labels` matches (Kubernetes' `AffinityTerm.Matches`);
    /// `namespace_labels` are those of the pod's namespace, for a namespace selector.
    pub fn matches(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        namespace_labels: Option<&NamespaceLabels<'_>>,
    ) -> bool {
        let in_namespace = self.namespaces.iter().any(|n| n == namespace)
            || self.namespace_selector.as_ref().is_some_and(|s| {
                s.is_empty() || namespace_labels.is_some_and(|l| s.matches(l.get()))
            });
        in_namespace && self.selector.matches(labels)
    }

    /// Whether an existing pod matches one of the incoming pod's terms (whose namespace
    /// selector has been resolved).
    pub fn matches_pod(&self, pod: &PodInfo) -> bool {
        self.matches(&pod.key.namespace, &pod.labels, None)
    }

    /// The incoming pod's namespace selector, resolved into namespaces (Kubernetes'
    /// `mergeAffinityTermNamespacesIfNotEmpty`); an empty selector stays (all namespaces).
    fn resolve_namespaces(&mut self, ctx: &Context<'_>) -> Result<(), Error> {
        let Some(selector) = self.namespace_selector.take_if(|s| !s.is_empty()) else {
            return Ok(());
        };
        let found = ctx.list::<Namespace>("", &selector.to_string())?;
        self.namespaces
            .extend(found.into_iter().filter_map(|n| n.metadata.name));
        Ok(())
    }
}

impl PodTerms {
    /// An existing pod's terms; a list with a term that does not parse is left empty, as
    /// Kubernetes does. `None` when the pod has no pod affinity or anti-affinity.
    pub fn of_existing(pod: &Pod) -> Option<PodTerms> {
        Self::parse(pod).map(|(terms, _)| terms)
    }

    /// The incoming pod's terms, with namespace selectors resolved; a term that does not parse
    /// rejects the pod (the inner error).
    pub fn of_incoming(ctx: &Context<'_>, pod: &Pod) -> Result<Result<PodTerms, String>, Error> {
        let Some((mut terms, error)) = Self::parse(pod) else {
            return Ok(Ok(PodTerms::default()));
        };
        if let Some(error) = error {
            return Ok(Err(format!("parsing pod: {error}")));
        }
        let weighted = terms.preferred_affinity.iter_mut();
        let weighted = weighted.chain(terms.preferred_anti.iter_mut());
        for term in terms
            .required_affinity
            .iter_mut()
            .chain(terms.required_anti.iter_mut())
            .chain(weighted.map(|(_, term)| term))
        {
            term.resolve_namespaces(ctx)?;
        }
        Ok(Ok(terms))
    }

    /// The terms and the first parse error.
    fn parse(pod: &Pod) -> Option<(PodTerms, Option<Error>)> {
        let affinity = pod.spec.as_ref()?.affinity.as_ref()?;
        let (pod_affinity, anti) = (&affinity.pod_affinity, &affinity.pod_anti_affinity);
        if pod_affinity.is_none() && anti.is_none() {
            return None;
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let mut error = None;
        let required = |terms: Option<&Vec<PodAffinityTerm>>| -> Result<Vec<Term>, Error> {
            let terms = terms.into_iter().flatten();
            terms.map(|t| Term::new(namespace, &labels, t)).collect()
        };
        let preferred = |terms: Option<&Vec<WeightedPodAffinityTerm>>| -> Result<Vec<_>, Error> {
            let terms = terms.into_iter().flatten();
            terms
                .map(|t| {
                    let term = Term::new(namespace, &labels, &t.pod_affinity_term)?;
                    Ok((i64::from(t.weight), term))
                })
                .collect()
        };
        let terms = PodTerms {
            required_affinity: keep(
                &mut error,
                required(pod_affinity.as_ref().and_then(|a| {
                    a.required_during_scheduling_ignored_during_execution
                        .as_ref()
                })),
            ),
            required_anti: keep(
                &mut error,
                required(anti.as_ref().and_then(|a| {
                    a.required_during_scheduling_ignored_during_execution
                        .as_ref()
                })),
            ),
            preferred_affinity: keep(
                &mut error,
                preferred(pod_affinity.as_ref().and_then(|a| {
                    a.preferred_during_scheduling_ignored_during_execution
                        .as_ref()
                })),
            ),
            preferred_anti: keep(
                &mut error,
                preferred(anti.as_ref().and_then(|a| {
                    a.preferred_during_scheduling_ignored_during_execution
                        .as_ref()
                })),
            ),
        };
        Some((terms, error))
    }

    /// The terms of some kinds, each with its kind, position and weight (1 when required).
    pub fn of_kinds<'t>(
        &'t self,
        kinds: &'t [Kind],
    ) -> impl Iterator<Item = (Kind, usize, i64, &'t Term)> {
        kinds.iter().flat_map(move |&kind| {
            let (required, preferred): (&[Term], &[(i64, Term)]) = match kind {
                Kind::RequiredAffinity => (&self.required_affinity, &[]),
                Kind::RequiredAnti => (&self.required_anti, &[]),
                Kind::PreferredAffinity => (&[], &self.preferred_affinity),
                Kind::PreferredAnti => (&[], &self.preferred_anti),
            };
            let required = required.iter().map(|t| (1, t));
            let all = required.chain(preferred.iter().map(|(w, t)| (*w, t)));
            all.enumerate().map(move |(i, (w, t))| (kind, i, w, t))
        })
    }

    /// The term a [`TermRef`] names, with its weight.
    pub fn get(&self, kind: Kind, position: usize) -> Option<(i64, &Term)> {
        match kind {
            Kind::RequiredAffinity => self.required_affinity.get(position).map(|t| (1, t)),
            Kind::RequiredAnti => self.required_anti.get(position).map(|t| (1, t)),
            Kind::PreferredAffinity => self.preferred_affinity.get(position).map(|(w, t)| (*w, t)),
            Kind::PreferredAnti => self.preferred_anti.get(position).map(|(w, t)| (*w, t)),
        }
    }

    /// The topology keys of all the terms.
    pub fn topology_keys(&self) -> impl Iterator<Item = &str> {
        self.of_kinds(ALL_KINDS)
            .map(|(_, _, _, t)| t.topology_key.as_str())
    }
}

/// The parsed terms, or none (remembering the first error) when one did not parse.
fn keep<T>(error: &mut Option<Error>, parsed: Result<Vec<T>, Error>) -> Vec<T> {
    parsed.unwrap_or_else(|e| {
        error.get_or_insert(e);
        Vec::new()
    })
}

/// An existing pod's term: the pod, the list and the position in it.
pub type TermRef = (PodId, Kind, usize);

/// Existing pods' terms (of the kinds the view keeps in it), by the label values their
/// selectors require.
#[derive(Default)]
pub struct TermIndex {
    /// Label key → value → terms whose selector requires that value (among others).
    by_label: FxHashMap<String, FxHashMap<String, FxHashSet<TermRef>>>,
    /// Terms whose selector requires no particular value.
    others: FxHashSet<TermRef>,
}

impl TermIndex {
    pub fn add(&mut self, id: PodId, terms: &PodTerms, kinds: &[Kind]) {
        for (kind, position, _, term) in terms.of_kinds(kinds) {
            let entry = (id, kind, position);
            match &term.selector {
                PodSelector::Nothing => {}
                PodSelector::Labels { hints, .. } => match first_values(hints) {
                    Some((key, values)) => {
                        let by_value = self.by_label.entry(key.to_string()).or_default();
                        for value in values {
                            by_value.entry(value.clone()).or_default().insert(entry);
                        }
                    }
                    None => {
                        self.others.insert(entry);
                    }
                },
            }
        }
    }

    pub fn remove(&mut self, id: PodId, terms: &PodTerms, kinds: &[Kind]) {
        for (kind, position, _, term) in terms.of_kinds(kinds) {
            let entry = (id, kind, position);
            let PodSelector::Labels { hints, .. } = &term.selector else {
                continue;
            };
            let Some((key, values)) = first_values(hints) else {
                self.others.remove(&entry);
                continue;
            };
            let Some(by_value) = self.by_label.get_mut(key) else {
                continue;
            };
            for value in values {
                if let Some(entries) = by_value.get_mut(value) {
                    entries.remove(&entry);
                    if entries.is_empty() {
                        by_value.remove(value);
                    }
                }
            }
            if by_value.is_empty() {
                self.by_label.remove(key);
            }
        }
    }

    /// Calls `f` with each term that may select a pod with these labels (each once).
    pub fn each_candidate(&self, labels: &BTreeMap<String, String>, mut f: impl FnMut(TermRef)) {
        for (key, value) in labels {
            let entries = self.by_label.get(key).and_then(|v| v.get(value));
            entries.into_iter().flatten().for_each(|&e| f(e));
        }
        self.others.iter().for_each(|&e| f(e));
    }
}

/// A selector's first `key In (values)` requirement (a pod has one value per key, so a term
/// indexed under all of them is found at most once).
fn first_values(hints: &[Hint]) -> Option<(&str, &[String])> {
    hints.iter().find_map(|h| match h {
        Hint::Values(key, values) => Some((key.as_str(), values.as_slice())),
        Hint::Exists(_) => None,
    })
}
