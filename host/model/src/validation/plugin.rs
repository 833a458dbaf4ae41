//! The project's own kinds, beyond their structural schemas: a PluginModule chunk's index is within its count.

use serde_json::Value;

use super::Errors;

pub fn validate_module(obj: &Value, errs: &mut Errors) {
    let (index, count) = (
        obj.get("index").and_then(Value::as_i64),
        obj.get("count").and_then(Value::as_i64),
    );
    if let (Some(i), Some(n)) = (index, count)
        && i >= n
    {
        errs.invalid("index", &Value::from(i), "must be less than count");
    }
}
