//! The policy's view of the cluster, kept from deltas: nodes with the aggregates of the pods
//! placed on them (requests, host ports, pod count), pods by label, and the node order.

use std::collections::BTreeMap;

use wasmkube_sdk::ObjectKey;
use wasmkube_sdk::k8s_openapi::api::core::v1::{Node, Pod, Taint};
use wasmkube_sdk::scheduling::Delta;

use crate::hash::{FxHashMap, FxHashSet};
use crate::ports::{HostPort, UsedPorts, pod_ports};
use crate::requests::{PodRequest, Resources};
use crate::selector::{Hint, PodSelector};
use crate::terms::{Kind, PodTerms, TermIndex};
use crate::topology::{Column, interleave_zones, zone_key};

/// A pod's slot in the view.
pub type PodId = usize;

/// Pods, by slot.
type PodSet = FxHashSet<PodId>;

/// The terms the filter looks up: existing pods' required anti-affinity.
const FILTER_KINDS: &[Kind] = &[Kind::RequiredAnti];
/// The terms the score looks up.
const SCORE_KINDS: &[Kind] = &[
    Kind::RequiredAffinity,
    Kind::PreferredAffinity,
    Kind::PreferredAnti,
];

/// A node and what the pods on it use.
#[derive(Debug)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub unschedulable: bool,
    pub taints: Vec<Taint>,
    /// For each taint, the TaintToleration filter's reason when it is not tolerated.
    pub taint_reasons: Vec<String>,
    pub allocatable: Resources,
    /// The sum of the requests of the pods on the node.
    pub requested: Resources,
    /// The same for cpu and memory, counting containers without requests as 100m and 200Mi.
    pub non_zero_cpu: i64,
    pub non_zero_memory: i64,
    pub pods: Vec<PodId>,
    pub ports: UsedPorts,
    /// Region and zone, for the order nodes are visited in.
    zone: String,
}

/// A pod placed on a node, as the plugins need it.
#[derive(Debug)]
pub struct PodInfo {
    pub key: ObjectKey,
    pub node_name: String,
    /// The node's index, while the node is in the view.
    pub node: Option<usize>,
    pub labels: BTreeMap<String, String>,
    /// `metadata.deletionTimestamp` is set.
    pub terminating: bool,
    pub request: PodRequest,
    pub ports: Vec<HostPort>,
    /// Its pod affinity and anti-affinity terms, when it has any.
    pub terms: Option<Box<PodTerms>>,
}

/// Nodes and pods; see the module documentation.
#[derive(Default)]
pub struct View {
    nodes: Vec<NodeInfo>,
    node_index: FxHashMap<String, usize>,
    pods: Vec<Option<PodInfo>>,
    free: Vec<PodId>,
    pod_index: FxHashMap<ObjectKey, PodId>,
    /// Pods on nodes not in the view, by node name.
    orphans: FxHashMap<String, Vec<PodId>>,
    /// Label key → value → pods.
    by_label: FxHashMap<String, FxHashMap<String, PodSet>>,
    /// Existing pods' required anti-affinity terms.
    anti_terms: TermIndex,
    /// Existing pods' terms that score: required and preferred affinity, preferred
    /// anti-affinity.
    score_terms: TermIndex,
    /// Topology keys' columns, kept up to date once asked for.
    columns: FxHashMap<String, Column>,
    /// Node indices, zones interleaved (Kubernetes' node tree); rebuilt when nodes change.
    order: Vec<usize>,
    order_stale: bool,
}

impl View {
    /// Applies one delta.
    pub fn apply(&mut self, delta: Delta) {
        match delta {
            Delta::NodeUpsert(node) => self.upsert_node(*node),
            Delta::NodeRemove(name) => self.remove_node(&name),
            Delta::PodUpsert(pod) => self.upsert_pod(*pod),
            Delta::PodRemove(key) => self.remove_pod(&key),
        }
    }

    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.node_index.get(name).copied()
    }

    /// A pod on a node in the view, with the node's index.
    pub fn placed(&self, id: PodId) -> Option<(&PodInfo, usize)> {
        let pod = self.pods.get(id)?.as_ref()?;
        Some((pod, pod.node?))
    }

    /// Existing pods' required anti-affinity terms.
    pub fn anti_terms(&self) -> &TermIndex {
        &self.anti_terms
    }

    /// Existing pods' terms that score.
    pub fn score_terms(&self) -> &TermIndex {
        &self.score_terms
    }

    /// Calls `f` with each pod on a node in the view whose labels match `selector`. The pods
    /// the narrowest hint leads to are looked at; for an exact selector, membership in the
    /// other hints' pod sets decides.
    pub fn each_matching(&self, selector: &PodSelector, mut f: impl FnMut(&PodInfo)) {
        let PodSelector::Labels {
            selector,
            hints,
            exact,
        } = selector
        else {
            return;
        };
        let sets: Vec<Vec<&PodSet>> = hints.iter().map(|h| self.hint_sets(h)).collect();
        let size = |sets: &Vec<&PodSet>| sets.iter().map(|s| s.len()).sum::<usize>();
        let Some((driver, driving)) = sets.iter().enumerate().min_by_key(|(_, s)| size(s)) else {
            let all = self.pods.iter().flatten();
            all.filter(|p| p.node.is_some() && selector.matches(&p.labels))
                .for_each(f);
            return;
        };
        for &id in driving.iter().copied().flatten() {
            let Some(pod) = self.pods[id].as_ref().filter(|p| p.node.is_some()) else {
                continue;
            };
            let matches = if *exact {
                let mut others = sets.iter().enumerate().filter(|(i, _)| *i != driver);
                others.all(|(_, sets)| sets.iter().any(|s| s.contains(&id)))
            } else {
                selector.matches(&pod.labels)
            };
            if matches {
                f(pod);
            }
        }
    }

    /// The pod sets a hint leads to (disjoint: one per label value).
    fn hint_sets(&self, hint: &Hint) -> Vec<&PodSet> {
        let Some(values) = self.by_label.get(hint.key()) else {
            return Vec::new();
        };
        match hint {
            Hint::Values(_, wanted) => wanted.iter().filter_map(|v| values.get(v)).collect(),
            Hint::Exists(_) => values.values().collect(),
        }
    }

    /// Makes sure the view keeps a column for each key.
    pub fn add_columns<'k>(&mut self, keys: impl IntoIterator<Item = &'k str>) {
        for key in keys {
            if self.columns.contains_key(key) {
                continue;
            }
            let mut column = Column::default();
            let domains: Vec<u32> = self
                .nodes
                .iter()
                .map(|n| column.domain(&n.labels, key))
                .collect();
            column.domains = domains;
            self.columns.insert(key.to_string(), column);
        }
    }

    /// A key's column, if [`View::add_columns`] asked for it.
    pub fn column(&self, key: &str) -> Option<&Column> {
        self.columns.get(key)
    }

    /// The same, with the key as the view keeps it.
    pub fn column_entry(&self, key: &str) -> Option<(&str, &Column)> {
        let (key, column) = self.columns.get_key_value(key)?;
        Some((key.as_str(), column))
    }

    /// Brings the node order up to date after nodes changed.
    pub fn refresh_order(&mut self) {
        if self.order_stale {
            self.order = interleave_zones(self.nodes.iter().map(|n| n.zone.as_str()));
            self.order_stale = false;
        }
    }

    /// The nodes in visiting order: zones interleaved, as Kubernetes' node tree lists them
    /// (current once [`View::refresh_order`] ran).
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    fn upsert_node(&mut self, node: Node) {
        let name = node.metadata.name.unwrap_or_default();
        let spec = node.spec.unwrap_or_default();
        let taints = spec.taints.unwrap_or_default();
        let labels = node.metadata.labels.unwrap_or_default();
        let allocatable = node
            .status
            .and_then(|s| s.allocatable)
            .map(|a| Resources::from_list(&a))
            .unwrap_or_default();
        let zone = zone_key(&labels);
        let info = NodeInfo {
            taint_reasons: taints
                .iter()
                .map(|t| {
                    let value = t.value.as_deref().unwrap_or_default();
                    format!("node(s) had untolerated taint {{{}: {value}}}", t.key)
                })
                .collect(),
            name: name.clone(),
            labels,
            unschedulable: spec.unschedulable == Some(true),
            taints,
            allocatable,
            requested: Resources::default(),
            non_zero_cpu: 0,
            non_zero_memory: 0,
            pods: Vec::new(),
            ports: UsedPorts::default(),
            zone,
        };
        if let Some(&index) = self.node_index.get(&name) {
            let old = &mut self.nodes[index];
            self.order_stale |= old.zone != info.zone;
            if old.labels != info.labels {
                for (key, column) in &mut self.columns {
                    column.domains[index] = column.domain(&info.labels, key);
                }
            }
            *old = NodeInfo {
                requested: std::mem::take(&mut old.requested),
                non_zero_cpu: old.non_zero_cpu,
                non_zero_memory: old.non_zero_memory,
                pods: std::mem::take(&mut old.pods),
                ports: std::mem::take(&mut old.ports),
                ..info
            };
            return;
        }
        let index = self.nodes.len();
        for (key, column) in &mut self.columns {
            let domain = column.domain(&info.labels, key);
            column.domains.push(domain);
        }
        self.nodes.push(info);
        self.node_index.insert(name.clone(), index);
        self.order_stale = true;
        for id in self.orphans.remove(&name).unwrap_or_default() {
            self.place(id, index);
        }
    }

    fn remove_node(&mut self, name: &str) {
        let Some(index) = self.node_index.remove(name) else {
            return;
        };
        let node = self.nodes.swap_remove(index);
        for column in self.columns.values_mut() {
            column.domains.swap_remove(index);
        }
        for &id in &node.pods {
            if let Some(pod) = &mut self.pods[id] {
                pod.node = None;
            }
        }
        self.orphans.entry(node.name).or_default().extend(node.pods);
        if let Some(moved) = self.nodes.get(index) {
            self.node_index.insert(moved.name.clone(), index);
            for &id in &moved.pods {
                if let Some(pod) = &mut self.pods[id] {
                    pod.node = Some(index);
                }
            }
        }
        self.order_stale = true;
    }

    fn upsert_pod(&mut self, pod: Pod) {
        let key = ObjectKey::new(
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default(),
        );
        self.remove_pod(&key);
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let spec = pod.spec.as_ref();
        let node_name = spec.and_then(|s| s.node_name.clone()).unwrap_or_default();
        if matches!(phase, Some("Succeeded" | "Failed")) || node_name.is_empty() {
            return;
        }
        let info = PodInfo {
            node_name,
            node: None,
            terminating: pod.metadata.deletion_timestamp.is_some(),
            request: spec.map(PodRequest::of).unwrap_or_default(),
            ports: spec.map(pod_ports).unwrap_or_default(),
            terms: PodTerms::of_existing(&pod).map(Box::new),
            labels: pod.metadata.labels.unwrap_or_default(),
            key: key.clone(),
        };
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.pods.push(None);
                self.pods.len() - 1
            }
        };
        self.pod_index.insert(key, id);
        for (k, v) in &info.labels {
            let ids = self.by_label.entry(k.clone()).or_default();
            ids.entry(v.clone()).or_default().insert(id);
        }
        if let Some(terms) = &info.terms {
            self.anti_terms.add(id, terms, FILTER_KINDS);
            self.score_terms.add(id, terms, SCORE_KINDS);
            self.add_columns(terms.topology_keys());
        }
        let node = self.node_index.get(&info.node_name).copied();
        if node.is_none() {
            let orphans = self.orphans.entry(info.node_name.clone()).or_default();
            orphans.push(id);
        }
        self.pods[id] = Some(info);
        if let Some(index) = node {
            self.place(id, index);
        }
    }

    fn remove_pod(&mut self, key: &ObjectKey) {
        let Some(id) = self.pod_index.remove(key) else {
            return;
        };
        let Some(pod) = self.pods[id].take() else {
            return;
        };
        self.free.push(id);
        if let Some(terms) = &pod.terms {
            self.anti_terms.remove(id, terms, FILTER_KINDS);
            self.score_terms.remove(id, terms, SCORE_KINDS);
        }
        for (k, v) in &pod.labels {
            let Some(values) = self.by_label.get_mut(k) else {
                continue;
            };
            if let Some(ids) = values.get_mut(v) {
                ids.remove(&id);
                if ids.is_empty() {
                    values.remove(v);
                }
            }
            if values.is_empty() {
                self.by_label.remove(k);
            }
        }
        match pod.node {
            Some(index) => {
                let node = &mut self.nodes[index];
                node.pods.retain(|&p| p != id);
                node.requested.subtract(&pod.request.requests);
                node.non_zero_cpu -= pod.request.non_zero_cpu;
                node.non_zero_memory -= pod.request.non_zero_memory;
                pod.ports.iter().for_each(|p| node.ports.remove(p));
            }
            None => {
                if let Some(orphans) = self.orphans.get_mut(&pod.node_name) {
                    orphans.retain(|&p| p != id);
                    if orphans.is_empty() {
                        self.orphans.remove(&pod.node_name);
                    }
                }
            }
        }
    }

    /// Accounts pod `id` on node `index`.
    fn place(&mut self, id: PodId, index: usize) {
        let Some(pod) = &mut self.pods[id] else {
            return;
        };
        pod.node = Some(index);
        let node = &mut self.nodes[index];
        node.pods.push(id);
        node.requested.add(&pod.request.requests);
        node.non_zero_cpu += pod.request.non_zero_cpu;
        node.non_zero_memory += pod.request.non_zero_memory;
        pod.ports.iter().for_each(|p| node.ports.add(p));
    }
}
