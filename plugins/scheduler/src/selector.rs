//! Label selectors over pods, with the hints the view's label index uses to find the pods a
//! selector may match without looking at every pod.

use std::collections::BTreeMap;

use wasmkube_sdk::Error;
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement,
};
use wasmkube_sdk::selector::{self, Selector};

/// A requirement every matching pod satisfies: a label with one of some values, or a label.
#[derive(Debug, Clone, PartialEq)]
pub enum Hint {
    Values(String, Vec<String>),
    Exists(String),
}

impl Hint {
    pub fn key(&self) -> &str {
        match self {
            Hint::Values(key, _) | Hint::Exists(key) => key,
        }
    }
}

/// A parsed pod label selector.
#[derive(Debug, Clone, PartialEq)]
pub enum PodSelector {
    /// No selector (`labels.Nothing()`).
    Nothing,
    Labels {
        selector: Selector,
        hints: Vec<Hint>,
        /// The `Values` hints are the whole selector: a pod matches when it has one of the
        /// values of each.
        exact: bool,
    },
}

impl PodSelector {
    /// Kubernetes' `LabelSelectorAsSelector`: no selector matches nothing, an empty one
    /// everything.
    pub fn new(selector: Option<&LabelSelector>) -> Result<PodSelector, Error> {
        let Some(source) = selector else {
            return Ok(PodSelector::Nothing);
        };
        let labels = source.match_labels.iter().flatten();
        let expressions = source.match_expressions.iter().flatten();
        let exact = expressions.clone().all(|e| e.operator == "In");
        let hints = labels
            .map(|(k, v)| Hint::Values(k.clone(), vec![v.clone()]))
            .chain(expressions.filter_map(|e| match e.operator.as_str() {
                "In" => Some(Hint::Values(
                    e.key.clone(),
                    e.values.clone().unwrap_or_default(),
                )),
                "Exists" => Some(Hint::Exists(e.key.clone())),
                _ => None,
            }))
            .collect();
        Ok(PodSelector::Labels {
            selector: selector::selector(source)?,
            hints,
            exact,
        })
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            PodSelector::Nothing => false,
            PodSelector::Labels { selector, .. } => selector.matches(labels),
        }
    }

    /// True for the empty selector, which matches every pod.
    pub fn is_everything(&self) -> bool {
        matches!(self, PodSelector::Labels { selector, .. } if selector.is_empty())
    }
}

/// `selector` with more requirements.
pub fn with_requirements(
    selector: &LabelSelector,
    extra: impl IntoIterator<Item = LabelSelectorRequirement>,
) -> LabelSelector {
    let mut merged = selector.clone();
    merged
        .match_expressions
        .get_or_insert_with(Vec::new)
        .extend(extra);
    merged
}

/// `key In (value)` or `key NotIn (value)`.
pub fn requirement(key: &str, operator: &str, value: &str) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.to_string(),
        operator: operator.to_string(),
        values: Some(vec![value.to_string()]),
    }
}
