//! Bounds on the JSON values built from what clients send: nesting depth, size, and the nodes a
//! YAML document's aliases expand to (CVE-2019-11253). Measured without recursion.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// The deepest an object may nest (objects and arrays). Stored objects are read back with
/// serde_json, which refuses more than 128 levels: a deeper object could never be read again.
pub const MAX_DEPTH: usize = 100;

/// The nodes a YAML document's aliases may add to what its text holds: a document without
/// aliases has at most one node per two bytes, so it is never refused.
pub const MAX_ALIAS_NODES: usize = 10_000;

/// How deep `value` nests (a scalar is 0, `{}` is 1) and roughly how many bytes its JSON takes.
pub fn measure(value: &Value) -> (usize, usize) {
    let mut deepest = 0;
    let mut bytes = 0;
    let mut stack = vec![(value, 0)];
    while let Some((v, depth)) = stack.pop() {
        match v {
            Value::Array(items) => {
                deepest = deepest.max(depth + 1);
                bytes += 2 + items.len();
                stack.extend(items.iter().map(|item| (item, depth + 1)));
            }
            Value::Object(map) => {
                deepest = deepest.max(depth + 1);
                bytes += 2;
                for (key, item) in map {
                    bytes += key.len() + 4;
                    stack.push((item, depth + 1));
                }
            }
            Value::String(s) => bytes += s.len() + 2,
            _ => bytes += 8,
        }
    }
    (deepest, bytes)
}

/// Parses a YAML document into JSON, refusing one whose aliases expand to more than
/// [`MAX_ALIAS_NODES`] nodes beyond what its text holds, or that nests deeper than
/// [`MAX_DEPTH`]. The expansion stops at the limit: it is never built.
pub fn yaml(text: &[u8]) -> Result<Value, serde_yaml::Error> {
    let budget = Budget {
        left: Cell::new(text.len() / 2 + MAX_ALIAS_NODES),
    };
    let node = Node {
        budget: &budget,
        depth: 0,
    };
    node.deserialize(serde_yaml::Deserializer::from_slice(text))
}

struct Budget {
    left: Cell<usize>,
}

/// One node being built, at `depth`.
#[derive(Clone, Copy)]
struct Node<'b> {
    budget: &'b Budget,
    depth: usize,
}

impl Node<'_> {
    fn take<E: de::Error>(self) -> Result<Self, E> {
        let left = self.budget.left.get();
        if left == 0 {
            return Err(E::custom(format!(
                "the document's aliases expand to more than {MAX_ALIAS_NODES} nodes beyond its text"
            )));
        }
        self.budget.left.set(left - 1);
        Ok(self)
    }

    fn child<E: de::Error>(self) -> Result<Self, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format!(
                "the document nests deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(Node {
            budget: self.budget,
            depth: self.depth + 1,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.take::<E>()?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.take::<E>()?;
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.take::<E>()?;
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.take::<E>()?;
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.take::<E>()?;
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.take::<E>()?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.take::<E>()?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let child = self.take::<A::Error>()?.child::<A::Error>()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(child)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let child = self.take::<A::Error>()?.child::<A::Error>()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            child.take::<A::Error>()?;
            let value = map.next_value_seed(child)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn plain_yaml_parses_as_json() {
        let value = yaml(b"a: 1\nb: [x, true, null, 1.5]\nc: {d: e}\n").expect("valid");
        assert_eq!(
            value,
            json!({"a": 1, "b": ["x", true, null, 1.5], "c": {"d": "e"}})
        );
        assert_eq!(measure(&value).0, 2);
        let small_aliases = yaml(b"base: &b {x: 1}\none: *b\ntwo: *b\n").expect("valid");
        assert_eq!(small_aliases["two"], json!({"x": 1}));
    }

    #[test]
    fn a_billion_laughs_is_refused_before_it_is_built() {
        let mut text = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h"]
            .iter()
            .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
        {
            let refs = vec![format!("*{prev}"); 9].join(",");
            text.push_str(&format!("{name}: &{name} [{refs}]\n"));
        }
        let err = yaml(text.as_bytes()).expect_err("refused");
        assert!(
            err.to_string().contains("aliases expand to more than"),
            "{err}"
        );
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = format!(
            "{}1{}",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        let err = yaml(deep.as_bytes()).expect_err("refused");
        assert!(err.to_string().contains("deeper than"), "{err}");
        let ok = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(measure(&yaml(ok.as_bytes()).expect("valid")).0, MAX_DEPTH);
    }
}
