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
pub mod placement;
pub mod pod;
pub mod revision;
pub mod scheduling;
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
pub use wasmkube_model::quantity;

/// Implementation details of [`export_controller!`]; not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::generated as bindings;
    pub use crate::bindings::scheduler::{
        self as scheduler_bindings, SchedulerGuest, WitCapabilities, WitCycleConfig, WitDelta,
        WitVerdict,
    };
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

/// Exports a [`scheduling::Policy`] as the component's `wasmkube:plugin/scheduler` interface.
///
/// Use it once, at the root of a `cdylib` crate: `wasmkube_sdk::export_scheduler!(MyPolicy);`.
/// The policy value lives in the instance from the first call on.
#[macro_export]
macro_rules! export_scheduler {
    ($policy:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __WasmkubeSchedulerExports;

            ::std::thread_local! {
                static __POLICY: ::core::cell::RefCell<$policy> =
                    ::core::cell::RefCell::new(<$policy as ::core::default::Default>::default());
            }

            impl $crate::__private::SchedulerGuest for __WasmkubeSchedulerExports {
                fn describe() -> $crate::__private::WitCapabilities {
                    $crate::__private::scheduler_bindings::describe::<$policy>()
                }

                fn apply(deltas: ::std::vec::Vec<$crate::__private::WitDelta>) {
                    __POLICY.with(|p| {
                        $crate::__private::scheduler_bindings::apply(&mut *p.borrow_mut(), deltas)
                    })
                }

                fn schedule(
                    pod: ::std::string::String,
                    config: $crate::__private::WitCycleConfig,
                ) -> ::core::result::Result<$crate::__private::WitVerdict, ::std::string::String>
                {
                    __POLICY.with(|p| {
                        $crate::__private::scheduler_bindings::schedule(
                            &mut *p.borrow_mut(),
                            &pod,
                            config,
                        )
                    })
                }
            }

            $crate::__private::scheduler_bindings::generated::__wasmkube_export_scheduler_plugin!(
                __WasmkubeSchedulerExports with_types_in $crate::__private::scheduler_bindings::generated
            );
        };
    };
}
