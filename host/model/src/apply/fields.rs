//! The field set of an object and lookups by field path, guided by the list schema.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::fieldset::{Element, FieldSet, field, key_element, value_element};
use crate::patch::{ListType, PatchSchema, key_default};

/// Top-level fields the field manager never tracks.
const IGNORED_ROOT: &[&str] = &["apiVersion", "kind", "status"];
/// `metadata` fields the field manager never tracks.
const IGNORED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "managedFields",
];

/// List semantics for an object: a built-in schema, or (custom resources) all lists atomic.
#[derive(Clone, Copy)]
pub struct Lists<'a>(pub Option<&'a PatchSchema>);

impl Lists<'_> {
    pub fn list_type(&self, names: &[&str]) -> ListType {
        self.0.map_or(ListType::Atomic, |s| s.list_keys(names))
    }
}

/// Whether the field `name` under `names` (field names from the root) is never tracked.
pub fn ignored(names: &[&str], name: &str) -> bool {
    match names {
        [] => IGNORED_ROOT.contains(&name),
        ["metadata"] => IGNORED_METADATA.contains(&name),
        _ => false,
    }
}

/// The identity of an item of an associative list, or `None` if it lacks the first key.
pub fn item_key(item: &Value, keys: &[&'static str]) -> Option<BTreeMap<&'static str, Value>> {
    let mut out = BTreeMap::new();
    for (i, key) in keys.iter().enumerate() {
        match item.get(*key) {
            Some(v) if !v.is_null() => {
                out.insert(*key, v.clone());
            }
            _ => match key_default(key) {
                Some(d) => {
                    out.insert(*key, Value::String(d.to_string()));
                }
                None if i == 0 => return None,
                None => {}
            },
        }
    }
    Some(out)
}

/// Whether every item of a keyed list has its key (otherwise the list is treated as atomic).
pub fn keyed(items: &[Value], keys: &[&'static str]) -> bool {
    items
        .iter()
        .all(|i| i.is_object() && item_key(i, keys).is_some())
}

/// The set of fields `obj` sets, as the field manager records them.
pub fn field_set(obj: &Value, lists: Lists) -> FieldSet {
    let mut out = FieldSet::default();
    if let Value::Object(map) = obj {
        walk_map(map, &mut Vec::new(), &mut Vec::new(), lists, &mut out);
    }
    out
}

fn walk_map<'v>(
    map: &'v Map<String, Value>,
    names: &mut Vec<&'v str>,
    path: &mut Vec<Element>,
    lists: Lists,
    out: &mut FieldSet,
) {
    for (name, value) in map {
        if value.is_null() || ignored(names, name) {
            continue;
        }
        names.push(name);
        path.push(field(name));
        walk_value(value, names, path, lists, out);
        path.pop();
        names.pop();
    }
}

fn walk_value<'v>(
    value: &'v Value,
    names: &mut Vec<&'v str>,
    path: &mut Vec<Element>,
    lists: Lists,
    out: &mut FieldSet,
) {
    match value {
        Value::Object(map) if !map.is_empty() => walk_map(map, names, path, lists, out),
        Value::Array(items) if !items.is_empty() => match lists.list_type(names) {
            ListType::Set => {
                for item in items {
                    path.push(value_element(item));
                    out.insert(path);
                    path.pop();
                }
            }
            ListType::Map(keys) if keyed(items, keys) => {
                for item in items {
                    let Some(key) = item_key(item, keys) else {
                        continue;
                    };
                    path.push(key_element(&key));
                    out.insert(path);
                    if let Value::Object(map) = item {
                        walk_map(map, names, path, lists, out);
                    }
                    path.pop();
                }
            }
            _ => out.insert(path),
        },
        _ => out.insert(path),
    }
}

/// The value at a field path, if present.
pub fn value_at<'v>(obj: &'v Value, path: &[Element]) -> Option<&'v Value> {
    let Some((first, rest)) = path.split_first() else {
        return Some(obj);
    };
    let next = find(obj, first)?;
    value_at(next, rest)
}

/// Where a path element points inside its parent value.
pub enum Slot {
    /// A map key.
    Field(String),
    /// A list position.
    Index(usize),
}

/// Finds the child of `value` that `element` names.
pub fn locate(value: &Value, element: &str) -> Option<Slot> {
    let (kind, body) = element.split_at(element.len().min(2));
    let items = || value.as_array().into_iter().flatten();
    match kind {
        "f:" => value.get(body).map(|_| Slot::Field(body.to_string())),
        "k:" => {
            let want: Map<String, Value> = serde_json::from_str(body).ok()?;
            items()
                .position(|item| matches_key(item, &want))
                .map(Slot::Index)
        }
        "v:" => {
            let want: Value = serde_json::from_str(body).ok()?;
            items().position(|item| *item == want).map(Slot::Index)
        }
        _ => body
            .parse::<usize>()
            .ok()
            .filter(|i| value.get(i).is_some())
            .map(Slot::Index),
    }
}

/// The child of `value` that `element` names.
pub fn find<'v>(value: &'v Value, element: &str) -> Option<&'v Value> {
    match locate(value, element)? {
        Slot::Field(name) => value.get(name),
        Slot::Index(i) => value.get(i),
    }
}

/// Whether a list item has the key fields `want` (absent fields read as their defaults).
pub fn matches_key(item: &Value, want: &Map<String, Value>) -> bool {
    want.iter().all(|(k, v)| match item.get(k) {
        Some(got) if !got.is_null() => got == v,
        _ => key_default(k).is_some_and(|d| v.as_str() == Some(d)),
    })
}

/// Fields set by `new` that are absent from or different in `old`, and fields `old` set that
/// `new` dropped (the apiserver's Added ∪ Modified, and Removed).
pub fn changes(old: &Value, new: &Value, lists: Lists) -> (FieldSet, FieldSet) {
    let old_set = field_set(old, lists);
    let new_set = field_set(new, lists);
    let mut changed = new_set.difference(&old_set);
    for path in new_set.intersection(&old_set).leaves() {
        if value_at(old, &path) != value_at(new, &path) {
            changed.insert(&path);
        }
    }
    (changed, old_set.difference(&new_set))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::patch::schema_for;
    use serde_json::json;

    fn deploy() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "ns", "uid": "u", "labels": {"app": "a"},
                         "finalizers": ["x"]},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "c", "image": "i", "ports": [{"containerPort": 80}], "args": ["a", "b"]}
            ]}}},
            "status": {"replicas": 2}
        })
    }

    #[test]
    fn field_set_of_a_deployment() {
        let lists = Lists(schema_for("apps", "Deployment"));
        let set = field_set(&deploy(), lists);
        assert_eq!(
            set.to_fields_v1(),
            json!({
                "f:metadata": {"f:finalizers": {"v:\"x\"": {}}, "f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {
                        ".": {},
                        "f:args": {},
                        "f:image": {},
                        "f:name": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                            ".": {}, "f:containerPort": {}
                        }}
                    }}}}
                }
            })
        );
    }

    #[test]
    fn custom_resources_treat_lists_as_atomic() {
        let set = field_set(&json!({"spec": {"items": [{"name": "a"}]}}), Lists(None));
        assert_eq!(set.to_fields_v1(), json!({"f:spec": {"f:items": {}}}));
    }

    #[test]
    fn lookups_follow_keys_with_defaults() {
        let d = deploy();
        let path: Vec<Element> = [
            "f:spec",
            "f:template",
            "f:spec",
            "f:containers",
            r#"k:{"name":"c"}"#,
            "f:ports",
            r#"k:{"containerPort":80,"protocol":"TCP"}"#,
            "f:containerPort",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(value_at(&d, &path), Some(&json!(80)));
        let fin: Vec<Element> = ["f:metadata", "f:finalizers", "v:\"x\""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(value_at(&d, &fin), Some(&json!("x")));
    }

    #[test]
    fn changes_between_versions() {
        let lists = Lists(schema_for("apps", "Deployment"));
        let old = deploy();
        let mut new = deploy();
        new["spec"]["replicas"] = json!(3);
        new["metadata"]["labels"] = json!({"other": "b"});
        new["status"]["replicas"] = json!(9);
        let (changed, removed) = changes(&old, &new, lists);
        assert_eq!(
            changed.to_fields_v1(),
            json!({"f:metadata": {"f:labels": {"f:other": {}}}, "f:spec": {"f:replicas": {}}})
        );
        assert_eq!(
            removed.to_fields_v1(),
            json!({"f:metadata": {"f:labels": {"f:app": {}}}})
        );
    }
}
