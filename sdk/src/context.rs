//! `Context`: typed and dynamic (JSON) access to the host API during one reconcile.

use chrono::{DateTime, Utc};
use k8s_openapi::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::Error;
use crate::host::Host;
use crate::types::{EventType, Gvr, LogLevel, ObjectKey, PatchType, Propagation};

/// The host API as a controller sees it. Typed calls take the GVR from `K::GROUP`, `K::VERSION`
/// and `K::URL_PATH_SEGMENT`; `*_dynamic` calls take a [`Gvr`] and `serde_json::Value`s.
pub struct Context<'h> {
    host: &'h dyn Host,
}

fn encode<T: Serialize + ?Sized>(what: &Gvr, obj: &T) -> Result<String, Error> {
    serde_json::to_string(obj).map_err(|source| Error::Encode {
        what: what.to_string(),
        source,
    })
}

fn decode<T: DeserializeOwned>(what: &Gvr, json: &str) -> Result<T, Error> {
    serde_json::from_str(json).map_err(|source| Error::Decode {
        what: what.to_string(),
        source,
    })
}

impl<'h> Context<'h> {
    /// A context over a host: the real one inside Wasm, a `testing::FakeHost` in unit tests.
    pub fn new(host: &'h dyn Host) -> Context<'h> {
        Context { host }
    }

    /// The underlying host, for calls the typed API does not cover.
    pub fn host(&self) -> &'h dyn Host {
        self.host
    }

    /// One object, or `None` when it does not exist.
    pub fn get<K: Resource + DeserializeOwned>(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<K>, Error> {
        self.get_as(&Gvr::of::<K>(), namespace, name)
    }

    /// Objects in `namespace` (all namespaces when empty) matching a kubectl-syntax selector
    /// (`app=web,tier in (a,b)`; empty selects everything).
    pub fn list<K: Resource + DeserializeOwned>(
        &self,
        namespace: &str,
        label_selector: &str,
    ) -> Result<Vec<K>, Error> {
        self.list_as(&Gvr::of::<K>(), namespace, label_selector)
    }

    /// Creates an object (in the namespace its metadata names) and returns it as stored.
    pub fn create<K: Resource + Serialize + DeserializeOwned>(&self, obj: &K) -> Result<K, Error> {
        self.create_as(&Gvr::of::<K>(), obj)
    }

    /// Replaces an object; a set `metadata.resourceVersion` must be current (else 409 Conflict).
    pub fn update<K: Resource + Serialize + DeserializeOwned>(&self, obj: &K) -> Result<K, Error> {
        let gvr = Gvr::of::<K>();
        let stored = self.host.update(&gvr, &encode(&gvr, obj)?)?;
        decode(&gvr, &stored)
    }

    /// Replaces an object's `status`; `metadata.resourceVersion` is a precondition.
    pub fn update_status<K: Resource + Serialize + DeserializeOwned>(
        &self,
        obj: &K,
    ) -> Result<K, Error> {
        let gvr = Gvr::of::<K>();
        let stored = self.host.update_status(&gvr, &encode(&gvr, obj)?)?;
        decode(&gvr, &stored)
    }

    /// Patches an object with a JSON, merge or strategic merge patch.
    pub fn patch<K: Resource + DeserializeOwned>(
        &self,
        namespace: &str,
        name: &str,
        kind: PatchType,
        patch: &Value,
    ) -> Result<K, Error> {
        let gvr = Gvr::of::<K>();
        let key = ObjectKey::new(namespace, name);
        let stored = self.host.patch(&gvr, &key, kind, &encode(&gvr, patch)?)?;
        decode(&gvr, &stored)
    }

    /// Deletes an object.
    pub fn delete<K: Resource>(
        &self,
        namespace: &str,
        name: &str,
        propagation: Propagation,
    ) -> Result<(), Error> {
        let key = ObjectKey::new(namespace, name);
        Ok(self.host.delete(&Gvr::of::<K>(), &key, propagation)?)
    }

    /// Records an Event about `regarding`.
    pub fn event<K: Resource + Serialize>(
        &self,
        regarding: &K,
        kind: EventType,
        reason: &str,
        message: &str,
    ) -> Result<(), Error> {
        let json = encode(&Gvr::of::<K>(), regarding)?;
        self.host.emit_event(&json, kind, reason, message);
        Ok(())
    }

    /// Writes a log line through the host.
    pub fn log(&self, level: LogLevel, message: &str) {
        self.host.log(level, message);
    }

    /// The host's clock (tests can stop it).
    pub fn now(&self) -> Result<DateTime<Utc>, Error> {
        let now = self.host.now();
        DateTime::parse_from_rfc3339(&now)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| Error::Clock(now))
    }

    /// One object of any resource (custom resources included) as JSON.
    pub fn get_dynamic(
        &self,
        resource: &Gvr,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, Error> {
        self.get_as(resource, namespace, name)
    }

    /// Objects of any resource as JSON; see [`Context::list`].
    pub fn list_dynamic(
        &self,
        resource: &Gvr,
        namespace: &str,
        label_selector: &str,
    ) -> Result<Vec<Value>, Error> {
        self.list_as(resource, namespace, label_selector)
    }

    /// Creates an object of any resource from JSON.
    pub fn create_dynamic(&self, resource: &Gvr, obj: &Value) -> Result<Value, Error> {
        self.create_as(resource, obj)
    }

    /// Replaces an object of any resource; see [`Context::update`].
    pub fn update_dynamic(&self, resource: &Gvr, obj: &Value) -> Result<Value, Error> {
        let stored = self.host.update(resource, &encode(resource, obj)?)?;
        decode(resource, &stored)
    }

    /// Replaces the status of an object of any resource.
    pub fn update_status_dynamic(&self, resource: &Gvr, obj: &Value) -> Result<Value, Error> {
        let stored = self.host.update_status(resource, &encode(resource, obj)?)?;
        decode(resource, &stored)
    }

    /// Patches an object of any resource.
    pub fn patch_dynamic(
        &self,
        resource: &Gvr,
        namespace: &str,
        name: &str,
        kind: PatchType,
        patch: &Value,
    ) -> Result<Value, Error> {
        let key = ObjectKey::new(namespace, name);
        let stored = self
            .host
            .patch(resource, &key, kind, &encode(resource, patch)?)?;
        decode(resource, &stored)
    }

    /// Deletes an object of any resource.
    pub fn delete_dynamic(
        &self,
        resource: &Gvr,
        namespace: &str,
        name: &str,
        propagation: Propagation,
    ) -> Result<(), Error> {
        let key = ObjectKey::new(namespace, name);
        Ok(self.host.delete(resource, &key, propagation)?)
    }

    /// Records an Event about an object given as JSON (it needs `apiVersion` and `kind`).
    pub fn event_dynamic(&self, regarding: &Value, kind: EventType, reason: &str, message: &str) {
        self.host
            .emit_event(&regarding.to_string(), kind, reason, message);
    }

    fn get_as<T: DeserializeOwned>(
        &self,
        gvr: &Gvr,
        namespace: &str,
        name: &str,
    ) -> Result<Option<T>, Error> {
        match self.host.get(gvr, &ObjectKey::new(namespace, name))? {
            Some(json) => decode(gvr, &json).map(Some),
            None => Ok(None),
        }
    }

    fn list_as<T: DeserializeOwned>(
        &self,
        gvr: &Gvr,
        namespace: &str,
        label_selector: &str,
    ) -> Result<Vec<T>, Error> {
        let items = self.host.list(gvr, namespace, label_selector)?;
        items.iter().map(|json| decode(gvr, json)).collect()
    }

    fn create_as<T: Serialize + DeserializeOwned>(&self, gvr: &Gvr, obj: &T) -> Result<T, Error> {
        let stored = self.host.create(gvr, &encode(gvr, obj)?)?;
        decode(gvr, &stored)
    }
}
