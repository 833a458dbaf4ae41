//! The PodTopologySpread filter: `DoNotSchedule` constraints and the skew they allow.

use std::collections::BTreeMap;

use wasmkube_sdk::k8s_openapi::api::core::v1::{Pod, PodSpec};
use wasmkube_sdk::serde_json::Value;
use wasmkube_sdk::{Context, Error};

use super::{Constraint, Incoming, MISSING_LABEL_REASON, REASON, columns, constraints, has_keys};
use crate::Prepared;
use crate::topology::{Column, NO_DOMAIN};
use crate::view::View;

/// The PodTopologySpread filter for one pod, with the counts its PreFilter computes.
pub struct SpreadFilter<'v> {
    constraints: Vec<Constraint>,
    columns: Vec<&'v Column>,
    /// Per constraint, by domain: the matching pods on the nodes that count.
    counts: Vec<Vec<i64>>,
    /// Per constraint: the global minimum the skew is measured from.
    minimum: Vec<i64>,
    /// Per constraint: whether the pod matches the selector itself.
    self_match: Vec<bool>,
}

impl<'v> SpreadFilter<'v> {
    /// Reads args `defaultingType` and `defaultConstraints`.
    pub fn new(
        view: &'v View,
        ctx: &Context<'_>,
        pod: &Pod,
        spec: &PodSpec,
        args: &Value,
    ) -> Result<Prepared<Self>, Error> {
        let (constraints, _) = constraints(ctx, pod, spec, args, "DoNotSchedule")?;
        if constraints.is_empty() {
            return Ok(Prepared::Skip);
        }
        let columns = columns(view, &constraints)?;
        let empty = BTreeMap::new();
        let incoming = Incoming::new(pod, spec, &empty);
        let nodes = view.nodes();
        // The domains of the nodes that count, and which nodes those are.
        let mut present: Vec<Vec<bool>> = columns.iter().map(|c| vec![false; c.len]).collect();
        let mut counted = vec![vec![false; nodes.len()]; constraints.len()];
        for (index, node) in nodes.iter().enumerate() {
            if !has_keys(&columns, index) {
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if incoming.includes(c, node) {
                    present[i][columns[i].domains[index] as usize] = true;
                    counted[i][index] = true;
                }
            }
        }
        let mut counts: Vec<Vec<i64>> = columns.iter().map(|c| vec![0; c.len]).collect();
        for (i, pods) in incoming
            .matching_nodes(view, &constraints)
            .iter()
            .enumerate()
        {
            for &index in pods.iter().filter(|&&n| counted[i][n]) {
                counts[i][columns[i].domains[index] as usize] += 1;
            }
        }
        let minimum = constraints
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let domains = counts[i].iter().zip(&present[i]).filter(|(_, p)| **p);
                let domains: Vec<i64> = domains.map(|(count, _)| *count).collect();
                // Fewer domains than `minDomains`: the global minimum is 0.
                if domains.len() < c.min_domains {
                    0
                } else {
                    domains.into_iter().min().unwrap_or(i64::from(i32::MAX))
                }
            })
            .collect();
        let self_match = constraints
            .iter()
            .map(|c| c.selector.matches(incoming.labels))
            .collect();
        Ok(Prepared::Run(SpreadFilter {
            constraints,
            columns,
            counts,
            minimum,
            self_match,
        }))
    }

    /// The reason the node (by index) fails, if it does.
    pub fn check(&self, index: usize) -> Option<&'static str> {
        for (i, c) in self.constraints.iter().enumerate() {
            let domain = self.columns[i].domains[index];
            if domain == NO_DOMAIN {
                return Some(MISSING_LABEL_REASON);
            }
            let matching = self.counts[i][domain as usize];
            let skew = matching + i64::from(self.self_match[i]) - self.minimum[i];
            if skew > c.max_skew {
                return Some(REASON);
            }
        }
        None
    }
}
