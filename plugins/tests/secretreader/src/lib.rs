//! A test plugin that reconciles config maps and reads, for each, the Secret of the same name,
//! which its registration does not name: its host's answer (a 403 when its role lacks secrets)
//! becomes its own error.

wit_bindgen::generate!({ world: "controller-plugin", path: "../../../wit" });

use exports::wasmkube::plugin::controller::{Guest, Outcome, Registration};
use wasmkube::plugin::host_api;
use wasmkube::plugin::types::{Gvr, ObjectKey};

struct SecretReader;

fn core(resource: &str) -> Gvr {
    Gvr {
        group: String::new(),
        version: "v1".into(),
        resource: resource.into(),
    }
}

impl Guest for SecretReader {
    fn describe() -> Registration {
        Registration {
            name: "secretreader".into(),
            primary: core("configmaps"),
            owns: vec![],
            reads: vec![],
            triggers: vec![],
        }
    }

    fn reconcile(key: ObjectKey) -> Result<Outcome, String> {
        match host_api::get(&core("secrets"), &key) {
            Ok(_) => Ok(Outcome::RequeueAfter(50)),
            Err(e) => Err(format!(
                "get secrets {}/{}: {} {}: {}",
                key.namespace, key.name, e.code, e.reason, e.message
            )),
        }
    }
}

// Only Wasm has component exports (natively, the export symbols' names do not even link).
#[cfg(target_arch = "wasm32")]
export!(SecretReader);
