//! A faulty test plugin whose `reconcile` allocates until it dies: the host's memory limit must
//! stop it.

wit_bindgen::generate!({ world: "controller-plugin", path: "../../../wit" });

use exports::wasmkube::plugin::controller::{Guest, Outcome, Registration};
use wasmkube::plugin::types::{Gvr, ObjectKey};

struct Bomb;

impl Guest for Bomb {
    fn describe() -> Registration {
        Registration {
            name: "membomb".into(),
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
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            // Touch every chunk so that nothing is optimised away.
            let chunk = vec![1u8; 1 << 20];
            hoard.push(std::hint::black_box(chunk));
        }
    }
}

// Only Wasm has component exports (natively, the export symbols' names do not even link).
#[cfg(target_arch = "wasm32")]
export!(Bomb);
