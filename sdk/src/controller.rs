//! The `Controller` trait a plugin implements, with its registration and reconcile outcome.

use std::time::Duration;

use k8s_openapi::Resource;

use crate::context::Context;
use crate::error::Error;
use crate::types::{Gvr, ObjectKey};

/// A controller: what it watches, and how it brings one object towards its desired state.
///
/// Wire an implementation to the Wasm exports with [`crate::export_controller!`].
pub trait Controller {
    /// What the controller reconciles, owns and reads; asked once when the plugin loads.
    fn registration() -> Registration;

    /// Reconciles the primary object at `key` (which may no longer exist). An error is retried
    /// with backoff.
    fn reconcile(ctx: &Context<'_>, key: ObjectKey) -> Result<Outcome, Error>;
}

/// What a controller reconciles (`primary`), which resources enqueue their controlling owner
/// (`owns`), which others it reads (`reads`) and which enqueue every primary (`triggers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The controller's name, used in logs, metrics and Events.
    pub name: String,
    /// The resource whose objects are reconciled.
    pub primary: Gvr,
    /// Resources whose changes enqueue their controlling owner.
    pub owns: Vec<Gvr>,
    /// Other resources the controller reads; their changes do not enqueue anything.
    pub reads: Vec<Gvr>,
    /// Resources the controller reads whose creation, deletion, or change of labels or spec
    /// enqueues every primary object.
    pub triggers: Vec<Gvr>,
}

impl Registration {
    /// A controller named `name` reconciling objects of the typed resource `K`.
    pub fn new<K: Resource>(name: &str) -> Registration {
        Registration::for_resource(name, Gvr::of::<K>())
    }

    /// A controller named `name` reconciling objects of any resource, e.g. a custom resource.
    pub fn for_resource(name: &str, primary: Gvr) -> Registration {
        Registration {
            name: name.to_string(),
            primary,
            owns: Vec::new(),
            reads: Vec::new(),
            triggers: Vec::new(),
        }
    }

    /// Adds an owned typed resource.
    pub fn owns<K: Resource>(self) -> Registration {
        self.owns_resource(Gvr::of::<K>())
    }

    /// Adds an owned resource.
    pub fn owns_resource(mut self, resource: Gvr) -> Registration {
        self.owns.push(resource);
        self
    }

    /// Adds a typed resource the controller reads.
    pub fn reads<K: Resource>(self) -> Registration {
        self.reads_resource(Gvr::of::<K>())
    }

    /// Adds a resource the controller reads.
    pub fn reads_resource(mut self, resource: Gvr) -> Registration {
        self.reads.push(resource);
        self
    }

    /// Adds a typed resource whose changes enqueue every primary object.
    pub fn triggered_by<K: Resource>(self) -> Registration {
        self.triggered_by_resource(Gvr::of::<K>())
    }

    /// Adds a resource whose changes enqueue every primary object.
    pub fn triggered_by_resource(mut self, resource: Gvr) -> Registration {
        self.triggers.push(resource);
        self
    }
}

/// What the host should do after a successful reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to do until something changes.
    Done,
    /// Reconcile this key again after this long.
    RequeueAfter(Duration),
}
