//! What the proxy's nftables table holds (chains, affinity sets, map elements), read back from
//! `nft -j list table` for adoption, and the batch that turns one state into another.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// The verdict maps of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Map {
    /// cluster IP . protocol . port → the Service's chain (pods of this node and the node).
    ServiceIps,
    /// external IP . protocol . port → the Service's external chain (from anywhere).
    ExternalIps,
    /// protocol . node port → the Service's external chain, on every local address.
    NodePorts,
    /// external IP . protocol . port of a Service without endpoints → reject.
    NoEndpointServices,
    /// protocol . node port of a Service without endpoints → reject.
    NoEndpointNodePorts,
}

impl Map {
    pub const ALL: [Map; 5] = [
        Map::ServiceIps,
        Map::ExternalIps,
        Map::NodePorts,
        Map::NoEndpointServices,
        Map::NoEndpointNodePorts,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Map::ServiceIps => "service-ips",
            Map::ExternalIps => "external-ips",
            Map::NodePorts => "service-nodeports",
            Map::NoEndpointServices => "no-endpoint-services",
            Map::NoEndpointNodePorts => "no-endpoint-nodeports",
        }
    }

    pub fn key_type(self) -> &'static str {
        match self {
            Map::NodePorts | Map::NoEndpointNodePorts => "inet_proto . inet_service",
            _ => "ipv4_addr . inet_proto . inet_service",
        }
    }

    /// The map that rejects what this one would have sent to a Service without endpoints.
    pub fn no_endpoints(self) -> Map {
        match self {
            Map::NodePorts | Map::NoEndpointNodePorts => Map::NoEndpointNodePorts,
            _ => Map::NoEndpointServices,
        }
    }

    fn by_name(name: &str) -> Option<Map> {
        Map::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// The prefixes of the chains the proxy makes per Service, in the order they may be created
/// (each refers only to chains of earlier prefixes, and to affinity sets).
const CHAIN_PREFIXES: [&str; 4] = ["ep-", "lcl-", "svc-", "xt-"];
const SET_PREFIX: &str = "aff-";

/// Chains (by name, with their rules), affinity sets (by name, with their timeout in seconds)
/// and map elements (`(map, key)` → the chain their `goto` verdict names).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Programme {
    pub chains: BTreeMap<String, Vec<String>>,
    pub sets: BTreeMap<String, u32>,
    pub elements: BTreeMap<(Map, String), String>,
}

impl Programme {
    /// Adds everything of `other` (Services never share a chain, a set or a map key).
    pub fn extend(&mut self, other: Programme) {
        self.chains.extend(other.chains);
        self.sets.extend(other.sets);
        self.elements.extend(other.elements);
    }

    /// The same without the chains' rules: all a later [`diff`] needs of what was written
    /// (a chain's name changes with its rules), kept per Service at a fraction of the memory.
    pub fn written(mut self) -> Programme {
        for rules in self.chains.values_mut() {
            *rules = Vec::new();
        }
        self
    }

    /// The Service chains, sets and elements in an `nft -j list table` answer (their rules are
    /// not read back: a chain's name changes with its rules).
    pub fn from_listing(listing: &Value) -> Programme {
        let mut programme = Programme::default();
        for item in listing["nftables"].as_array().into_iter().flatten() {
            if let Some(name) = item.pointer("/chain/name").and_then(Value::as_str)
                && CHAIN_PREFIXES.iter().any(|p| name.starts_with(p))
            {
                programme.chains.insert(name.to_string(), Vec::new());
            }
            if let Some(name) = item.pointer("/set/name").and_then(Value::as_str)
                && name.starts_with(SET_PREFIX)
            {
                let timeout = item.pointer("/set/timeout").and_then(Value::as_u64);
                let timeout = timeout.and_then(|t| u32::try_from(t).ok()).unwrap_or(0);
                programme.sets.insert(name.to_string(), timeout);
            }
            let Some(map) = item
                .pointer("/map/name")
                .and_then(Value::as_str)
                .and_then(Map::by_name)
            else {
                continue;
            };
            for element in item
                .pointer("/map/elem")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let target = element[1].pointer("/goto/target").and_then(Value::as_str);
                if let (Some(key), Some(target)) = (element_key(&element[0]), target) {
                    programme.elements.insert((map, key), target.to_string());
                }
            }
        }
        programme
    }
}

/// A map key as the proxy writes it (`10.96.0.5 . tcp . 80`) from its JSON form.
fn element_key(key: &Value) -> Option<String> {
    let parts = key.get("concat")?.as_array()?;
    let parts: Option<Vec<String>> = parts
        .iter()
        .map(|p| match p {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .collect();
    Some(parts?.join(" . "))
}

/// The nft batch (one transaction) that turns what `old` made into what `new` asks for: new
/// sets and chains first, then the map elements, then the chains and sets no longer used.
pub fn diff(table: &str, old: &Programme, new: &Programme) -> String {
    let t = format!("ip {table}");
    let mut batch = String::new();
    let mut line = |text: String| {
        batch.push_str(&text);
        batch.push('\n');
    };
    for (set, timeout) in &new.sets {
        if !old.sets.contains_key(set) {
            line(format!(
                "add set {t} {set} {{ type ipv4_addr ; flags dynamic,timeout ; timeout {timeout}s ; }}"
            ));
        }
    }
    for prefix in CHAIN_PREFIXES {
        for (chain, rules) in new.chains.range(prefix.to_string()..) {
            if !chain.starts_with(prefix) {
                break;
            }
            if old.chains.contains_key(chain) {
                continue;
            }
            line(format!("add chain {t} {chain}"));
            for rule in rules {
                line(format!("add rule {t} {chain} {rule}"));
            }
        }
    }
    let keys: BTreeSet<&(Map, String)> = old.elements.keys().chain(new.elements.keys()).collect();
    for key @ (map, text) in keys {
        let (before, after) = (old.elements.get(key), new.elements.get(key));
        if before == after {
            continue;
        }
        let map = map.name();
        if before.is_some() {
            line(format!("delete element {t} {map} {{ {text} }}"));
        }
        if let Some(target) = after {
            line(format!(
                "add element {t} {map} {{ {text} : goto {target} }}"
            ));
        }
    }
    for prefix in CHAIN_PREFIXES.iter().rev() {
        for chain in old.chains.range(prefix.to_string()..) {
            if !chain.0.starts_with(prefix) {
                break;
            }
            if !new.chains.contains_key(chain.0) {
                line(format!("delete chain {t} {}", chain.0));
            }
        }
    }
    for set in old.sets.keys() {
        if !new.sets.contains_key(set) {
            line(format!("delete set {t} {set}"));
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn programme(chains: &[&str], elements: &[(&str, &str)]) -> Programme {
        Programme {
            chains: chains
                .iter()
                .map(|c| (c.to_string(), vec![format!("rule of {c}")]))
                .collect(),
            sets: BTreeMap::new(),
            elements: elements
                .iter()
                .map(|(k, v)| ((Map::ServiceIps, k.to_string()), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn nothing_changed_is_an_empty_batch() {
        let p = programme(&["ep-1", "svc-1"], &[("10.96.0.5 . tcp . 80", "svc-1")]);
        assert_eq!(diff("T", &p, &p), "");
    }

    #[test]
    fn a_changed_service_adds_its_new_chains_repoints_the_map_then_deletes_the_old() {
        let old = programme(
            &["ep-1", "ep-2", "svc-1"],
            &[("10.96.0.5 . tcp . 80", "svc-1")],
        );
        let new = programme(
            &["ep-1", "ep-3", "svc-2"],
            &[("10.96.0.5 . tcp . 80", "svc-2")],
        );
        assert_eq!(
            diff("T", &old, &new),
            "add chain ip T ep-3\n\
             add rule ip T ep-3 rule of ep-3\n\
             add chain ip T svc-2\n\
             add rule ip T svc-2 rule of svc-2\n\
             delete element ip T service-ips { 10.96.0.5 . tcp . 80 }\n\
             add element ip T service-ips { 10.96.0.5 . tcp . 80 : goto svc-2 }\n\
             delete chain ip T svc-1\n\
             delete chain ip T ep-2\n"
        );
    }

    #[test]
    fn a_listing_is_read_back_as_chains_sets_and_elements() {
        let listing = json!({"nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {"table": {"family": "ip", "name": "T"}},
            {"map": {"name": "service-ips", "elem": [
                [{"concat": ["10.96.0.5", "tcp", 80]}, {"goto": {"target": "svc-1"}}]]}},
            {"map": {"name": "service-nodeports", "elem": [
                [{"concat": ["udp", 30053]}, {"goto": {"target": "xt-1"}}]]}},
            {"set": {"name": "aff-1", "timeout": 10800}},
            {"chain": {"name": "svc-1"}},
            {"chain": {"name": "nat-prerouting"}},
        ]});
        let p = Programme::from_listing(&listing);
        assert_eq!(p.chains.keys().collect::<Vec<_>>(), ["svc-1"]);
        assert_eq!(p.sets.get("aff-1"), Some(&10800));
        assert_eq!(
            p.elements[&(Map::ServiceIps, "10.96.0.5 . tcp . 80".into())],
            "svc-1"
        );
        assert_eq!(p.elements[&(Map::NodePorts, "udp . 30053".into())], "xt-1");
    }
}
