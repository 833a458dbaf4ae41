//! A test plugin that tries to create a Secret it was not granted: the host refuses with a 403
//! and the plugin returns that error as its own.

wit_bindgen::generate!({ world: "controller-plugin", path: "../../../wit" });

use exports::wasmkube::plugin::controller::{Guest, Outcome, Registration};
use wasmkube::plugin::host_api;
use wasmkube::plugin::types::{Gvr, ObjectKey};

struct Forbidden;

impl Guest for Forbidden {
    fn describe() -> Registration {
        Registration {
            name: "forbidden".into(),
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
        let secrets = Gvr {
            group: String::new(),
            version: "v1".into(),
            resource: "secrets".into(),
        };
        let secret = format!(
            r#"{{"apiVersion":"v1","kind":"Secret","metadata":{{"namespace":"{}","name":"stolen"}}}}"#,
            key.namespace
        );
        match host_api::create(&secrets, &secret) {
            Ok(_) => Ok(Outcome::Done),
            Err(e) => Err(format!(
                "create secrets: {} {}: {}",
                e.code, e.reason, e.message
            )),
        }
    }
}

// Only Wasm has component exports (natively, the export symbols' names do not even link).
#[cfg(target_arch = "wasm32")]
export!(Forbidden);
