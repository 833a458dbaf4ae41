//! Merging an applied configuration into the live object, and pruning fields no longer applied.

use serde_json::{Map, Value};

use super::fields::{Lists, Slot, ignored, item_key, keyed, locate, matches_key};
use super::fieldset::FieldSet;
use crate::patch::ListType;

/// `live` with `config` merged in: maps recursively, keyed lists item by item, set lists as
/// unions, everything else replaced. `null`s in `config` are skipped.
pub fn merge(live: &Value, config: &Value, lists: Lists) -> Value {
    merge_at(live, config, &mut Vec::new(), lists)
}

fn merge_at<'c>(live: &Value, config: &'c Value, names: &mut Vec<&'c str>, lists: Lists) -> Value {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) => {
            let mut out = l.clone();
            for (name, value) in c {
                let keep_live = match names.as_slice() {
                    [] => name == "status",
                    ["metadata"] => ignored(names, name) && out.contains_key(name),
                    _ => false,
                };
                if value.is_null() || keep_live {
                    continue;
                }
                names.push(name);
                let merged = merge_at(out.get(name).unwrap_or(&Value::Null), value, names, lists);
                names.pop();
                out.insert(name.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(c)) => match lists.list_type(names) {
            ListType::Set => {
                let mut out = l.clone();
                out.extend(c.iter().filter(|i| !l.contains(i)).cloned());
                Value::Array(out)
            }
            ListType::Map(keys) if keyed(l, keys) && keyed(c, keys) => {
                let mut out = l.clone();
                for item in c {
                    let Some(key) = item_key(item, keys) else {
                        continue;
                    };
                    let key: Map<String, Value> =
                        key.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                    match out.iter_mut().find(|o| matches_key(o, &key)) {
                        Some(slot) => *slot = merge_at(slot, item, names, lists),
                        None => out.push(merge_at(&Value::Null, item, names, lists)),
                    }
                }
                Value::Array(out)
            }
            _ => config.clone(),
        },
        (_, Value::Object(_)) => merge_at(&Value::Object(Map::new()), config, names, lists),
        _ => config.clone(),
    }
}

/// Removes from `value` the members of `removal`, except where `keep` (other managers'
/// fields) owns the path or something below it; maps and lists emptied by pruning go too.
pub fn prune(value: &mut Value, removal: &FieldSet, keep: &FieldSet) {
    for (element, member, below) in removal.entries() {
        let kept = keep.child(element);
        if member && kept.is_none() {
            remove(value, element);
            continue;
        }
        let Some(child) = find_mut(value, element) else {
            continue;
        };
        let was_empty = is_empty_container(child);
        let empty = FieldSet::default();
        prune(child, below, kept.map_or(&empty, |(_, set)| set));
        if !was_empty && is_empty_container(child) && kept.is_none() {
            remove(value, element);
        }
    }
}

fn is_empty_container(value: &Value) -> bool {
    match value {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn find_mut<'v>(value: &'v mut Value, element: &str) -> Option<&'v mut Value> {
    match locate(value, element)? {
        Slot::Field(name) => value.get_mut(name),
        Slot::Index(i) => value.get_mut(i),
    }
}

fn remove(value: &mut Value, element: &str) {
    match (locate(value, element), value) {
        (Some(Slot::Field(name)), Value::Object(map)) => {
            map.shift_remove(&name);
        }
        (Some(Slot::Index(i)), Value::Array(items)) if i < items.len() => {
            items.remove(i);
        }
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::apply::fields::field_set;
    use crate::patch::schema_for;
    use serde_json::json;

    fn pod_lists() -> Lists<'static> {
        Lists(schema_for("", "Pod"))
    }

    #[test]
    fn merges_keyed_lists_and_replaces_atomic_ones() {
        let live = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "args": ["x"], "ports": [{"containerPort": 80, "protocol": "TCP"}]},
            {"name": "b", "image": "b:1"}
        ], "tolerations": [{"key": "t"}]}});
        let config = json!({"spec": {"containers": [
            {"name": "a", "image": "a:2", "args": ["y"], "ports": [{"containerPort": 80, "name": "http"}]},
            {"name": "c", "image": "c:1"}
        ], "tolerations": [{"key": "u"}]}});
        let out = merge(&live, &config, pod_lists());
        assert_eq!(
            out,
            json!({"spec": {"containers": [
                {"name": "a", "image": "a:2", "args": ["y"],
                 "ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"}]},
                {"name": "b", "image": "b:1"},
                {"name": "c", "image": "c:1"}
            ], "tolerations": [{"key": "u"}]}})
        );
    }

    #[test]
    fn merge_keeps_system_metadata_and_status() {
        let live = json!({"metadata": {"name": "p", "uid": "u1", "resourceVersion": "5"}, "status": {"phase": "Running"}});
        let config = json!({"apiVersion": "v1", "metadata": {"name": "p", "uid": "other", "labels": {"a": "b"}}, "status": {"phase": "x"}});
        let out = merge(&live, &config, pod_lists());
        assert_eq!(
            out,
            json!({"metadata": {"name": "p", "uid": "u1", "resourceVersion": "5", "labels": {"a": "b"}},
                   "status": {"phase": "Running"}, "apiVersion": "v1"})
        );
    }

    #[test]
    fn set_lists_union() {
        let out = merge(
            &json!({"metadata": {"finalizers": ["a"]}}),
            &json!({"metadata": {"finalizers": ["b", "a"]}}),
            pod_lists(),
        );
        assert_eq!(out, json!({"metadata": {"finalizers": ["a", "b"]}}));
    }

    #[test]
    fn prune_respects_other_owners() {
        let mut value = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"containers": [
            {"name": "a", "image": "a"}, {"name": "b", "image": "b"}
        ]}});
        let removal = field_set(
            &json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"containers": [{"name": "a", "image": "a"}]}}),
            pod_lists(),
        );
        let keep = field_set(&json!({"metadata": {"labels": {"b": "2"}}}), pod_lists());
        prune(&mut value, &removal, &keep);
        assert_eq!(
            value,
            json!({"metadata": {"labels": {"b": "2"}}, "spec": {"containers": [{"name": "b", "image": "b"}]}})
        );
    }

    #[test]
    fn prune_drops_maps_it_empties() {
        let mut value = json!({"metadata": {"labels": {"a": "1"}, "name": "x"}});
        let removal = field_set(&json!({"metadata": {"labels": {"a": "1"}}}), pod_lists());
        prune(&mut value, &removal, &FieldSet::default());
        assert_eq!(value, json!({"metadata": {"name": "x"}}));
    }
}
