//! Conversion between versions that share one storage: `events.k8s.io/v1` Events are stored as core `v1` Events.

use serde_json::{Map, Value, json};

use crate::resource::ResourceInfo;

/// (events.k8s.io/v1 field, core/v1 field) pairs that only change name.
const EVENT_FIELDS: [(&str, &str); 11] = [
    ("regarding", "involvedObject"),
    ("related", "related"),
    ("note", "message"),
    ("reason", "reason"),
    ("type", "type"),
    ("action", "action"),
    ("reportingController", "reportingComponent"),
    ("reportingInstance", "reportingInstance"),
    ("eventTime", "eventTime"),
    ("series", "series"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
];

/// Whether objects of `info` are stored in another version's form.
fn is_events_v1(info: &ResourceInfo) -> bool {
    info.group == "events.k8s.io" && info.kind == "Event"
}

fn rename(
    from: &Value,
    pairs: impl Iterator<Item = (&'static str, &'static str)>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (src, dst) in pairs {
        if let Some(v) = from.get(src).filter(|v| !v.is_null()) {
            out.insert(dst.to_string(), v.clone());
        }
    }
    out
}

/// The object as stored: an `events.k8s.io/v1` Event becomes a core `v1` Event.
pub fn to_storage(info: &ResourceInfo, obj: Value) -> Value {
    if !is_events_v1(info) {
        return obj;
    }
    let mut core = rename(
        &obj,
        EVENT_FIELDS.into_iter().chain([
            ("deprecatedLastTimestamp", "lastTimestamp"),
            ("deprecatedCount", "count"),
        ]),
    );
    core.insert("apiVersion".into(), json!("v1"));
    core.insert("kind".into(), json!("Event"));
    core.insert(
        "metadata".into(),
        obj.get("metadata").cloned().unwrap_or(json!({})),
    );
    if let Some(source) = obj.get("deprecatedSource").filter(|s| s.is_object()) {
        core.insert("source".into(), source.clone());
    }
    Value::Object(core)
}

/// The stored object in the form of `info`: a core Event read as `events.k8s.io/v1`.
pub fn from_storage(info: &ResourceInfo, stored: Value) -> Value {
    if !is_events_v1(info) {
        return stored;
    }
    let swapped = EVENT_FIELDS
        .into_iter()
        .chain([
            ("deprecatedLastTimestamp", "lastTimestamp"),
            ("deprecatedCount", "count"),
        ])
        .map(|(a, b)| (b, a));
    let mut event = rename(&stored, swapped);
    event.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    event.insert("kind".into(), json!("Event"));
    event.insert(
        "metadata".into(),
        stored.get("metadata").cloned().unwrap_or(json!({})),
    );
    if let Some(source) = stored
        .get("source")
        .filter(|s| s.as_object().is_some_and(|m| !m.is_empty()))
    {
        event.insert("deprecatedSource".into(), source.clone());
    }
    Value::Object(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{Registry, builtins};

    #[test]
    fn events_round_trip_through_the_core_form() {
        let registry = Registry::new(builtins());
        let info = registry
            .by_kind("events.k8s.io/v1", "Event")
            .expect("served");
        let event = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "default"},
            "regarding": {"kind": "Pod", "name": "p"}, "note": "pulled", "reason": "Pulled", "type": "Normal",
            "reportingController": "kubelet", "reportingInstance": "n1", "action": "Pull",
            "eventTime": "2026-01-01T00:00:00.000000Z", "deprecatedCount": 2,
        });
        let core = to_storage(info, event.clone());
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "pulled");
        assert_eq!(core["reportingComponent"], "kubelet");
        assert_eq!(core["count"], 2);
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(from_storage(info, core), event);
        let core_info = registry.by_kind("v1", "Event").expect("served");
        assert_eq!(info.key_prefix(), core_info.key_prefix());
    }
}
