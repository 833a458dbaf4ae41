//! A faulty test plugin whose `reconcile` panics: the host must report the trap, with the panic
//! message, and poison the instance.

wit_bindgen::generate!({ world: "controller-plugin", path: "../../../wit" });

use exports::wasmkube::plugin::controller::{Guest, Outcome, Registration};
use wasmkube::plugin::types::{Gvr, ObjectKey};

struct Panic;

impl Guest for Panic {
    fn describe() -> Registration {
        Registration {
            name: "panic".into(),
            primary: Gvr {
                group: String::new(),
                version: "v1".into(),
                resource: "configmaps".into(),
            },
            owns: vec![],
            reads: vec![],
            triggers: vec![],
        }
    }

    fn reconcile(key: ObjectKey) -> Result<Outcome, String> {
        panic!("reconcile exploded on {}/{}", key.namespace, key.name);
    }
}

// Only Wasm has component exports (natively, the export symbols' names do not even link).
#[cfg(target_arch = "wasm32")]
export!(Panic);
