//! Field sets: which fields a manager owns, with the `FieldsV1` encoding of `metadata.managedFields`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// One step of a field path, in its `FieldsV1` encoding: `f:<name>`, `k:<json keys>`,
/// `v:<json value>` or `i:<index>`.
pub type Element = String;

/// A set of field paths, stored as a tree; a node is a member when the path ending there is
/// in the set (`.` in `FieldsV1`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    children: BTreeMap<Element, FieldNode>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct FieldNode {
    member: bool,
    set: FieldSet,
}

/// `f:<name>`.
pub fn field(name: &str) -> Element {
    format!("f:{name}")
}

/// `v:<json>` for an item of a set-like list.
pub fn value_element(value: &Value) -> Element {
    format!("v:{value}")
}

/// `k:{"key":value,...}` for an item of an associative list, keys sorted by name.
pub fn key_element(keys: &BTreeMap<&str, Value>) -> Element {
    let map: Map<String, Value> = keys
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    format!("k:{}", Value::Object(map))
}

impl FieldSet {
    /// Whether the set has no members.
    pub fn is_empty(&self) -> bool {
        self.children
            .values()
            .all(|n| !n.member && n.set.is_empty())
    }

    /// Adds the path (creating intermediate non-member nodes).
    pub fn insert(&mut self, path: &[Element]) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let node = self.children.entry(first.clone()).or_default();
        if rest.is_empty() {
            node.member = true;
        } else {
            node.set.insert(rest);
        }
    }

    /// Whether the path is a member.
    #[cfg(test)]
    pub fn contains(&self, path: &[Element]) -> bool {
        match path.split_first() {
            Some((first, [])) => self.children.get(first).is_some_and(|n| n.member),
            Some((first, rest)) => self
                .children
                .get(first)
                .is_some_and(|n| n.set.contains(rest)),
            None => false,
        }
    }

    /// The sub-tree below `element` (empty if absent).
    pub fn child(&self, element: &str) -> Option<(bool, &FieldSet)> {
        self.children.get(element).map(|n| (n.member, &n.set))
    }

    /// The direct elements of this level, with whether each is a member and its sub-tree.
    pub fn entries(&self) -> impl Iterator<Item = (&Element, bool, &FieldSet)> {
        self.children.iter().map(|(e, n)| (e, n.member, &n.set))
    }

    /// Members of either set.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        for (element, node) in &other.children {
            let mine = out.children.entry(element.clone()).or_default();
            mine.member |= node.member;
            mine.set = mine.set.union(&node.set);
        }
        out
    }

    /// Members of `self` that are not members of `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::default();
        for (element, node) in &self.children {
            let theirs = other.children.get(element);
            let member = node.member && !theirs.is_some_and(|t| t.member);
            let set = match theirs {
                Some(t) => node.set.difference(&t.set),
                None => node.set.clone(),
            };
            if member || !set.is_empty() {
                out.children
                    .insert(element.clone(), FieldNode { member, set });
            }
        }
        out
    }

    /// Members of both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::default();
        for (element, node) in &self.children {
            let Some(theirs) = other.children.get(element) else {
                continue;
            };
            let member = node.member && theirs.member;
            let set = node.set.intersection(&theirs.set);
            if member || !set.is_empty() {
                out.children
                    .insert(element.clone(), FieldNode { member, set });
            }
        }
        out
    }

    /// Every member path, depth first.
    #[cfg(test)]
    pub fn paths(&self) -> Vec<Vec<Element>> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out, false);
        out
    }

    /// Member paths with no members below them.
    pub fn leaves(&self) -> Vec<Vec<Element>> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out, true);
        out
    }

    fn collect(&self, prefix: &mut Vec<Element>, out: &mut Vec<Vec<Element>>, leaves_only: bool) {
        for (element, node) in &self.children {
            prefix.push(element.clone());
            if node.member && (!leaves_only || node.set.is_empty()) {
                out.push(prefix.clone());
            }
            node.set.collect(prefix, out, leaves_only);
            prefix.pop();
        }
    }

    /// The `fieldsV1` JSON form.
    pub fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        for (element, node) in &self.children {
            if !node.member && node.set.is_empty() {
                continue;
            }
            let mut inner = match node.set.to_fields_v1() {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            if node.member && !inner.is_empty() {
                inner.insert(".".to_string(), Value::Object(Map::new()));
                inner.sort_keys();
            }
            map.insert(element.clone(), Value::Object(inner));
        }
        Value::Object(map)
    }

    /// Parses the `fieldsV1` JSON form; `None` if it is malformed.
    pub fn from_fields_v1(value: &Value) -> Option<FieldSet> {
        let mut out = FieldSet::default();
        for (element, inner) in value.as_object()? {
            if element == "." {
                continue;
            }
            if !["f:", "k:", "v:", "i:"]
                .iter()
                .any(|p| element.starts_with(p))
            {
                return None;
            }
            let inner_map = inner.as_object()?;
            let set = FieldSet::from_fields_v1(inner)?;
            let member = inner_map.is_empty() || inner_map.contains_key(".");
            out.children
                .insert(element.clone(), FieldNode { member, set });
        }
        Some(out)
    }
}

/// A path as Kubernetes prints it in conflicts: `.spec.containers[name="c"].image`.
pub fn path_string(path: &[Element]) -> String {
    let mut out = String::new();
    for element in path {
        let (kind, body) = element.split_at(element.len().min(2));
        match kind {
            "f:" => {
                out.push('.');
                out.push_str(body);
            }
            "k:" => {
                let parts: Vec<String> = serde_json::from_str::<Map<String, Value>>(body)
                    .unwrap_or_default()
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                out.push_str(&format!("[{}]", parts.join(",")));
            }
            "v:" => out.push_str(&format!("[={body}]")),
            _ => out.push_str(&format!("[{body}]")),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn p(parts: &[&str]) -> Vec<Element> {
        parts.iter().map(|s| s.to_string()).collect()
    }

    fn set(paths: &[&[&str]]) -> FieldSet {
        let mut s = FieldSet::default();
        for path in paths {
            s.insert(&p(path));
        }
        s
    }

    #[test]
    fn encodes_like_kubernetes() {
        let s = set(&[
            &["f:spec", "f:replicas"],
            &["f:spec", "f:containers", r#"k:{"name":"c"}"#],
            &["f:spec", "f:containers", r#"k:{"name":"c"}"#, "f:image"],
            &["f:metadata", "f:finalizers", r#"v:"x""#],
        ]);
        assert_eq!(
            s.to_fields_v1(),
            json!({
                "f:metadata": {"f:finalizers": {"v:\"x\"": {}}},
                "f:spec": {
                    "f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:image": {}}},
                    "f:replicas": {}
                }
            })
        );
        assert_eq!(FieldSet::from_fields_v1(&s.to_fields_v1()), Some(s));
    }

    #[test]
    fn rejects_malformed_fields_v1() {
        assert_eq!(FieldSet::from_fields_v1(&json!([])), None);
        assert_eq!(FieldSet::from_fields_v1(&json!({"x": {}})), None);
        assert_eq!(FieldSet::from_fields_v1(&json!({"f:a": 1})), None);
    }

    #[test]
    fn set_algebra() {
        let a = set(&[&["f:a", "f:b"], &["f:a", "f:c"], &["f:d"]]);
        let b = set(&[&["f:a", "f:c"], &["f:e"]]);
        assert_eq!(a.difference(&b), set(&[&["f:a", "f:b"], &["f:d"]]));
        assert_eq!(a.intersection(&b), set(&[&["f:a", "f:c"]]));
        assert_eq!(
            a.union(&b),
            set(&[&["f:a", "f:b"], &["f:a", "f:c"], &["f:d"], &["f:e"]])
        );
        assert!(a.difference(&a).is_empty());
        assert!(a.contains(&p(&["f:a", "f:b"])));
        assert!(!a.contains(&p(&["f:a"])));
        assert_eq!(a.leaves().len(), 3);
    }

    #[test]
    fn path_strings() {
        assert_eq!(path_string(&p(&["f:spec", "f:replicas"])), ".spec.replicas");
        assert_eq!(
            path_string(&p(&[
                "f:spec",
                "f:containers",
                r#"k:{"name":"c"}"#,
                "f:ports",
                r#"k:{"containerPort":80,"protocol":"TCP"}"#
            ])),
            r#".spec.containers[name="c"].ports[containerPort=80,protocol="TCP"]"#
        );
        assert_eq!(
            path_string(&p(&["f:metadata", "f:finalizers", r#"v:"a""#])),
            r#".metadata.finalizers[="a"]"#
        );
    }

    fn arb_set() -> impl Strategy<Value = FieldSet> {
        proptest::collection::vec(
            proptest::collection::vec(
                prop_oneof![Just("f:a"), Just("f:b"), Just("k:{\"n\":1}"), Just("v:2")]
                    .prop_map(String::from),
                1..4,
            ),
            0..6,
        )
        .prop_map(|paths| {
            let mut s = FieldSet::default();
            for path in paths {
                s.insert(&path);
            }
            s
        })
    }

    proptest! {
        #[test]
        fn algebra_laws(a in arb_set(), b in arb_set()) {
            let u = a.union(&b);
            for path in a.paths().into_iter().chain(b.paths()) {
                prop_assert!(u.contains(&path));
            }
            let d = a.difference(&b);
            for path in d.paths() {
                prop_assert!(a.contains(&path) && !b.contains(&path));
            }
            let i = a.intersection(&b);
            for path in i.paths() {
                prop_assert!(a.contains(&path) && b.contains(&path));
            }
            prop_assert_eq!(d.union(&i).paths(), a.paths());
            let decoded = FieldSet::from_fields_v1(&a.to_fields_v1()).unwrap();
            prop_assert_eq!(decoded.paths(), a.paths());
        }
    }
}
