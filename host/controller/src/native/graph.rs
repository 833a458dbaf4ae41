//! The ownership graph: which uid is alive where, and which objects each owner has.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;
use wasmkube_model::meta::ResourceExt;

/// An object the controllers know: its store key, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub key: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn of(key: &str, obj: &Value) -> ObjectRef {
        let text = |p: &str| obj.pointer(p).and_then(Value::as_str).map(String::from);
        ObjectRef {
            key: key.to_string(),
            namespace: text("/metadata/namespace"),
            name: text("/metadata/name").unwrap_or_default(),
        }
    }
}

pub fn uid(obj: &Value) -> Option<String> {
    obj.uid().map(String::from)
}

pub fn owner_uids(obj: &Value) -> Vec<String> {
    obj.owner_references()
        .iter()
        .filter_map(|r| r["uid"].as_str().map(String::from))
        .collect()
}

#[derive(Default)]
pub struct Graph {
    /// uid → the object with that uid.
    pub alive: HashMap<String, ObjectRef>,
    /// owner uid → dependents.
    dependents: HashMap<String, BTreeSet<ObjectRef>>,
}

impl Graph {
    pub fn insert(&mut self, r: &ObjectRef, obj: &Value) {
        if let Some(uid) = uid(obj) {
            self.alive.insert(uid, r.clone());
        }
        for owner in owner_uids(obj) {
            self.dependents.entry(owner).or_default().insert(r.clone());
        }
    }

    pub fn remove(&mut self, r: &ObjectRef, obj: &Value) {
        if let Some(uid) = uid(obj) {
            self.alive.remove(&uid);
        }
        for owner in owner_uids(obj) {
            if let Some(set) = self.dependents.get_mut(&owner) {
                set.remove(r);
                if set.is_empty() {
                    self.dependents.remove(&owner);
                }
            }
        }
    }

    pub fn dependents_of(&self, uid: &str) -> Vec<ObjectRef> {
        self.dependents
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}
