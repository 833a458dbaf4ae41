//! The guest SDK for wasmkube controllers: a typed API over the `controller-plugin` WIT world.
//!
//! Implement [`Controller`], wire it with [`export_controller!`], build with
//! `cargo build --release --target wasm32-wasip2`, and unit-test natively with
//! [`testing::FakeHost`]. See `sdk/README.md`.

extern crate self as wasmkube_sdk;

mod bindings;
pub mod conditions;
mod context;
mod controller;
mod error;
pub mod expectations;
pub mod hash;
mod host;
pub mod owner;
pub mod pod;
pub mod revision;
pub mod selector;
pub mod testing;
mod types;

pub use chrono;
pub use context::Context;
pub use controller::{Controller, Outcome, Registration};
pub use error::Error;
pub use host::Host;
pub use k8s_openapi;
pub use serde_json;
pub use types::{ApiError, EventType, Gvr, LogLevel, ObjectKey, PatchType, Propagation};

/// Implementation details of [`export_controller!`]; not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::generated as bindings;
    pub use crate::bindings::{
        Guest, WitObjectKey, WitOutcome, WitRegistration, describe, reconcile,
    };
    pub use wit_bindgen;
}

/// Exports a [`Controller`] as the component's `wasmkube:plugin/controller` interface.
///
/// Use it once, at the root of a `cdylib` crate: `wasmkube_sdk::export_controller!(MyController);`
#[macro_export]
macro_rules! export_controller {
    ($controller:ty) => {
        // Only Wasm has component exports; natively the crate still builds (for its unit tests).
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __WasmkubeControllerExports;

            impl $crate::__private::Guest for __WasmkubeControllerExports {
                fn describe() -> $crate::__private::WitRegistration {
                    $crate::__private::describe::<$controller>()
                }

                fn reconcile(
                    key: $crate::__private::WitObjectKey,
                ) -> ::core::result::Result<$crate::__private::WitOutcome, ::std::string::String>
                {
                    $crate::__private::reconcile::<$controller>(key)
                }
            }

            $crate::__private::bindings::__wasmkube_export_controller_plugin!(
                __WasmkubeControllerExports with_types_in $crate::__private::bindings
            );
        };
    };
}
