//! Label selectors: Kubernetes' structured `LabelSelector` as a matcher and as a list query.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{self as meta, ObjectMeta};

use crate::error::Error;

pub use wasmkube_model::selector::LabelSelector as Selector;

/// Converts a structured selector (`matchLabels`, `matchExpressions`) into a matcher; the empty
/// selector matches everything.
pub fn selector(selector: &meta::LabelSelector) -> Result<Selector, Error> {
    Ok(Selector::from_k8s(selector)?)
}

/// The structured selector in kubectl syntax, for [`crate::Context::list`].
pub fn query(selector: &meta::LabelSelector) -> Result<String, Error> {
    Ok(Selector::from_k8s(selector)?.to_string())
}

/// Whether an object's labels match.
pub fn matches(selector: &Selector, meta: &ObjectMeta) -> bool {
    selector.matches(labels(meta))
}

/// An object's labels (empty when it has none).
pub fn labels(meta: &ObjectMeta) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    meta.labels.as_ref().unwrap_or(&EMPTY)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    use meta::LabelSelectorRequirement;

    #[test]
    fn structured_selectors_match_and_print() {
        let sel = meta::LabelSelector {
            match_labels: Some(BTreeMap::from([("app".into(), "web".into())])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: Some(vec!["a".into(), "b".into()]),
            }]),
        };
        assert_eq!(query(&sel).unwrap(), "app=web,tier in (a,b)");
        let s = selector(&sel).unwrap();
        let meta = |labels: &[(&str, &str)]| ObjectMeta {
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        };
        assert!(matches(&s, &meta(&[("app", "web"), ("tier", "b")])));
        assert!(!matches(&s, &meta(&[("app", "web"), ("tier", "c")])));
        assert!(!matches(&s, &ObjectMeta::default()));
        assert!(matches(
            &selector(&meta::LabelSelector::default()).unwrap(),
            &ObjectMeta::default()
        ));
    }
}
