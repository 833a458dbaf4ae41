//! Where a pod may run: node selectors and required node affinity matched against a node's
//! labels and name, and tolerations matched against taints (Kubernetes' component-helpers).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSpec, Taint, Toleration,
};
use wasmkube_model::selector::{LabelSelector, Operator, Requirement};

/// The only node field a `matchFields` requirement can name.
const NAME_FIELD: &str = "metadata.name";

/// One `NodeSelectorTerm`, parsed: its label requirements and its field requirements, ANDed.
/// A term that does not parse (an unknown operator, a bad value) matches no node, as in
/// Kubernetes, which ignores such terms.
#[derive(Debug, Clone)]
pub struct SelectorTerm {
    labels: Option<LabelSelector>,
    fields: Option<Vec<FieldRequirement>>,
    valid: bool,
}

/// `key = value` (or `!=`) over a node's fields; only `metadata.name` has a value.
#[derive(Debug, Clone)]
struct FieldRequirement {
    key: String,
    value: String,
    equal: bool,
}

impl SelectorTerm {
    /// Parses a term.
    pub fn new(term: &NodeSelectorTerm) -> SelectorTerm {
        let expressions = term.match_expressions.as_deref().unwrap_or_default();
        let fields = term.match_fields.as_deref().unwrap_or_default();
        let labels = (!expressions.is_empty()).then(|| label_requirements(expressions));
        let fields = (!fields.is_empty()).then(|| field_requirements(fields));
        let valid = labels.as_ref().is_none_or(Option::is_some)
            && fields.as_ref().is_none_or(Option::is_some);
        SelectorTerm {
            labels: labels.flatten(),
            fields: fields.flatten(),
            valid,
        }
    }

    /// Whether a node with these labels and this name matches. An empty term matches nothing;
    /// field requirements are not checked when `name` is empty (a PersistentVolume's node
    /// affinity is matched against labels alone).
    pub fn matches(&self, labels: &BTreeMap<String, String>, name: &str) -> bool {
        if !self.valid || (self.labels.is_none() && self.fields.is_none()) {
            return false;
        }
        let labels_match = self.labels.as_ref().is_none_or(|s| s.matches(labels));
        let fields_match = name.is_empty() || self.fields.iter().flatten().all(|f| f.matches(name));
        labels_match && fields_match
    }
}

impl FieldRequirement {
    fn matches(&self, name: &str) -> bool {
        let got = if self.key == NAME_FIELD { name } else { "" };
        (got == self.value) == self.equal
    }
}

/// `nodeSelectorRequirementsAsSelector`: `None` when a requirement does not parse.
fn label_requirements(requirements: &[NodeSelectorRequirement]) -> Option<LabelSelector> {
    let mut parsed = Vec::with_capacity(requirements.len());
    for r in requirements {
        let operator = match r.operator.as_str() {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            "Gt" => Operator::GreaterThan,
            "Lt" => Operator::LessThan,
            _ => return None,
        };
        let values: BTreeSet<String> = r.values.iter().flatten().cloned().collect();
        parsed.push(Requirement::new(&r.key, operator, values).ok()?);
    }
    Some(LabelSelector::from_requirements(parsed))
}

/// `nodeSelectorRequirementsAsFieldSelector`: `In` and `NotIn` with exactly one value.
fn field_requirements(requirements: &[NodeSelectorRequirement]) -> Option<Vec<FieldRequirement>> {
    requirements
        .iter()
        .map(|r| {
            let [value] = r.values.as_deref().unwrap_or_default() else {
                return None;
            };
            let equal = match r.operator.as_str() {
                "In" => true,
                "NotIn" => false,
                _ => return None,
            };
            Some(FieldRequirement {
                key: r.key.clone(),
                value: value.clone(),
                equal,
            })
        })
        .collect()
}

/// A parsed `NodeSelector`: its terms, ORed. No terms match no node.
#[derive(Debug, Clone)]
pub struct NodeSelectorTerms {
    terms: Vec<SelectorTerm>,
}

impl NodeSelectorTerms {
    /// Parses a node selector.
    pub fn new(selector: &NodeSelector) -> NodeSelectorTerms {
        NodeSelectorTerms {
            terms: selector
                .node_selector_terms
                .iter()
                .map(SelectorTerm::new)
                .collect(),
        }
    }

    /// Whether any term matches; see [`SelectorTerm::matches`].
    pub fn matches(&self, labels: &BTreeMap<String, String>, name: &str) -> bool {
        self.terms.iter().any(|t| t.matches(labels, name))
    }
}

/// A pod's `nodeSelector` and required node affinity, both of which a node must match
/// (Kubernetes' `GetRequiredNodeAffinity`).
#[derive(Debug, Clone)]
pub struct RequiredNodeAffinity {
    node_selector: Vec<(String, String)>,
    affinity: Option<NodeSelectorTerms>,
}

impl RequiredNodeAffinity {
    /// The requirements of a pod spec.
    pub fn of(spec: &PodSpec) -> RequiredNodeAffinity {
        let required = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            });
        RequiredNodeAffinity {
            node_selector: spec
                .node_selector
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            affinity: required.map(NodeSelectorTerms::new),
        }
    }

    /// True when the pod constrains nothing, so every node matches.
    pub fn is_empty(&self) -> bool {
        self.node_selector.is_empty() && self.affinity.is_none()
    }

    /// Whether a node with these labels and this name matches.
    pub fn matches(&self, labels: &BTreeMap<String, String>, name: &str) -> bool {
        self.node_selector
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self
                .affinity
                .as_ref()
                .is_none_or(|a| a.matches(labels, name))
    }
}

/// Whether a toleration tolerates a taint (Kubernetes' `Toleration.ToleratesTaint`): an empty
/// effect matches every effect, an empty key (with `Exists`) every key.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or_default() {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        "Exists" => true,
        _ => false,
    }
}

/// Whether any of the tolerations tolerates the taint.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// The first taint with one of `effects` that no toleration tolerates (Kubernetes'
/// `FindMatchingUntoleratedTaint`).
pub fn untolerated<'t>(
    taints: &'t [Taint],
    tolerations: &[Toleration],
    effects: &[&str],
) -> Option<&'t Taint> {
    taints
        .iter()
        .find(|t| effects.contains(&t.effect.as_str()) && !tolerated(tolerations, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn requirement(key: &str, operator: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn term(
        expressions: Vec<NodeSelectorRequirement>,
        fields: Vec<NodeSelectorRequirement>,
    ) -> SelectorTerm {
        SelectorTerm::new(&NodeSelectorTerm {
            match_expressions: Some(expressions),
            match_fields: Some(fields),
        })
    }

    #[test]
    fn terms_match_labels_and_name() {
        let node = labels(&[("zone", "a"), ("cores", "8")]);
        let matches = |e, f| term(e, f).matches(&node, "n1");
        assert!(matches(
            vec![requirement("zone", "In", &["a", "b"])],
            vec![]
        ));
        assert!(!matches(vec![requirement("zone", "NotIn", &["a"])], vec![]));
        assert!(matches(vec![requirement("gpu", "NotIn", &["x"])], vec![]));
        assert!(matches(vec![requirement("zone", "Exists", &[])], vec![]));
        assert!(matches(
            vec![requirement("gpu", "DoesNotExist", &[])],
            vec![]
        ));
        assert!(matches(vec![requirement("cores", "Gt", &["4"])], vec![]));
        assert!(!matches(vec![requirement("cores", "Lt", &["4"])], vec![]));
        assert!(!matches(vec![requirement("cores", "Gt", &["x"])], vec![]));
        assert!(!matches(vec![requirement("zone", "Near", &["a"])], vec![]));
        assert!(!matches(vec![], vec![]), "an empty term matches nothing");
        let name = |op, v| vec![requirement(NAME_FIELD, op, &[v])];
        assert!(matches(vec![], name("In", "n1")));
        assert!(!matches(vec![], name("In", "n2")));
        assert!(matches(vec![], name("NotIn", "n2")));
        let two = vec![requirement(NAME_FIELD, "In", &["n1", "n2"])];
        assert!(!matches(vec![], two), "a field requirement takes one value");
        assert!(
            term(vec![], name("In", "n2")).matches(&node, ""),
            "no name: fields are not checked"
        );
    }

    #[test]
    fn required_affinity_ands_the_node_selector() {
        let spec = PodSpec {
            node_selector: Some(labels(&[("disk", "ssd")])),
            ..PodSpec::default()
        };
        let required = RequiredNodeAffinity::of(&spec);
        assert!(!required.is_empty());
        assert!(required.matches(&labels(&[("disk", "ssd")]), "n"));
        assert!(!required.matches(&labels(&[("disk", "hdd")]), "n"));
        assert!(RequiredNodeAffinity::of(&PodSpec::default()).matches(&BTreeMap::new(), "n"));
    }

    #[test]
    fn tolerations_match_taints() {
        let taint = |key: &str, value: Option<&str>, effect: &str| Taint {
            key: key.into(),
            value: value.map(str::to_string),
            effect: effect.into(),
            ..Taint::default()
        };
        let toleration = |key: &str, op: &str, value: &str, effect: &str| Toleration {
            key: Some(key.into()),
            operator: Some(op.into()),
            value: Some(value.into()),
            effect: Some(effect.into()),
            ..Toleration::default()
        };
        let t = taint("dedicated", Some("gpu"), "NoSchedule");
        assert!(tolerates(&toleration("dedicated", "Equal", "gpu", ""), &t));
        assert!(!tolerates(&toleration("dedicated", "Equal", "cpu", ""), &t));
        assert!(tolerates(
            &toleration("dedicated", "Exists", "", "NoSchedule"),
            &t
        ));
        assert!(!tolerates(
            &toleration("dedicated", "Exists", "", "NoExecute"),
            &t
        ));
        assert!(tolerates(&toleration("", "Exists", "", ""), &t));
        assert!(!tolerates(&toleration("other", "Exists", "", ""), &t));
        assert!(!tolerates(&toleration("dedicated", "Near", "gpu", ""), &t));
        let taints = [taint("soft", None, "PreferNoSchedule"), t.clone()];
        let found = untolerated(&taints, &[], &["NoSchedule", "NoExecute"]);
        assert_eq!(found.map(|t| t.key.as_str()), Some("dedicated"));
        let tolerations = [toleration("dedicated", "Exists", "", "")];
        assert!(untolerated(&taints, &tolerations, &["NoSchedule"]).is_none());
    }
}
