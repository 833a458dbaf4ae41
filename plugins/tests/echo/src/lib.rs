//! A well-behaved test plugin: `describe` names config maps; `reconcile` logs, reads the object
//! through the host and asks to be called again in 5 ms when it exists.

wit_bindgen::generate!({ world: "controller-plugin", path: "../../../wit" });

use exports::wasmkube::plugin::controller::{Guest, Outcome, Registration};
use wasmkube::plugin::host_api;
use wasmkube::plugin::types::{Gvr, LogLevel, ObjectKey};

struct Echo;

fn config_maps() -> Gvr {
    Gvr {
        group: String::new(),
        version: "v1".into(),
        resource: "configmaps".into(),
    }
}

impl Guest for Echo {
    fn describe() -> Registration {
        Registration {
            name: "echo".into(),
            primary: config_maps(),
            owns: vec![],
            reads: vec![Gvr {
                group: String::new(),
                version: "v1".into(),
                resource: "secrets".into(),
            }],
            triggers: vec![],
        }
    }

    fn reconcile(key: ObjectKey) -> Result<Outcome, String> {
        host_api::log(
            LogLevel::Info,
            &format!("reconciling {}/{}", key.namespace, key.name),
        );
        match host_api::get(&config_maps(), &key) {
            Ok(Some(_)) => Ok(Outcome::RequeueAfter(5)),
            Ok(None) => Ok(Outcome::Done),
            Err(e) => Err(format!(
                "get {}/{}: {} {}",
                key.namespace, key.name, e.code, e.message
            )),
        }
    }
}

// Only Wasm has component exports (natively, the export symbols' names do not even link).
#[cfg(target_arch = "wasm32")]
export!(Echo);
