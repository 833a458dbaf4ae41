//! A faulty test plugin whose `reconcile` sleeps for an hour in a WASI clock wait, not in guest
//! code: the host's wall-clock call deadline must stop it all the same.

wit_bindgen::generate!({ world: "controller-plugin", path: "../../../wit" });

use std::time::Duration;

use exports::wasmkube::plugin::controller::{Guest, Outcome, Registration};
use wasmkube::plugin::types::{Gvr, ObjectKey};

struct Sleep;

impl Guest for Sleep {
    fn describe() -> Registration {
        Registration {
            name: "sleep".into(),
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
        std::thread::sleep(Duration::from_secs(3600));
        Ok(Outcome::Done)
    }
}

// Only Wasm has component exports (natively, the export symbols' names do not even link).
#[cfg(target_arch = "wasm32")]
export!(Sleep);
