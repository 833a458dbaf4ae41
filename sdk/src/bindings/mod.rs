//! The generated WIT bindings, the `Host` over their imports, and the glue behind `export_controller!`.
#![allow(unsafe_code)]

/// `wit_bindgen::generate!` output for world `controller-plugin`; public only for the macro.
pub mod generated {
    wit_bindgen::generate!({
        path: "../wit",
        world: "controller-plugin",
        pub_export_macro: true,
        export_macro_name: "__wasmkube_export_controller_plugin",
        runtime_path: "::wasmkube_sdk::__private::wit_bindgen::rt",
    });
}

pub mod scheduler;

use generated::exports::wasmkube::plugin::controller as exports;
use generated::wasmkube::plugin::host_api;
use generated::wasmkube::plugin::types as wit;

pub use exports::{Guest, Outcome as WitOutcome, Registration as WitRegistration};
pub use wit::ObjectKey as WitObjectKey;

use crate::context::Context;
use crate::controller::{Controller, Outcome};
use crate::host::Host;
use crate::types::{ApiError, EventType, Gvr, LogLevel, ObjectKey, PatchType, Propagation};

fn gvr(g: &Gvr) -> wit::Gvr {
    wit::Gvr {
        group: g.group.clone(),
        version: g.version.clone(),
        resource: g.resource.clone(),
    }
}

fn key(k: &ObjectKey) -> wit::ObjectKey {
    wit::ObjectKey {
        namespace: k.namespace.clone(),
        name: k.name.clone(),
    }
}

fn api_error(e: wit::ApiError) -> ApiError {
    ApiError {
        code: e.code,
        reason: e.reason,
        message: e.message,
    }
}

/// The real host: every call goes through the component's `host-api` imports. Outside Wasm the
/// imports are unreachable stubs; use `testing::FakeHost` there.
pub(crate) struct WitHost;

impl Host for WitHost {
    fn get(&self, resource: &Gvr, k: &ObjectKey) -> Result<Option<String>, ApiError> {
        host_api::get(&gvr(resource), &key(k)).map_err(api_error)
    }

    fn list(&self, resource: &Gvr, ns: &str, selector: &str) -> Result<Vec<String>, ApiError> {
        host_api::list(&gvr(resource), ns, selector).map_err(api_error)
    }

    fn create(&self, resource: &Gvr, obj: &str) -> Result<String, ApiError> {
        host_api::create(&gvr(resource), obj).map_err(api_error)
    }

    fn update(&self, resource: &Gvr, obj: &str) -> Result<String, ApiError> {
        host_api::update(&gvr(resource), obj).map_err(api_error)
    }

    fn update_status(&self, resource: &Gvr, obj: &str) -> Result<String, ApiError> {
        host_api::update_status(&gvr(resource), obj).map_err(api_error)
    }

    fn patch(
        &self,
        resource: &Gvr,
        k: &ObjectKey,
        kind: PatchType,
        patch: &str,
    ) -> Result<String, ApiError> {
        let kind = match kind {
            PatchType::Json => wit::PatchType::Json,
            PatchType::Merge => wit::PatchType::Merge,
            PatchType::StrategicMerge => wit::PatchType::StrategicMerge,
        };
        host_api::patch(&gvr(resource), &key(k), kind, patch).map_err(api_error)
    }

    fn delete(&self, resource: &Gvr, k: &ObjectKey, p: Propagation) -> Result<(), ApiError> {
        let p = match p {
            Propagation::Background => wit::Propagation::Background,
            Propagation::Foreground => wit::Propagation::Foreground,
            Propagation::Orphan => wit::Propagation::Orphan,
        };
        host_api::delete(&gvr(resource), &key(k), p).map_err(api_error)
    }

    fn emit_event(&self, regarding: &str, kind: EventType, reason: &str, message: &str) {
        let kind = match kind {
            EventType::Normal => wit::EventType::Normal,
            EventType::Warning => wit::EventType::Warning,
        };
        host_api::emit_event(regarding, kind, reason, message);
    }

    fn log(&self, level: LogLevel, message: &str) {
        let level = match level {
            LogLevel::Trace => wit::LogLevel::Trace,
            LogLevel::Debug => wit::LogLevel::Debug,
            LogLevel::Info => wit::LogLevel::Info,
            LogLevel::Warn => wit::LogLevel::Warn,
            LogLevel::Error => wit::LogLevel::Error,
        };
        host_api::log(level, message);
    }

    fn now(&self) -> String {
        host_api::now()
    }
}

/// The `describe` export of controller `C`.
pub fn describe<C: Controller>() -> WitRegistration {
    let r = C::registration();
    WitRegistration {
        name: r.name,
        primary: gvr(&r.primary),
        owns: r.owns.iter().map(gvr).collect(),
        reads: r.reads.iter().map(gvr).collect(),
        triggers: r.triggers.iter().map(gvr).collect(),
    }
}

/// The `reconcile` export of controller `C`, over the real host.
pub fn reconcile<C: Controller>(k: WitObjectKey) -> Result<WitOutcome, String> {
    let ctx = Context::new(&WitHost);
    let k = ObjectKey {
        namespace: k.namespace,
        name: k.name,
    };
    match C::reconcile(&ctx, k) {
        Ok(Outcome::Done) => Ok(WitOutcome::Done),
        Ok(Outcome::RequeueAfter(after)) => Ok(WitOutcome::RequeueAfter(
            u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
        )),
        Err(e) => Err(e.to_string()),
    }
}
