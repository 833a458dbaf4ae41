//! The glue behind `export_scheduler!`: the `scheduler-plugin` world's bindings, and its types
//! to and from the SDK's.
#![allow(unsafe_code)]

use super::WitHost;
use crate::context::Context;
use crate::scheduling::{self, CycleConfig, Delta, PluginConfig, Policy};
use crate::types::ObjectKey;

/// `wit_bindgen::generate!` output for world `scheduler-plugin`, sharing the `types` and
/// `host-api` bindings of the controller world; public only for the macro.
pub mod generated {
    wit_bindgen::generate!({
        path: "../wit",
        world: "scheduler-plugin",
        pub_export_macro: true,
        export_macro_name: "__wasmkube_export_scheduler_plugin",
        runtime_path: "::wasmkube_sdk::__private::wit_bindgen::rt",
        with: {
            "wasmkube:plugin/types@0.1.0": crate::bindings::generated::wasmkube::plugin::types,
            "wasmkube:plugin/host-api@0.1.0": crate::bindings::generated::wasmkube::plugin::host_api,
        },
    });
}

use generated::exports::wasmkube::plugin::scheduler as wit;

pub use wit::{
    Capabilities as WitCapabilities, CycleConfig as WitCycleConfig, Delta as WitDelta,
    Guest as SchedulerGuest, Verdict as WitVerdict,
};

/// The `describe` export of policy `P`.
pub fn describe<P: Policy>() -> WitCapabilities {
    let c = P::capabilities();
    WitCapabilities {
        name: c.name,
        filters: c.filters,
        scores: c.scores,
    }
}

/// The `apply` export: each delta in order; one whose object does not decode is skipped.
pub fn apply<P: Policy>(policy: &mut P, deltas: Vec<WitDelta>) {
    for delta in deltas {
        let delta = match delta {
            WitDelta::NodeUpsert(text) => Delta::node(&text),
            WitDelta::NodeRemove(name) => Ok(Delta::NodeRemove(name)),
            WitDelta::PodUpsert(text) => Delta::pod(&text),
            WitDelta::PodRemove(k) => Ok(Delta::PodRemove(ObjectKey {
                namespace: k.namespace,
                name: k.name,
            })),
        };
        if let Ok(delta) = delta {
            policy.apply(delta);
        }
    }
}

fn plugin(c: wit::PluginConfig) -> PluginConfig {
    PluginConfig {
        name: c.name,
        weight: c.weight,
        args: serde_json::from_str(&c.args).unwrap_or_default(),
    }
}

/// The `schedule` export.
pub fn schedule<P: Policy>(
    policy: &mut P,
    pod: &str,
    config: WitCycleConfig,
) -> Result<WitVerdict, String> {
    let pod = scheduling::decode("pod", pod).map_err(|e| e.to_string())?;
    let config = CycleConfig {
        filters: config.filters.into_iter().map(plugin).collect(),
        scores: config.scores.into_iter().map(plugin).collect(),
        nodes_to_find: usize::try_from(config.nodes_to_find).unwrap_or(usize::MAX),
        candidates: config.candidates,
    };
    let ctx = Context::new(&WitHost);
    let verdict = policy
        .schedule(&ctx, &pod, &config)
        .map_err(|e| e.to_string())?;
    Ok(WitVerdict {
        feasible: verdict
            .feasible
            .into_iter()
            .map(|s| wit::NodeScore {
                node: s.node,
                score: s.score,
            })
            .collect(),
        failures: verdict
            .failures
            .into_iter()
            .map(|f| wit::Failure {
                reason: f.reason,
                nodes: f.nodes,
            })
            .collect(),
        evaluated: verdict.evaluated,
    })
}
