//! A faulty test plugin whose `reconcile` never returns: the host's call deadline must stop it.

wit_bindgen::generate!({ world: "controller-plugin", path: "../../../wit" });

use exports::wasmkube::plugin::controller::{Guest, Outcome, Registration};
use wasmkube::plugin::types::{Gvr, ObjectKey};

struct Spin;

impl Guest for Spin {
    fn describe() -> Registration {
        Registration {
            name: "loop".into(),
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

    fn reconcile(_key: ObjectKey) -> Result<Outcome, String> {
        let mut n = 0u64;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

// Only Wasm has component exports (natively, the export symbols' names do not even link).
#[cfg(target_arch = "wasm32")]
export!(Spin);
