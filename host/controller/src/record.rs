//! Recording a plugin instance's writes: a [`HostApi`] in front of the plugin's host that notes each create, update, patch and delete of one reconcile and what came of it, for a shadow's comparison.

use std::sync::{Arc, Mutex};

use serde_json::Value;
use wasmkube_runtime::{
    ApiError, EventType, Gvr, HostApi, LogLevel, ObjectKey, PatchType, Propagation,
};

/// The most writes of one reconcile that are recorded; later ones are not compared.
pub const MAX_WRITES: usize = 256;

/// Fields the apiserver sets on what it stores (and sets differently for a dry run and a real
/// write), and the clock-based condition times a controller copies from the host's clock: left
/// out of the compared objects.
const SET_BY_THE_SERVER: [&str; 6] = [
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "selfLink",
];
const CLOCK_FIELDS: [&str; 4] = [
    "lastTransitionTime",
    "lastUpdateTime",
    "lastProbeTime",
    "lastHeartbeatTime",
];

/// One write a plugin made, and its result.
#[derive(Clone, Debug, PartialEq)]
pub struct Write {
    /// `create`, `update`, `patch` or `delete`.
    pub verb: &'static str,
    /// `plural[.group]`, with `/status` for a status update.
    pub resource: String,
    /// `namespace/name` (`name` for a cluster-scoped object; `generateName*` for a create with a
    /// generated name).
    pub key: String,
    /// The object as stored, or as a dry run would store it, without the fields the apiserver
    /// sets (`Null` for a delete); or the refusal, `409 AlreadyExists`.
    pub result: Result<Value, String>,
}

impl Write {
    /// `verb resource key`: what the write was about, without its result.
    pub fn label(&self) -> String {
        format!("{} {} {}", self.verb, self.resource, self.key)
    }
}

/// An object's key as [`Write::key`] has it.
fn key_of(obj: &Value, generated: bool) -> String {
    let text = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or_default();
    let name = if generated {
        format!("{}*", text("/metadata/generateName"))
    } else {
        text("/metadata/name").to_string()
    };
    match text("/metadata/namespace") {
        "" => name,
        namespace => format!("{namespace}/{name}"),
    }
}

/// `obj` without what the apiserver sets, nor clock-based condition times; without its name
/// when it was `generated`.
pub fn normalize(mut obj: Value, generated: bool) -> Value {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in SET_BY_THE_SERVER {
            meta.remove(field);
        }
        if generated {
            meta.remove("name");
        }
    }
    strip_clock(&mut obj);
    obj
}

fn strip_clock(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for field in CLOCK_FIELDS {
                map.remove(field);
            }
            map.values_mut().for_each(strip_clock);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_clock),
        _ => {}
    }
}

fn resource(gvr: &Gvr, subresource: Option<&str>) -> String {
    let mut name = gvr.resource.clone();
    if !gvr.group.is_empty() {
        name = format!("{name}.{}", gvr.group);
    }
    match subresource {
        Some(sub) => format!("{name}/{sub}"),
        None => name,
    }
}

/// A plugin instance's host that records the writes made while [`Recording::start`]ed.
pub struct Recording {
    host: Arc<dyn HostApi>,
    writes: Mutex<Option<Vec<Write>>>,
}

impl Recording {
    pub fn new(host: Arc<dyn HostApi>) -> Self {
        Recording {
            host,
            writes: Mutex::new(None),
        }
    }

    /// Records the writes from now on.
    pub fn start(&self) {
        *self.writes.lock().unwrap_or_else(|p| p.into_inner()) = Some(Vec::new());
    }

    /// Stops recording; the writes since [`Recording::start`], in order.
    pub fn take(&self) -> Vec<Write> {
        self.writes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_default()
    }

    fn recording(&self) -> bool {
        self.writes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    fn push(&self, write: Write) {
        let mut writes = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(writes) = writes.as_mut().filter(|w| w.len() < MAX_WRITES) {
            writes.push(write);
        }
    }

    /// Records a create or update of the object `request` (JSON) and its `result`.
    fn object_written(
        &self,
        verb: &'static str,
        resource: String,
        request: &str,
        result: &Result<String, ApiError>,
    ) {
        if !self.recording() {
            return;
        }
        let request: Value = serde_json::from_str(request).unwrap_or_default();
        let generated = verb == "create"
            && request
                .pointer("/metadata/generateName")
                .and_then(Value::as_str)
                .is_some_and(|g| !g.is_empty());
        self.push(Write {
            verb,
            resource,
            key: key_of(&request, generated),
            result: outcome(result, generated),
        });
    }

    /// Records a patch or delete of `key` and its `result`.
    fn key_written(
        &self,
        verb: &'static str,
        resource: String,
        key: &ObjectKey,
        result: Result<Value, String>,
    ) {
        if !self.recording() {
            return;
        }
        let key = match key.namespace.as_str() {
            "" => key.name.clone(),
            namespace => format!("{namespace}/{}", key.name),
        };
        self.push(Write {
            verb,
            resource,
            key,
            result,
        });
    }
}

/// A write's result as [`Write::result`] has it.
fn outcome(result: &Result<String, ApiError>, generated: bool) -> Result<Value, String> {
    match result {
        Ok(obj) => Ok(normalize(
            serde_json::from_str(obj).unwrap_or_default(),
            generated,
        )),
        Err(e) => Err(refusal(e)),
    }
}

fn refusal(e: &ApiError) -> String {
    format!("{} {}", e.code, e.reason)
}

#[async_trait::async_trait]
impl HostApi for Recording {
    async fn get(&self, resource: Gvr, key: ObjectKey) -> Result<Option<String>, ApiError> {
        self.host.get(resource, key).await
    }

    async fn list(
        &self,
        resource: Gvr,
        namespace: String,
        label_selector: String,
    ) -> Result<Vec<String>, ApiError> {
        self.host.list(resource, namespace, label_selector).await
    }

    async fn create(&self, gvr: Gvr, obj: String) -> Result<String, ApiError> {
        let name = resource(&gvr, None);
        let result = self.host.create(gvr, obj.clone()).await;
        self.object_written("create", name, &obj, &result);
        result
    }

    async fn update(&self, gvr: Gvr, obj: String) -> Result<String, ApiError> {
        let name = resource(&gvr, None);
        let result = self.host.update(gvr, obj.clone()).await;
        self.object_written("update", name, &obj, &result);
        result
    }

    async fn update_status(&self, gvr: Gvr, obj: String) -> Result<String, ApiError> {
        let name = resource(&gvr, Some("status"));
        let result = self.host.update_status(gvr, obj.clone()).await;
        self.object_written("update", name, &obj, &result);
        result
    }

    async fn patch(
        &self,
        gvr: Gvr,
        key: ObjectKey,
        kind: PatchType,
        patch: String,
    ) -> Result<String, ApiError> {
        let name = resource(&gvr, None);
        let result = self.host.patch(gvr, key.clone(), kind, patch).await;
        self.key_written("patch", name, &key, outcome(&result, false));
        result
    }

    async fn delete(
        &self,
        gvr: Gvr,
        key: ObjectKey,
        propagation: Propagation,
    ) -> Result<(), ApiError> {
        let name = resource(&gvr, None);
        let result = self.host.delete(gvr, key.clone(), propagation).await;
        let recorded = result.as_ref().map(|()| Value::Null).map_err(refusal);
        self.key_written("delete", name, &key, recorded);
        result
    }

    async fn emit_event(
        &self,
        regarding: String,
        kind: EventType,
        reason: String,
        message: String,
    ) {
        self.host.emit_event(regarding, kind, reason, message).await;
    }

    fn log(&self, level: LogLevel, message: String) {
        self.host.log(level, message);
    }

    fn now(&self) -> String {
        self.host.now()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn normalizing_drops_what_the_server_and_the_clock_set() {
        let stored = json!({"metadata": {"name": "web-x1", "generateName": "web-", "namespace": "d",
            "uid": "u", "resourceVersion": "7", "creationTimestamp": "t", "generation": 2,
            "managedFields": [], "labels": {"a": "1"}},
            "status": {"conditions": [{"type": "Ready", "lastTransitionTime": "t", "status": "True"}]}});
        assert_eq!(
            normalize(stored.clone(), true),
            json!({"metadata": {"generateName": "web-", "namespace": "d", "labels": {"a": "1"}},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
        );
        assert_eq!(
            normalize(stored.clone(), false)["metadata"]["name"],
            "web-x1"
        );
        assert_eq!(key_of(&stored, true), "d/web-*");
        assert_eq!(key_of(&stored, false), "d/web-x1");
        assert_eq!(
            resource(
                &Gvr {
                    group: "apps".into(),
                    version: "v1".into(),
                    resource: "deployments".into(),
                },
                Some("status")
            ),
            "deployments.apps/status"
        );
    }
}
