//! `FakeHost`: an in-memory apiserver implementing `Host`, for native unit tests of controllers.
//!
//! It stores objects by GVR, namespace and name; assigns uid, resourceVersion, generation and
//! creationTimestamp; honours `generateName` and resourceVersion preconditions (409); lists by
//! label selector; applies JSON, merge and strategic merge patches; keeps `status` apart from
//! the main resource (updates keep the stored status, status updates keep everything else);
//! deletes at once unless finalizers are set (then it sets `deletionTimestamp`). It does not
//! validate, default, or garbage-collect dependents.

use std::cell::RefCell;
use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use k8s_openapi::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use wasmkube_model::patch;
use wasmkube_model::selector::LabelSelector;

use crate::context::Context;
use crate::controller::{Controller, Outcome};
use crate::error::Error;
use crate::host::Host;
use crate::types::{ApiError, EventType, Gvr, LogLevel, ObjectKey, PatchType, Propagation};

/// The alphabet of Kubernetes' random name suffixes.
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A write the fake apiserver accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `create`.
    Create,
    /// `update`.
    Update,
    /// `update-status`.
    UpdateStatus,
    /// `patch`.
    Patch,
    /// `delete`.
    Delete,
}

/// One accepted write: what, on which resource, to which object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// The verb.
    pub verb: Verb,
    /// The resource.
    pub resource: Gvr,
    /// The object written.
    pub key: ObjectKey,
}

/// An Event a controller emitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// The `kind` of the object the Event is about.
    pub regarding_kind: String,
    /// Where that object lives.
    pub regarding: ObjectKey,
    /// Normal or Warning.
    pub kind: EventType,
    /// The machine-readable reason, e.g. `SuccessfulCreate`.
    pub reason: String,
    /// The message.
    pub message: String,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<(Gvr, String, String), Value>,
    serial: u64,
    now: DateTime<Utc>,
    events: Vec<RecordedEvent>,
    logs: Vec<(LogLevel, String)>,
    actions: Vec<Action>,
}

/// An in-memory fake apiserver; see the module documentation for what it enforces.
pub struct FakeHost {
    state: RefCell<State>,
}

impl Default for FakeHost {
    fn default() -> Self {
        FakeHost::new()
    }
}

fn obj_key(obj: &Value) -> ObjectKey {
    let field = |f: &str| obj["metadata"][f].as_str().unwrap_or_default().to_string();
    ObjectKey {
        namespace: field("namespace"),
        name: field("name"),
    }
}

fn parse(gvr: &Gvr, obj: &str) -> Result<Value, ApiError> {
    match serde_json::from_str::<Value>(obj) {
        Ok(v) if v["metadata"].is_object() => Ok(v),
        Ok(_) => Err(ApiError::new(
            422,
            "Invalid",
            format!("{gvr}: metadata is required"),
        )),
        Err(e) => Err(ApiError::new(400, "BadRequest", e.to_string())),
    }
}

fn not_found(gvr: &Gvr, name: &str) -> ApiError {
    ApiError::new(404, "NotFound", format!("{gvr} \"{name}\" not found"))
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata").and_then(Value::as_object_mut) {
        Some(meta) => meta,
        None => unreachable!("metadata was just made an object"),
    }
}

/// The parts of an object `metadata.generation` tracks: everything but metadata and status.
fn spec_of(obj: &Value) -> Value {
    let mut obj = obj.clone();
    if let Some(map) = obj.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    obj
}

impl FakeHost {
    /// An empty apiserver whose clock stands at 2025-01-01T00:00:00Z.
    pub fn new() -> FakeHost {
        let now = DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        FakeHost {
            state: RefCell::new(State {
                now,
                ..State::default()
            }),
        }
    }

    /// A [`Context`] over this host.
    pub fn context(&self) -> Context<'_> {
        Context::new(self)
    }

    /// Runs controller `C`'s reconcile for `key` against this host.
    pub fn reconcile<C: Controller>(&self, key: &ObjectKey) -> Result<Outcome, Error> {
        C::reconcile(&self.context(), key.clone())
    }

    /// The clock.
    pub fn clock(&self) -> DateTime<Utc> {
        self.state.borrow().now
    }

    /// Sets the clock.
    pub fn set_clock(&self, now: DateTime<Utc>) {
        self.state.borrow_mut().now = now;
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: TimeDelta) {
        self.state.borrow_mut().now += by;
    }

    /// Stores a typed object as `create` would (name, uid, resourceVersion ...), status included.
    pub fn insert<K: Resource + Serialize + DeserializeOwned>(&self, obj: &K) -> Result<K, Error> {
        let gvr = Gvr::of::<K>();
        let value = serde_json::to_value(obj).map_err(|source| Error::Encode {
            what: gvr.to_string(),
            source,
        })?;
        let stored = self.insert_dynamic(&gvr, value)?;
        serde_json::from_value(stored).map_err(|source| Error::Decode {
            what: gvr.to_string(),
            source,
        })
    }

    /// Stores an object of any resource as `create` would.
    pub fn insert_dynamic(&self, gvr: &Gvr, obj: Value) -> Result<Value, Error> {
        Ok(self.state.borrow_mut().create(gvr, obj)?)
    }

    /// Changes a stored typed object in place, bypassing preconditions and the status split
    /// (e.g. to mark a pod Ready, or set its deletionTimestamp); bumps its resourceVersion.
    pub fn modify<K: Resource + Serialize + DeserializeOwned>(
        &self,
        namespace: &str,
        name: &str,
        change: impl FnOnce(&mut K),
    ) -> Result<K, Error> {
        let gvr = Gvr::of::<K>();
        let what = || gvr.to_string();
        let stored = self.modify_dynamic(&gvr, namespace, name, |obj| {
            let Ok(mut typed) = serde_json::from_value::<K>(obj.clone()) else {
                return;
            };
            change(&mut typed);
            if let Ok(value) = serde_json::to_value(&typed) {
                *obj = value;
            }
        })?;
        serde_json::from_value(stored).map_err(|source| Error::Decode {
            what: what(),
            source,
        })
    }

    /// Changes a stored object of any resource in place; see [`FakeHost::modify`].
    pub fn modify_dynamic(
        &self,
        gvr: &Gvr,
        namespace: &str,
        name: &str,
        change: impl FnOnce(&mut Value),
    ) -> Result<Value, Error> {
        let index = (gvr.clone(), namespace.to_string(), name.to_string());
        let stored = self.state.borrow().objects.get(&index).cloned();
        let mut obj = stored.ok_or_else(|| not_found(gvr, name))?;
        change(&mut obj);
        let mut state = self.state.borrow_mut();
        let rv = state.next_serial().to_string();
        meta_mut(&mut obj).insert("resourceVersion".into(), rv.into());
        state.objects.insert(index, obj.clone());
        Ok(obj)
    }

    /// Removes an object outright, finalizers or not; returns whether it existed.
    pub fn remove(&self, gvr: &Gvr, namespace: &str, name: &str) -> bool {
        let index = (gvr.clone(), namespace.to_string(), name.to_string());
        self.state.borrow_mut().objects.remove(&index).is_some()
    }

    /// The Events emitted so far.
    pub fn events(&self) -> Vec<RecordedEvent> {
        self.state.borrow().events.clone()
    }

    /// The log lines written so far.
    pub fn logs(&self) -> Vec<(LogLevel, String)> {
        self.state.borrow().logs.clone()
    }

    /// The writes accepted so far, in order.
    pub fn actions(&self) -> Vec<Action> {
        self.state.borrow().actions.clone()
    }

    /// Forgets the recorded actions, Events and logs (objects stay).
    pub fn clear_records(&self) {
        let mut state = self.state.borrow_mut();
        state.actions.clear();
        state.events.clear();
        state.logs.clear();
    }
}

impl State {
    fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    fn record(&mut self, verb: Verb, gvr: &Gvr, key: ObjectKey) {
        self.actions.push(Action {
            verb,
            resource: gvr.clone(),
            key,
        });
    }

    fn create(&mut self, gvr: &Gvr, mut obj: Value) -> Result<Value, ApiError> {
        let mut key = obj_key(&obj);
        if obj["metadata"]["resourceVersion"]
            .as_str()
            .is_some_and(|rv| !rv.is_empty())
        {
            let msg = "resourceVersion should not be set on objects to be created";
            return Err(ApiError::new(500, "InternalError", msg));
        }
        if key.name.is_empty() {
            let Some(prefix) = obj["metadata"]["generateName"].as_str().map(str::to_string) else {
                let msg = format!(
                    "{gvr}: metadata.name: Required value: name or generateName is required"
                );
                return Err(ApiError::new(422, "Invalid", msg));
            };
            let mut n = self.next_serial();
            let suffix: String = (0..5)
                .map(|_| {
                    let c = SUFFIX_ALPHABET[(n % 27) as usize];
                    n /= 27;
                    char::from(c)
                })
                .collect();
            key.name = format!("{prefix}{suffix}");
        }
        let index = (gvr.clone(), key.namespace.clone(), key.name.clone());
        if self.objects.contains_key(&index) {
            let msg = format!("{gvr} \"{}\" already exists", key.name);
            return Err(ApiError::new(409, "AlreadyExists", msg));
        }
        let serial = self.next_serial();
        let created = self.now.to_rfc3339_opts(SecondsFormat::Secs, true);
        let meta = meta_mut(&mut obj);
        meta.insert("name".into(), key.name.clone().into());
        meta.insert(
            "uid".into(),
            format!("00000000-0000-4000-8000-{serial:012x}").into(),
        );
        meta.insert("resourceVersion".into(), serial.to_string().into());
        meta.insert("creationTimestamp".into(), created.into());
        meta.insert("generation".into(), 1.into());
        self.objects.insert(index, obj.clone());
        Ok(obj)
    }

    /// Replaces a stored object; `status_only` keeps everything but `status`, otherwise the
    /// stored `status` and system metadata are kept.
    fn replace(&mut self, gvr: &Gvr, obj: Value, verb: Verb) -> Result<Value, ApiError> {
        let key = obj_key(&obj);
        let index = (gvr.clone(), key.namespace.clone(), key.name.clone());
        let stored = self
            .objects
            .get(&index)
            .ok_or_else(|| not_found(gvr, &key.name))?;
        let stored_rv = &stored["metadata"]["resourceVersion"];
        if obj["metadata"]["resourceVersion"]
            .as_str()
            .is_some_and(|rv| !rv.is_empty())
            && obj["metadata"]["resourceVersion"] != *stored_rv
        {
            let msg = format!(
                "Operation cannot be fulfilled on {gvr} \"{}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                key.name
            );
            return Err(ApiError::new(409, "Conflict", msg));
        }
        let mut new = if verb == Verb::UpdateStatus {
            let mut new = stored.clone();
            new["status"] = obj["status"].clone();
            new
        } else {
            let mut new = obj;
            match stored.get("status") {
                Some(status) => new["status"] = status.clone(),
                None => {
                    new.as_object_mut().map(|m| m.remove("status"));
                }
            }
            let generation = stored["metadata"]["generation"].as_i64().unwrap_or(1);
            let changed = spec_of(&new) != spec_of(stored);
            let meta = meta_mut(&mut new);
            for system in ["uid", "creationTimestamp", "deletionTimestamp"] {
                match stored["metadata"].get(system) {
                    Some(v) => meta.insert(system.into(), v.clone()),
                    None => meta.remove(system),
                };
            }
            meta.insert(
                "generation".into(),
                (generation + i64::from(changed)).into(),
            );
            new
        };
        let rv = self.next_serial().to_string();
        meta_mut(&mut new).insert("resourceVersion".into(), rv.into());
        let finalized = new["metadata"]["deletionTimestamp"].is_string()
            && new["metadata"]["finalizers"]
                .as_array()
                .is_none_or(Vec::is_empty);
        if finalized {
            self.objects.remove(&index);
        } else {
            self.objects.insert(index, new.clone());
        }
        self.record(verb, gvr, key);
        Ok(new)
    }
}

impl Host for FakeHost {
    fn get(&self, gvr: &Gvr, key: &ObjectKey) -> Result<Option<String>, ApiError> {
        let index = (gvr.clone(), key.namespace.clone(), key.name.clone());
        Ok(self
            .state
            .borrow()
            .objects
            .get(&index)
            .map(Value::to_string))
    }

    fn list(&self, gvr: &Gvr, namespace: &str, selector: &str) -> Result<Vec<String>, ApiError> {
        let selector = LabelSelector::parse(selector)
            .map_err(|e| ApiError::new(400, "BadRequest", e.to_string()))?;
        let state = self.state.borrow();
        Ok(state
            .objects
            .iter()
            .filter(|((g, ns, _), obj)| {
                g == gvr
                    && (namespace.is_empty() || ns == namespace)
                    && selector.matches_value(obj["metadata"].get("labels"))
            })
            .map(|(_, obj)| obj.to_string())
            .collect())
    }

    fn create(&self, gvr: &Gvr, obj: &str) -> Result<String, ApiError> {
        let obj = parse(gvr, obj)?;
        let mut state = self.state.borrow_mut();
        let created = state.create(gvr, obj)?;
        state.record(Verb::Create, gvr, obj_key(&created));
        Ok(created.to_string())
    }

    fn update(&self, gvr: &Gvr, obj: &str) -> Result<String, ApiError> {
        let obj = parse(gvr, obj)?;
        Ok(self
            .state
            .borrow_mut()
            .replace(gvr, obj, Verb::Update)?
            .to_string())
    }

    fn update_status(&self, gvr: &Gvr, obj: &str) -> Result<String, ApiError> {
        let obj = parse(gvr, obj)?;
        let mut state = self.state.borrow_mut();
        Ok(state.replace(gvr, obj, Verb::UpdateStatus)?.to_string())
    }

    fn patch(
        &self,
        gvr: &Gvr,
        key: &ObjectKey,
        kind: PatchType,
        body: &str,
    ) -> Result<String, ApiError> {
        let mut state = self.state.borrow_mut();
        let index = (gvr.clone(), key.namespace.clone(), key.name.clone());
        let stored = state
            .objects
            .get(&index)
            .ok_or_else(|| not_found(gvr, &key.name))?;
        let patched = match kind {
            PatchType::Json => patch::json_patch(stored, body.as_bytes()),
            PatchType::Merge => patch::merge_patch(stored, body.as_bytes()),
            PatchType::StrategicMerge => {
                let kind = stored["kind"].as_str().unwrap_or_default();
                let Some(schema) = patch::schema_for(&gvr.group, kind) else {
                    let msg = format!("strategic merge patch is not supported for {gvr}");
                    return Err(ApiError::new(415, "UnsupportedMediaType", msg));
                };
                patch::strategic_merge_patch(stored, body.as_bytes(), schema)
            }
        }
        .map_err(|e| {
            let reason = if e.code() == 400 {
                "BadRequest"
            } else {
                "Invalid"
            };
            ApiError::new(e.code(), reason, e.to_string())
        })?;
        Ok(state.replace(gvr, patched, Verb::Patch)?.to_string())
    }

    fn delete(&self, gvr: &Gvr, key: &ObjectKey, _: Propagation) -> Result<(), ApiError> {
        let mut state = self.state.borrow_mut();
        let index = (gvr.clone(), key.namespace.clone(), key.name.clone());
        let rv = state.next_serial().to_string();
        let now = state.now.to_rfc3339_opts(SecondsFormat::Secs, true);
        let obj = state
            .objects
            .get_mut(&index)
            .ok_or_else(|| not_found(gvr, &key.name))?;
        if obj["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
        {
            let meta = meta_mut(obj);
            if !meta.contains_key("deletionTimestamp") {
                meta.insert("deletionTimestamp".into(), now.into());
                meta.insert("resourceVersion".into(), rv.into());
            }
        } else {
            state.objects.remove(&index);
        }
        state.record(Verb::Delete, gvr, key.clone());
        Ok(())
    }

    fn emit_event(&self, regarding: &str, kind: EventType, reason: &str, message: &str) {
        let obj: Value = serde_json::from_str(regarding).unwrap_or_default();
        self.state.borrow_mut().events.push(RecordedEvent {
            regarding_kind: obj["kind"].as_str().unwrap_or_default().to_string(),
            regarding: obj_key(&obj),
            kind,
            reason: reason.to_string(),
            message: message.to_string(),
        });
    }

    fn log(&self, level: LogLevel, message: &str) {
        self.state
            .borrow_mut()
            .logs
            .push((level, message.to_string()));
    }

    fn now(&self) -> String {
        self.clock().to_rfc3339_opts(SecondsFormat::Micros, true)
    }
}
