//! The PodTopologySpread score: `ScheduleAnyway` constraints (the pod's or the defaults),
//! fewer matching pods in a node's domains scoring higher.

use std::collections::BTreeMap;

use wasmkube_sdk::k8s_openapi::api::core::v1::{Pod, PodSpec};
use wasmkube_sdk::serde_json::Value;
use wasmkube_sdk::{Context, Error};

use super::{Constraint, HOSTNAME, Incoming, columns, constraints, has_keys};
use crate::MAX_SCORE;
use crate::hash::FxHashMap;
use crate::topology::{Column, NO_DOMAIN};
use crate::view::View;

/// The PodTopologySpread score for one pod (its `ScheduleAnyway` constraints).
pub struct SpreadScore<'v> {
    constraints: Vec<Constraint>,
    columns: Vec<&'v Column>,
    require_all_keys: bool,
    /// Per constraint other than hostname, by domain (the last one for nodes without the key,
    /// when keys are not required): the matching pods, for the domains of feasible nodes.
    counts: Vec<Vec<Option<i64>>>,
    /// Per hostname constraint: the matching pods on each node (by index).
    per_node: Vec<FxHashMap<usize, i64>>,
    /// Per constraint: ln(number of domains + 2).
    weights: Vec<f64>,
}

impl<'v> SpreadScore<'v> {
    /// Reads args `defaultingType` and `defaultConstraints`; `None` when there is no
    /// constraint to score (every node scores 0).
    pub fn new(
        view: &'v View,
        ctx: &Context<'_>,
        pod: &Pod,
        spec: &PodSpec,
        args: &Value,
        feasible: &[usize],
    ) -> Result<Option<Self>, Error> {
        let (constraints, require_all_keys) = constraints(ctx, pod, spec, args, "ScheduleAnyway")?;
        if constraints.is_empty() || feasible.is_empty() {
            return Ok(None);
        }
        let columns = columns(view, &constraints)?;
        let slot = |i: usize, index: usize| match columns[i].domains[index] {
            NO_DOMAIN => columns[i].len,
            domain => domain as usize,
        };
        let mut counts: Vec<Vec<Option<i64>>> =
            columns.iter().map(|c| vec![None; c.len + 1]).collect();
        let mut scored = 0;
        for &index in feasible {
            if require_all_keys && !has_keys(&columns, index) {
                continue;
            }
            scored += 1;
            for (i, c) in constraints.iter().enumerate() {
                if c.key != HOSTNAME {
                    counts[i][slot(i, index)].get_or_insert(0);
                }
            }
        }
        let weights = constraints
            .iter()
            .zip(&counts)
            .map(|(c, domains)| {
                let size = if c.key == HOSTNAME {
                    scored
                } else {
                    domains.iter().flatten().count()
                };
                ((size + 2) as f64).ln()
            })
            .collect();
        let empty = BTreeMap::new();
        let incoming = Incoming::new(pod, spec, &empty);
        let nodes = view.nodes();
        let mut per_node = vec![FxHashMap::default(); constraints.len()];
        for (i, pods) in incoming
            .matching_nodes(view, &constraints)
            .iter()
            .enumerate()
        {
            let c = &constraints[i];
            for &index in pods {
                if c.key == HOSTNAME {
                    *per_node[i].entry(index).or_insert(0) += 1;
                } else if (!require_all_keys || has_keys(&columns, index))
                    && incoming.includes(c, &nodes[index])
                    && let Some(count) = &mut counts[i][slot(i, index)]
                {
                    *count += 1;
                }
            }
        }
        Ok(Some(SpreadScore {
            constraints,
            columns,
            require_all_keys,
            counts,
            per_node,
            weights,
        }))
    }

    /// The normalized scores of the feasible nodes: the least crowded gets 100; nodes without
    /// the topology keys get 0.
    pub fn scores(&self, feasible: &[usize]) -> Vec<i64> {
        let raw: Vec<Option<i64>> = feasible.iter().map(|&index| self.raw(index)).collect();
        let scored = raw.iter().flatten();
        let min = scored.clone().copied().min().unwrap_or(0);
        let max = scored.copied().max().unwrap_or(0).max(0);
        raw.into_iter()
            .map(|score| match score {
                None => 0,
                Some(_) if max == 0 => MAX_SCORE,
                Some(s) => MAX_SCORE * (max + min - s) / max,
            })
            .collect()
    }

    /// The matching pods in the node's domains, weighted; `None` for a node without every
    /// topology key (when they are required).
    fn raw(&self, index: usize) -> Option<i64> {
        if self.require_all_keys && !has_keys(&self.columns, index) {
            return None;
        }
        let mut score = 0.0;
        for (i, c) in self.constraints.iter().enumerate() {
            let domain = self.columns[i].domains[index];
            if domain == NO_DOMAIN {
                continue;
            }
            let count = if c.key == HOSTNAME {
                self.per_node[i].get(&index).copied().unwrap_or(0)
            } else {
                self.counts[i][domain as usize].unwrap_or(0)
            };
            score += count as f64 * self.weights[i] + (c.max_skew - 1) as f64;
        }
        Some(score.round() as i64)
    }
}
