//! A faulty test policy: it scores every node it knows 0 and panics on a pod labelled
//! `trap: "true"`, so the scheduler must roll back to the previous policy and say why.

use std::collections::BTreeSet;

use wasmkube_sdk::k8s_openapi::api::core::v1::Pod;
use wasmkube_sdk::scheduling::{Capabilities, CycleConfig, Delta, NodeScore, Policy, Verdict};
use wasmkube_sdk::{Context, Error};

#[derive(Default)]
pub struct PolicyPanic {
    nodes: BTreeSet<String>,
}

wasmkube_sdk::export_scheduler!(PolicyPanic);

impl Policy for PolicyPanic {
    fn capabilities() -> Capabilities {
        Capabilities {
            name: "policy-panic".into(),
            filters: vec![],
            scores: vec!["Zero".into()],
        }
    }

    fn apply(&mut self, delta: Delta) {
        match delta {
            Delta::NodeUpsert(node) => {
                self.nodes.insert(node.metadata.name.unwrap_or_default());
            }
            Delta::NodeRemove(name) => {
                self.nodes.remove(&name);
            }
            Delta::PodUpsert(_) | Delta::PodRemove(_) => {}
        }
    }

    #[allow(clippy::panic)]
    fn schedule(
        &mut self,
        _: &Context<'_>,
        pod: &Pod,
        config: &CycleConfig,
    ) -> Result<Verdict, Error> {
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        if labels.get("trap").map(String::as_str) == Some("true") {
            panic!("policy-panic: asked to trap");
        }
        let nodes: Vec<&String> = match &config.candidates {
            Some(c) => c.iter().filter(|n| self.nodes.contains(*n)).collect(),
            None => self.nodes.iter().collect(),
        };
        Ok(Verdict {
            feasible: nodes
                .iter()
                .map(|n| NodeScore {
                    node: (*n).clone(),
                    score: 0,
                })
                .collect(),
            failures: vec![],
            evaluated: u32::try_from(nodes.len()).unwrap_or(u32::MAX),
        })
    }
}
