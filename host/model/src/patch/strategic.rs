//! Strategic merge patch as kubectl sends it: keyed list merges and `$`-directives.

use serde_json::{Map, Value};

use super::schema::{ListType, PatchSchema};
use super::{PatchError, decode};

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

/// Applies a strategic merge patch to `doc`, using `schema` for list merge keys.
pub fn strategic_merge_patch(
    doc: &Value,
    patch: &[u8],
    schema: &PatchSchema,
) -> Result<Value, PatchError> {
    let Value::Object(patch) = decode(patch)? else {
        return Err(PatchError::Decode(
            "a strategic merge patch must be a JSON object".to_string(),
        ));
    };
    let original = match doc {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    let mut merger = Merger {
        schema,
        path: Vec::new(),
    };
    merger.merge_map(original, patch).map(Value::Object)
}

struct Merger<'s> {
    schema: &'s PatchSchema,
    path: Vec<String>,
}

fn directive_error(what: impl Into<String>) -> PatchError {
    PatchError::Directive(what.into())
}

fn string_list(value: &Value, directive: &str) -> Result<Vec<Value>, PatchError> {
    match value {
        Value::Array(items) => Ok(items.clone()),
        Value::Null => Ok(Vec::new()),
        other => Err(directive_error(format!(
            "{directive} must be a list, got {other}"
        ))),
    }
}

impl Merger<'_> {
    fn list_type(&self) -> ListType {
        let path: Vec<&str> = self.path.iter().map(String::as_str).collect();
        self.schema.list_keys(&path)
    }

    /// Merges `patch` into the map `original` found at `self.path`.
    fn merge_map(
        &mut self,
        mut original: Map<String, Value>,
        mut patch: Map<String, Value>,
    ) -> Result<Map<String, Value>, PatchError> {
        match patch.remove(PATCH) {
            None => {}
            Some(Value::String(s)) if s == "merge" => {}
            Some(Value::String(s)) if s == "replace" => return self.merge_map(Map::new(), patch),
            Some(Value::String(s)) if s == "delete" => return Ok(Map::new()),
            Some(other) => {
                return Err(directive_error(format!(
                    "unknown patch type: {other} in map"
                )));
            }
        }
        let retain = match patch.remove(RETAIN_KEYS) {
            Some(v) => Some(string_list(&v, RETAIN_KEYS)?),
            None => None,
        };
        let mut orders = Vec::new();
        for (key, value) in patch {
            if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
                let remove = string_list(&value, DELETE_FROM_PRIMITIVE_LIST)?;
                if let Some(Value::Array(items)) = original.get_mut(field) {
                    items.retain(|item| !remove.contains(item));
                }
            } else if let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) {
                orders.push((field.to_string(), string_list(&value, SET_ELEMENT_ORDER)?));
            } else if value.is_null() {
                original.remove(&key);
            } else {
                let old = original.remove(&key).unwrap_or(Value::Null);
                self.path.push(key.clone());
                let merged = self.merge_value(old, value);
                self.path.pop();
                original.insert(key, merged?);
            }
        }
        for (field, order) in orders {
            self.path.push(field.clone());
            let list_type = self.list_type();
            self.path.pop();
            if let Some(Value::Array(items)) = original.get_mut(&field) {
                reorder(items, &order, list_type);
            }
        }
        if let Some(retain) = retain {
            original.retain(|k, _| retain.iter().any(|r| r.as_str() == Some(k)));
        }
        Ok(original)
    }

    /// Merges a non-null patch value into whatever the original holds at `self.path`.
    fn merge_value(&mut self, original: Value, patch: Value) -> Result<Value, PatchError> {
        match (original, patch) {
            (Value::Object(o), Value::Object(p)) => self.merge_map(o, p).map(Value::Object),
            (Value::Array(o), Value::Array(p)) => self.merge_list(o, p).map(Value::Array),
            (_, Value::Object(p)) => self.merge_map(Map::new(), p).map(Value::Object),
            (_, Value::Array(p)) => self.merge_list(Vec::new(), p).map(Value::Array),
            (_, p) => Ok(p),
        }
    }

    fn merge_list(
        &mut self,
        original: Vec<Value>,
        patch: Vec<Value>,
    ) -> Result<Vec<Value>, PatchError> {
        let list_type = self.list_type();
        let is_replace = |v: &Value| v.get(PATCH).and_then(Value::as_str) == Some("replace");
        if patch.iter().any(is_replace) {
            let rest: Vec<Value> = patch.into_iter().filter(|v| !is_replace(v)).collect();
            return self.merge_list_items(Vec::new(), rest, list_type);
        }
        self.merge_list_items(original, patch, list_type)
    }

    fn merge_list_items(
        &mut self,
        original: Vec<Value>,
        patch: Vec<Value>,
        list_type: ListType,
    ) -> Result<Vec<Value>, PatchError> {
        match list_type {
            ListType::Atomic => Ok(patch),
            ListType::Set => {
                let mut merged = original;
                for item in patch {
                    if !merged.contains(&item) {
                        merged.push(item);
                    }
                }
                Ok(merged)
            }
            ListType::Map(keys) => {
                let key = keys.first().copied().unwrap_or("name");
                self.merge_keyed(original, patch, key)
            }
        }
    }

    fn merge_keyed(
        &mut self,
        mut merged: Vec<Value>,
        patch: Vec<Value>,
        key: &str,
    ) -> Result<Vec<Value>, PatchError> {
        for item in patch {
            let Value::Object(mut item) = item else {
                return Err(PatchError::MissingMergeKey {
                    key: key.to_string(),
                    element: item.to_string(),
                });
            };
            let Some(id) = item.get(key).cloned() else {
                return Err(PatchError::MissingMergeKey {
                    key: key.to_string(),
                    element: Value::Object(item).to_string(),
                });
            };
            let existing = merged.iter().position(|o| o.get(key) == Some(&id));
            if item.get(PATCH).and_then(Value::as_str) == Some("delete") {
                merged.retain(|o| o.get(key) != Some(&id));
                continue;
            }
            if item.get(PATCH).and_then(Value::as_str) == Some("merge") {
                item.remove(PATCH);
            }
            match existing.and_then(|i| merged.get_mut(i)) {
                Some(slot) => {
                    let old = std::mem::take(slot);
                    let old = match old {
                        Value::Object(m) => m,
                        _ => Map::new(),
                    };
                    *slot = Value::Object(self.merge_map(old, item)?);
                }
                None => merged.push(Value::Object(self.merge_map(Map::new(), item)?)),
            }
        }
        Ok(merged)
    }
}

/// Reorders `items` per `$setElementOrder`: items named in `order` take the positions such
/// items already occupy, in `order`'s sequence; other (server-only) items stay where they are.
fn reorder(items: &mut [Value], order: &[Value], list_type: ListType) {
    let id = |v: &Value| -> Value {
        match list_type {
            ListType::Map(keys) => keys
                .first()
                .and_then(|k| v.get(*k))
                .cloned()
                .unwrap_or(Value::Null),
            _ => v.clone(),
        }
    };
    let rank = |v: &Value| order.iter().position(|o| id(o) == id(v));
    let slots: Vec<usize> = (0..items.len())
        .filter(|i| items.get(*i).and_then(rank).is_some())
        .collect();
    let mut ordered: Vec<Value> = slots
        .iter()
        .filter_map(|i| items.get(*i).cloned())
        .collect();
    ordered.sort_by_key(|v| rank(v).unwrap_or(usize::MAX));
    for (slot, value) in slots.into_iter().zip(ordered) {
        if let Some(s) = items.get_mut(slot) {
            *s = value;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::patch::schema_for;
    use serde_json::json;

    fn smp(kind: &str, doc: Value, patch: Value) -> Value {
        let group = if kind == "Deployment" { "apps" } else { "" };
        let schema = schema_for(group, kind).unwrap();
        strategic_merge_patch(&doc, patch.to_string().as_bytes(), schema)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn deployment(containers: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "d"},
               "spec": {"replicas": 1, "template": {"spec": {"containers": containers}}}})
    }

    #[test]
    fn maps_merge_and_null_deletes() {
        let doc = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "data": {"x": "1"}});
        let out = smp(
            "ConfigMap",
            doc,
            json!({"metadata": {"labels": {"a": null, "c": "3"}}, "data": {"y": "2"}}),
        );
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"b": "2", "c": "3"}}, "data": {"x": "1", "y": "2"}})
        );
    }

    #[test]
    fn containers_merge_by_name() {
        let doc = deployment(json!([
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}
        ]));
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "b", "image": "b:2"},
            {"name": "a", "env": [{"name": "Y", "value": "2"}]},
            {"name": "c", "image": "c:1"}
        ]}}}});
        let out = smp("Deployment", doc, patch);
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([
                {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
                {"name": "b", "image": "b:2"},
                {"name": "c", "image": "c:1"}
            ])
        );
        assert_eq!(out["spec"]["replicas"], json!(1));
    }

    #[test]
    fn delete_and_replace_directives_in_lists() {
        let doc = deployment(json!([{"name": "a", "image": "a"}, {"name": "b", "image": "b"}]));
        let out = smp(
            "Deployment",
            doc.clone(),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}}}),
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "b", "image": "b"}])
        );
        let out = smp(
            "Deployment",
            doc,
            json!({"spec": {"template": {"spec": {"containers": [
                {"$patch": "replace"}, {"name": "z", "image": "z"}
            ]}}}}),
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "z", "image": "z"}])
        );
    }

    #[test]
    fn replace_and_delete_directives_on_maps() {
        let doc = json!({"spec": {"selector": {"a": "1"}, "type": "ClusterIP", "ports": []}});
        let out = smp(
            "Service",
            doc.clone(),
            json!({"spec": {"selector": {"$patch": "replace", "b": "2"}}}),
        );
        assert_eq!(out["spec"]["selector"], json!({"b": "2"}));
        let out = smp(
            "Service",
            doc,
            json!({"spec": {"selector": {"$patch": "delete"}}}),
        );
        assert_eq!(out["spec"]["selector"], json!({}));
    }

    #[test]
    fn retain_keys_clears_other_fields() {
        let doc = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let out = smp(
            "Deployment",
            doc,
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        );
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn lists_without_merge_key_are_replaced() {
        let doc = json!({"spec": {"tolerations": [{"key": "a"}], "containers": [
            {"name": "c", "args": ["x", "y"]}
        ]}});
        let out = smp(
            "Pod",
            doc,
            json!({"spec": {"tolerations": [{"key": "b"}], "containers": [{"name": "c", "args": ["z"]}]}}),
        );
        assert_eq!(out["spec"]["tolerations"], json!([{"key": "b"}]));
        assert_eq!(out["spec"]["containers"][0]["args"], json!(["z"]));
    }

    #[test]
    fn finalizers_merge_as_a_set() {
        let doc = json!({"metadata": {"finalizers": ["a", "b"]}});
        let out = smp(
            "ConfigMap",
            doc,
            json!({"metadata": {"finalizers": ["b", "c"], "$deleteFromPrimitiveList/finalizers": ["a"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["b", "c"]));
    }

    #[test]
    fn set_element_order_reorders() {
        let doc = deployment(json!([{"name": "a"}, {"name": "b"}]));
        let out = smp(
            "Deployment",
            doc,
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "c"}, {"name": "b"}, {"name": "a"}],
                "containers": [{"name": "c", "image": "c"}]
            }}}}),
        );
        let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["c", "b", "a"]);
    }

    #[test]
    fn set_element_order_keeps_server_only_items_in_place() {
        let mut items = vec![json!("a"), json!("s"), json!("b")];
        reorder(&mut items, &[json!("b"), json!("a")], ListType::Set);
        assert_eq!(items, [json!("b"), json!("s"), json!("a")]);
    }

    #[test]
    fn service_ports_merge_by_port() {
        let doc = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}});
        let out = smp(
            "Service",
            doc,
            json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
        );
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "targetPort": 9090}, {"port": 443}])
        );
    }

    #[test]
    fn status_conditions_merge_by_type() {
        let doc = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "X", "status": "True"}]}});
        let out = smp(
            "Pod",
            doc,
            json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        );
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}, {"type": "X", "status": "True"}])
        );
    }

    #[test]
    fn new_fields_have_directives_stripped() {
        let out = smp(
            "Pod",
            json!({}),
            json!({"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": null}]}], "x": {"y": null}}}),
        );
        assert_eq!(
            out,
            json!({"spec": {"containers": [{"name": "a", "env": [{"name": "X"}]}], "x": {}}})
        );
    }

    #[test]
    fn errors() {
        let schema = schema_for("", "Pod").unwrap();
        let doc = json!({"spec": {"containers": []}});
        let err = strategic_merge_patch(
            &doc,
            br#"{"spec": {"containers": [{"image": "x"}]}}"#,
            schema,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"map: {"image":"x"} does not contain declared merge key: name"#
        );
        assert_eq!(err.code(), 422);
        let err = strategic_merge_patch(&doc, br#"{"$patch": "bogus"}"#, schema).unwrap_err();
        assert_eq!(err.code(), 400);
        assert!(strategic_merge_patch(&doc, b"[]", schema).is_err());
        assert!(strategic_merge_patch(&doc, b"{", schema).is_err());
        assert!(strategic_merge_patch(&doc, br#"{"$retainKeys": 3}"#, schema).is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(patch in "\\PC{0,64}") {
            let schema = schema_for("", "Pod").unwrap();
            let _ = strategic_merge_patch(&json!({"spec": {"containers": [{"name": "a"}]}}), patch.as_bytes(), schema);
        }

        #[test]
        fn plain_maps_agree_with_merge_patch(
            doc in proptest::collection::btree_map("[a-d]", "[a-z]{0,3}", 0..5),
            patch in proptest::collection::btree_map("[a-f]", proptest::option::of("[a-z]{0,3}"), 0..5),
        ) {
            let schema = schema_for("", "ConfigMap").unwrap();
            let doc = json!({"data": doc});
            let patch = json!({"data": patch}).to_string();
            let expected = crate::patch::merge_patch(&doc, patch.as_bytes()).unwrap();
            let got = strategic_merge_patch(&doc, patch.as_bytes(), schema).unwrap();
            proptest::prop_assert_eq!(got, expected);
        }
    }
}
