//! Topology: each topology key's domains over the nodes (columns), and the order nodes are
//! visited in (zones interleaved, as Kubernetes' node tree lists them).

use std::collections::BTreeMap;

use crate::hash::FxHashMap;

/// A column's entry for a node without the key.
pub const NO_DOMAIN: u32 = u32::MAX;

/// A topology key's values over the nodes, for spreading: each node's domain as an id.
#[derive(Debug, Default)]
pub struct Column {
    /// By node index: the node's domain, or [`NO_DOMAIN`].
    pub domains: Vec<u32>,
    /// The number of domain ids handed out.
    pub len: usize,
    ids: FxHashMap<String, u32>,
}

impl Column {
    pub fn domain(&mut self, labels: &BTreeMap<String, String>, key: &str) -> u32 {
        let Some(value) = labels.get(key) else {
            return NO_DOMAIN;
        };
        if let Some(&id) = self.ids.get(value) {
            return id;
        }
        let id = u32::try_from(self.len).unwrap_or(NO_DOMAIN);
        self.ids.insert(value.clone(), id);
        self.len += 1;
        id
    }
}

/// Kubernetes' `GetZoneKey`: region and zone, or empty when the node has neither.
pub fn zone_key(labels: &BTreeMap<String, String>) -> String {
    let label = |current: &str, beta: &str| {
        labels
            .get(current)
            .or_else(|| labels.get(beta))
            .map(String::as_str)
            .unwrap_or_default()
    };
    let zone = label(
        "topology.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/zone",
    );
    let region = label(
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/region",
    );
    if zone.is_empty() && region.is_empty() {
        String::new()
    } else {
        format!("{region}:\0:{zone}")
    }
}

/// Node indices: the first node of each zone, then the second of each, and so on (zones in
/// the order they first appear); `zones` are the nodes' zone keys.
pub fn interleave_zones<'a>(zones: impl ExactSizeIterator<Item = &'a str>) -> Vec<usize> {
    let mut order = Vec::with_capacity(zones.len());
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut group_of: FxHashMap<&str, usize> = FxHashMap::default();
    for (index, zone) in zones.enumerate() {
        let group = *group_of.entry(zone).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[group].push(index);
    }
    let deepest = groups.iter().map(Vec::len).max().unwrap_or(0);
    for depth in 0..deepest {
        order.extend(groups.iter().filter_map(|g| g.get(depth)));
    }
    order
}
