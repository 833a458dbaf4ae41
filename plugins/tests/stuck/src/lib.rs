//! A faulty test plugin stuck in `describe` (a WASI clock wait of an hour): while the host waits
//! for it to load, the other plugins must still be installed, swapped and rolled back.

wit_bindgen::generate!({ world: "controller-plugin", path: "../../../wit" });

use std::time::Duration;

use exports::wasmkube::plugin::controller::{Guest, Outcome, Registration};
use wasmkube::plugin::types::{Gvr, ObjectKey};

struct Stuck;

impl Guest for Stuck {
    fn describe() -> Registration {
        std::thread::sleep(Duration::from_secs(3600));
        Registration {
            name: "stuck".into(),
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
        Ok(Outcome::Done)
    }
}

// Only Wasm has component exports (natively, the export symbols' names do not even link).
#[cfg(target_arch = "wasm32")]
export!(Stuck);
