//! The default scheduling policy (work in progress: a helper is writing it).

use wasmkube_sdk::k8s_openapi::api::core::v1::Pod;
use wasmkube_sdk::scheduling::{Capabilities, CycleConfig, Delta, Policy, Verdict};
use wasmkube_sdk::{Context, Error};

/// The default policy.
#[derive(Default)]
pub struct DefaultPolicy {}

wasmkube_sdk::export_scheduler!(DefaultPolicy);

impl Policy for DefaultPolicy {
    fn capabilities() -> Capabilities {
        Capabilities {
            name: "default".into(),
            filters: vec![],
            scores: vec![],
        }
    }

    fn apply(&mut self, _delta: Delta) {}

    fn schedule(
        &mut self,
        _ctx: &Context<'_>,
        _pod: &Pod,
        _config: &CycleConfig,
    ) -> Result<Verdict, Error> {
        Ok(Verdict::default())
    }
}
