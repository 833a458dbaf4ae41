//! `metadata.managedFields` entries: decoding, encoding and per-manager bookkeeping.

use serde_json::{Map, Value, json};

use super::fieldset::FieldSet;

/// One manager's record: who, by which operation, and which fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

impl Entry {
    /// Whether this entry is `manager`'s record for `operation` on the main resource.
    pub fn is(&self, manager: &str, operation: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource.is_none()
    }

    fn decode(value: &Value) -> Option<Entry> {
        let text = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_string);
        Some(Entry {
            manager: text("manager").unwrap_or_default(),
            operation: text("operation")?,
            api_version: text("apiVersion").unwrap_or_default(),
            time: text("time").unwrap_or_default(),
            subresource: text("subresource").filter(|s| !s.is_empty()),
            fields: FieldSet::from_fields_v1(value.get("fieldsV1").unwrap_or(&json!({})))?,
        })
    }

    fn encode(&self) -> Value {
        let mut map = Map::new();
        map.insert("manager".into(), json!(self.manager));
        map.insert("operation".into(), json!(self.operation));
        map.insert("apiVersion".into(), json!(self.api_version));
        map.insert("time".into(), json!(self.time));
        map.insert("fieldsType".into(), json!("FieldsV1"));
        map.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if let Some(sub) = &self.subresource {
            map.insert("subresource".into(), json!(sub));
        }
        Value::Object(map)
    }
}

/// The entries stored in `obj` (malformed entries are dropped, as the apiserver resets them).
pub fn read(obj: Option<&Value>) -> Vec<Entry> {
    obj.and_then(|o| o.pointer("/metadata/managedFields"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Entry::decode)
        .collect()
}

/// Stores `entries` (those with fields) into `obj.metadata.managedFields`.
pub fn write(obj: &mut Value, entries: Vec<Entry>) {
    let encoded: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(Entry::encode)
        .collect();
    let Value::Object(root) = obj else {
        return;
    };
    let metadata = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(meta) = metadata {
        if encoded.is_empty() {
            meta.shift_remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(encoded));
        }
    }
}

/// The union of every entry's fields except those `skip` selects.
pub fn owned_by_others(entries: &[Entry], skip: impl Fn(&Entry) -> bool) -> FieldSet {
    entries
        .iter()
        .filter(|e| !skip(e))
        .fold(FieldSet::default(), |acc, e| acc.union(&e.fields))
}

/// Replaces (or appends) the main-resource entry of `manager`/`operation`.
pub fn upsert(entries: &mut Vec<Entry>, entry: Entry) {
    match entries
        .iter_mut()
        .find(|e| e.is(&entry.manager, &entry.operation))
    {
        Some(slot) => *slot = entry,
        None => entries.push(entry),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_managed_fields() {
        let obj = json!({"metadata": {"managedFields": [
            {"manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": "t",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:a": {}}}},
            {"manager": "x", "operation": "Update", "apiVersion": "v1", "time": "t",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {}}, "subresource": "status"},
            {"bogus": true}
        ]}});
        let entries = read(Some(&obj));
        assert_eq!(entries.len(), 2);
        assert!(entries[0].is("kubectl", "Apply"));
        assert!(!entries[1].is("x", "Update"));
        let mut out = json!({});
        write(&mut out, entries);
        let stored = out["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(stored.len(), 2);
        assert_eq!(stored[0]["fieldsType"], "FieldsV1");
        assert_eq!(stored[1]["subresource"], "status");
    }

    #[test]
    fn empty_entries_are_dropped() {
        let mut out = json!({"metadata": {"managedFields": [{}]}});
        write(
            &mut out,
            vec![Entry {
                manager: "m".into(),
                operation: "Update".into(),
                api_version: "v1".into(),
                time: "t".into(),
                subresource: None,
                fields: FieldSet::default(),
            }],
        );
        assert_eq!(out, json!({"metadata": {}}));
    }
}
