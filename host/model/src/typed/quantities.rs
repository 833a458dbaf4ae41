//! Quantities written as JSON numbers (`cpu: 1`, `storage: 1000000`): Kubernetes' `Quantity` takes them, so before typed decoding they become strings wherever the kind's schema has a `Quantity`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, RwLock};

use schemars::r#gen::SchemaSettings;
use serde_json::{Map, Value};

/// The definition name of `Quantity` in the generated schemas.
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
const DEFINITIONS: &str = "#/definitions/";

/// Where a kind's quantities are: a tree of the fields that lead to one, nothing else.
#[derive(Debug, Default, PartialEq)]
struct Places {
    /// This value is a `Quantity`.
    quantity: bool,
    fields: BTreeMap<String, Places>,
    /// Every value of a map (`requests: {cpu: …}`).
    values: Option<Box<Places>>,
    /// Every item of an array.
    items: Option<Box<Places>>,
}

impl Places {
    /// The places under `schema`, `None` when it holds no quantity. `seen` are the definitions
    /// being expanded (schemas are recursive: `JSONSchemaProps` holds `JSONSchemaProps`).
    fn of(
        schema: &Value,
        definitions: &Map<String, Value>,
        seen: &mut Vec<String>,
    ) -> Option<Places> {
        if let Some(name) = schema["$ref"]
            .as_str()
            .and_then(|r| r.strip_prefix(DEFINITIONS))
        {
            if name == QUANTITY {
                return Some(Places {
                    quantity: true,
                    ..Places::default()
                });
            }
            if seen.iter().any(|s| s == name) {
                return None;
            }
            seen.push(name.to_string());
            let places = definitions
                .get(name)
                .and_then(|d| Places::of(d, definitions, seen));
            seen.pop();
            return places;
        }
        if let Some(all) = schema["allOf"].as_array() {
            return all.iter().find_map(|s| Places::of(s, definitions, seen));
        }
        let mut places = Places::default();
        if let Some(properties) = schema["properties"].as_object() {
            for (field, sub) in properties {
                if let Some(p) = Places::of(sub, definitions, seen) {
                    places.fields.insert(field.clone(), p);
                }
            }
        }
        if schema["additionalProperties"].is_object() {
            places.values =
                Places::of(&schema["additionalProperties"], definitions, seen).map(Box::new);
        }
        if schema["items"].is_object() {
            places.items = Places::of(&schema["items"], definitions, seen).map(Box::new);
        }
        let empty = places.fields.is_empty() && places.values.is_none() && places.items.is_none();
        (!empty).then_some(places)
    }

    /// Whether `value` has a number at one of these places.
    fn has_number(&self, value: &Value) -> bool {
        match value {
            Value::Number(_) => self.quantity,
            Value::Object(map) => map
                .iter()
                .any(|(k, v)| self.child(k).is_some_and(|p| p.has_number(v))),
            Value::Array(items) => self
                .items
                .as_ref()
                .is_some_and(|p| items.iter().any(|v| p.has_number(v))),
            _ => false,
        }
    }

    /// Turns the numbers at these places into strings (`1` → `"1"`, `0.5` → `"0.5"`).
    fn stringify(&self, value: &mut Value) {
        match value {
            Value::Number(n) if self.quantity => *value = Value::String(n.to_string()),
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    if let Some(p) = self.child(k) {
                        p.stringify(v);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(p) = &self.items {
                    items.iter_mut().for_each(|v| p.stringify(v));
                }
            }
            _ => {}
        }
    }

    fn child(&self, field: &str) -> Option<&Places> {
        self.fields.get(field).or(self.values.as_deref())
    }
}

/// The places of each built-in kind by (group, kind), found from its schema on first use.
type Cache = HashMap<(String, String), Option<Arc<Places>>>;
static PLACES: LazyLock<RwLock<Cache>> = LazyLock::new(RwLock::default);

fn places(group: &str, kind: &str) -> Option<Arc<Places>> {
    let key = (group.to_string(), kind.to_string());
    if let Some(found) = PLACES.read().ok().and_then(|m| m.get(&key).cloned()) {
        return found;
    }
    let mut generator = SchemaSettings::draft07()
        .with(|s| s.definitions_path = DEFINITIONS.to_string())
        .into_generator();
    let found = super::schema_for(group, kind, &mut generator).and_then(|name| {
        let definitions = serde_json::to_value(generator.definitions()).ok()?;
        let definitions = definitions.as_object()?;
        let mut seen = vec![name.clone()];
        Places::of(definitions.get(&name)?, definitions, &mut seen).map(Arc::new)
    });
    if let Ok(mut map) = PLACES.write() {
        map.insert(key, found.clone());
    }
    found
}

/// `value` with its numeric quantities as strings; `None` when it has none (the common case,
/// without a copy).
pub(super) fn stringified(group: &str, kind: &str, value: &Value) -> Option<Value> {
    let places = places(group, kind)?;
    if !places.has_number(value) {
        return None;
    }
    let mut copy = value.clone();
    places.stringify(&mut copy);
    Some(copy)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn numbers_become_strings_only_where_a_quantity_is() {
        let pod = json!({"spec": {
            "containers": [{"name": "c", "resources": {"requests": {"cpu": 1, "memory": 1000000}, "limits": {"cpu": 0.5}}}],
            "initContainers": [{"name": "i", "resources": {"limits": {"cpu": -100}}}],
            "overhead": {"cpu": 2},
            "terminationGracePeriodSeconds": 30,
            "volumes": [{"name": "v", "emptyDir": {"sizeLimit": 1024}}],
        }});
        let out = stringified("", "Pod", &pod).expect("has numeric quantities");
        let spec = &out["spec"];
        assert_eq!(
            spec["containers"][0]["resources"]["requests"],
            json!({"cpu": "1", "memory": "1000000"})
        );
        assert_eq!(spec["containers"][0]["resources"]["limits"]["cpu"], "0.5");
        assert_eq!(
            spec["initContainers"][0]["resources"]["limits"]["cpu"],
            "-100"
        );
        assert_eq!(spec["overhead"]["cpu"], "2");
        assert_eq!(spec["volumes"][0]["emptyDir"]["sizeLimit"], "1024");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30, "not a quantity");
        let claim = json!({"spec": {"resources": {"requests": {"storage": 5}}}});
        assert_eq!(
            stringified("", "PersistentVolumeClaim", &claim).expect("a quantity")["spec"]["resources"]
                ["requests"]["storage"],
            "5"
        );
    }

    #[test]
    fn objects_without_numeric_quantities_are_not_copied() {
        let pod = json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}});
        assert_eq!(stringified("", "Pod", &pod), None);
        assert_eq!(
            stringified("", "ConfigMap", &json!({"data": {"a": "1"}})),
            None
        );
        assert_eq!(stringified("example.com", "Widget", &json!({"x": 1})), None);
        // A recursive schema (a CRD's JSONSchemaProps) is walked once per definition.
        let crd =
            json!({"spec": {"versions": [{"schema": {"openAPIV3Schema": {"type": "object"}}}]}});
        assert_eq!(
            stringified("apiextensions.k8s.io", "CustomResourceDefinition", &crd),
            None
        );
    }
}
