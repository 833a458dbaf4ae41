//! The nftables rules of the proxy: the table's fixed skeleton (hooks, maps, the reject of
//! unowned service addresses) and the chains and map elements of one Service, modelled on
//! kube-proxy's nftables mode.

use std::fmt::Write;

use sha2::{Digest, Sha256};

use super::Settings;
use super::service::{Endpoint, Port, Proxied};
use super::table::{Map, Programme};

/// The chains the skeleton owns, rewritten whole when the agent starts.
const FIXED_CHAINS: &[&str] = &[
    "nat-prerouting",
    "nat-output",
    "nat-postrouting",
    "filter-forward",
    "filter-output",
    "filter-input",
    "mark-for-masquerade",
    "masquerading",
    REJECT_CHAIN,
];
/// Where the `no-endpoint-*` maps send traffic: an ICMP port-unreachable (a TCP reset for TCP).
pub const REJECT_CHAIN: &str = "reject-chain";
/// The packet mark of traffic to masquerade on the way out (kube-proxy's bit).
const MASQUERADE_MARK: &str = "0x4000";

/// The batch that creates the table, or brings an adopted one's fixed parts up to date (in one
/// transaction, so no packet sees them half written), without touching any Service's chains.
pub fn skeleton(settings: &Settings) -> String {
    let t = format!("ip {}", settings.table);
    let bridge = &settings.bridge;
    let range = settings.service_range;
    let mut b = String::new();
    let mut line = |text: String| {
        b.push_str(&text);
        b.push('\n');
    };
    line(format!("add table {t}"));
    for (chain, hook, priority) in [
        ("nat-prerouting", "prerouting", -100),
        ("nat-output", "output", -100),
        ("nat-postrouting", "postrouting", 100),
        ("filter-forward", "forward", -110),
        // After the DNAT of locally made traffic, so only what no Service took is left.
        ("filter-output", "output", -90),
        ("filter-input", "input", -110),
    ] {
        let kind = if chain.starts_with("nat") {
            "nat"
        } else {
            "filter"
        };
        line(format!(
            "add chain {t} {chain} {{ type {kind} hook {hook} priority {priority} ; }}"
        ));
    }
    for chain in FIXED_CHAINS {
        line(format!("add chain {t} {chain}"));
        line(format!("flush chain {t} {chain}"));
    }
    for map in Map::ALL {
        line(format!(
            "add map {t} {} {{ type {} : verdict ; }}",
            map.name(),
            map.key_type()
        ));
    }
    let services = "ip daddr . meta l4proto . th dport vmap";
    let node_ports = "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports";
    // Pods of this node only (other agents on this machine have bridges of their own).
    line(format!(
        "add rule {t} nat-prerouting iifname \"{bridge}\" {services} @service-ips"
    ));
    line(format!(
        "add rule {t} nat-prerouting {services} @external-ips"
    ));
    line(format!("add rule {t} nat-prerouting {node_ports}"));
    line(format!("add rule {t} nat-output {services} @service-ips"));
    line(format!("add rule {t} nat-output {services} @external-ips"));
    line(format!("add rule {t} nat-output {node_ports}"));
    line(format!("add rule {t} nat-postrouting jump masquerading"));
    line(format!(
        "add rule {t} mark-for-masquerade meta mark set meta mark | {MASQUERADE_MARK}"
    ));
    line(format!(
        "add rule {t} masquerading meta mark & {MASQUERADE_MARK} == 0 return"
    ));
    line(format!(
        "add rule {t} masquerading meta mark set meta mark ^ {MASQUERADE_MARK}"
    ));
    line(format!("add rule {t} masquerading masquerade fully-random"));
    for chain in ["filter-forward", "filter-output"] {
        line(format!(
            "add rule {t} {chain} ct state new {services} @no-endpoint-services"
        ));
        // Whatever is still addressed to the service range here went to no Service: refused
        // on this node, never routed out of it.
        line(format!(
            "add rule {t} {chain} ct state new ip daddr {range} reject"
        ));
    }
    line(format!(
        "add rule {t} filter-input ct state new meta l4proto . th dport vmap @no-endpoint-nodeports"
    ));
    line(format!(
        "add rule {t} {REJECT_CHAIN} meta l4proto tcp reject with tcp reset"
    ));
    line(format!("add rule {t} {REJECT_CHAIN} reject"));
    b
}

/// The chains, affinity sets and map elements of one Service.
pub fn programme(service: &Proxied, settings: &Settings) -> Programme {
    let mut programme = Programme::default();
    for port in &service.ports {
        PortRules {
            service,
            port,
            settings,
            id: format!(
                "{}/{}/{}/{}",
                service.namespace,
                service.name,
                port.protocol.nft(),
                port.port
            ),
        }
        .add_to(&mut programme);
    }
    programme
}

/// The rules of one Service port.
struct PortRules<'a> {
    service: &'a Proxied,
    port: &'a Port,
    settings: &'a Settings,
    /// `ns/name/proto/port`, in every chain name of this port.
    id: String,
}

impl PortRules<'_> {
    fn add_to(&self, programme: &mut Programme) {
        let proto = self.port.protocol.nft();
        let cluster = self.spread("svc", &self.port.cluster, programme);
        let local = self.spread("lcl", &self.port.local, programme);
        let internal = if self.service.internal_local {
            local.clone()
        } else {
            cluster.clone()
        };
        if let Some(target) = internal {
            let key = format!("{} . {proto} . {}", self.service.cluster_ip, self.port.port);
            programme.elements.insert((Map::ServiceIps, key), target);
        }
        let mut external = Vec::new();
        if let Some(node_port) = self.port.node_port {
            external.push((Map::NodePorts, format!("{proto} . {node_port}")));
        }
        for ip in &self.service.external_ips {
            external.push((
                Map::ExternalIps,
                format!("{ip} . {proto} . {}", self.port.port),
            ));
        }
        if external.is_empty() {
            return;
        }
        let Some(cluster) = cluster else {
            for (map, key) in external {
                programme
                    .elements
                    .insert((map.no_endpoints(), key), REJECT_CHAIN.into());
            }
            return;
        };
        let rules = if self.service.external_local {
            // Pods and the node itself still reach every endpoint, as kube-proxy does.
            vec![
                format!("ip saddr {} goto {cluster}", self.settings.pod_network),
                "fib saddr type local jump mark-for-masquerade".to_string(),
                format!("fib saddr type local goto {cluster}"),
                match local {
                    Some(local) => format!("goto {local}"),
                    None => "drop".to_string(),
                },
            ]
        } else {
            vec![
                "jump mark-for-masquerade".to_string(),
                format!("goto {cluster}"),
            ]
        };
        let chain = self.chain("xt", "", rules, programme);
        for key in external {
            programme.elements.insert(key, chain.clone());
        }
    }

    /// A chain that spreads traffic evenly (at random) over `endpoints`, keeping a client on
    /// its endpoint while its affinity lasts; `None` when there are none.
    fn spread(
        &self,
        prefix: &str,
        endpoints: &[Endpoint],
        programme: &mut Programme,
    ) -> Option<String> {
        if endpoints.is_empty() {
            return None;
        }
        let mut rules = vec![format!(
            "ip saddr != {} jump mark-for-masquerade",
            self.settings.pod_network
        )];
        let mut targets = Vec::new();
        for endpoint in endpoints {
            let (chain, affinity) = self.endpoint(endpoint, programme);
            if let Some(set) = affinity {
                rules.push(format!("ip saddr @{set} goto {chain}"));
            }
            targets.push(chain);
        }
        let mut vmap = String::new();
        for (i, chain) in targets.iter().enumerate() {
            let separator = if i == 0 { "" } else { ", " };
            let _ = write!(vmap, "{separator}{i} : goto {chain}");
        }
        rules.push(format!(
            "numgen random mod {} vmap {{ {vmap} }}",
            targets.len()
        ));
        Some(self.chain(prefix, "", rules, programme))
    }

    /// The chain that sends traffic to one endpoint (and its affinity set, if any).
    fn endpoint(&self, endpoint: &Endpoint, programme: &mut Programme) -> (String, Option<String>) {
        let Endpoint { ip, port } = endpoint;
        let proto = self.port.protocol.nft();
        let mut rules = vec![format!("ip saddr {ip} jump mark-for-masquerade")];
        let affinity = self.service.affinity.map(|timeout| {
            let set = format!(
                "aff-{}",
                digest(&[&self.id, &format!("{ip}:{port}/{timeout}")])
            );
            programme.sets.insert(set.clone(), timeout);
            rules.push(format!("update @{set} {{ ip saddr }}"));
            set
        });
        rules.push(format!("meta l4proto {proto} dnat to {ip}:{port}"));
        let chain = self.chain("ep", &format!("__{ip}/{port}"), rules, programme);
        (chain, affinity)
    }

    /// Adds a chain named after its prefix, its content and this port; returns the name. A
    /// chain's name changes whenever its rules do, so an existing chain never needs rewriting.
    fn chain(
        &self,
        prefix: &str,
        suffix: &str,
        rules: Vec<String>,
        programme: &mut Programme,
    ) -> String {
        let mut parts = vec![self.id.as_str(), suffix];
        parts.extend(rules.iter().map(String::as_str));
        let name = format!("{prefix}-{}-{}{suffix}", digest(&parts), self.id);
        programme.chains.insert(name.clone(), rules);
        name
    }
}

/// 16 hex digits of the SHA-256 of `parts`.
fn digest(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hash.finalize()[..8].iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::service::Protocol;

    fn settings() -> Settings {
        Settings::new("n1", "wk0", "10.244.0.0/16", "10.96.0.0/12").expect("valid settings")
    }

    fn ep(ip: &str, port: u16) -> Endpoint {
        Endpoint {
            ip: ip.parse().expect("an address"),
            port,
        }
    }

    fn web(endpoints: Vec<Endpoint>) -> Proxied {
        Proxied {
            namespace: "t".into(),
            name: "web".into(),
            cluster_ip: "10.96.0.5".parse().expect("an address"),
            external_ips: vec![],
            ports: vec![Port {
                protocol: Protocol::Tcp,
                port: 80,
                node_port: None,
                local: vec![],
                cluster: endpoints,
            }],
            affinity: None,
            internal_local: false,
            external_local: false,
        }
    }

    fn chain<'a>(p: &'a Programme, prefix: &str) -> Vec<&'a String> {
        p.chains
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .flat_map(|(_, rules)| rules)
            .collect()
    }

    #[test]
    fn the_skeleton_rejects_the_unowned_service_range_and_scopes_pods_by_bridge() {
        let text = skeleton(&settings());
        assert!(text.starts_with("add table ip wasmkube-wk0\n"));
        assert!(text.contains(
            "add rule ip wasmkube-wk0 filter-forward ct state new ip daddr 10.96.0.0/12 reject\n"
        ));
        assert!(text.contains(
            "add rule ip wasmkube-wk0 filter-output ct state new ip daddr 10.96.0.0/12 reject\n"
        ));
        assert!(text.contains(
            "nat-prerouting iifname \"wk0\" ip daddr . meta l4proto . th dport vmap @service-ips"
        ));
        assert!(text.contains("flush chain ip wasmkube-wk0 nat-prerouting\n"));
    }

    #[test]
    fn a_cluster_ip_spreads_over_its_endpoints_at_random() {
        let p = programme(
            &web(vec![ep("10.244.0.3", 8080), ep("10.244.0.4", 8080)]),
            &settings(),
        );
        let svc = chain(&p, "svc-");
        assert_eq!(svc[0], "ip saddr != 10.244.0.0/16 jump mark-for-masquerade");
        assert!(
            svc[1].starts_with("numgen random mod 2 vmap { 0 : goto ep-"),
            "{}",
            svc[1]
        );
        assert!(svc[1].contains("-t/web/tcp/80__10.244.0.3/8080, 1 : goto ep-"));
        let eps = chain(&p, "ep-");
        assert!(eps.contains(&&"ip saddr 10.244.0.3 jump mark-for-masquerade".to_string()));
        assert!(eps.contains(&&"meta l4proto tcp dnat to 10.244.0.4:8080".to_string()));
        let (key, target) = p.elements.iter().next().expect("an element");
        assert_eq!(key, &(Map::ServiceIps, "10.96.0.5 . tcp . 80".to_string()));
        assert!(target.starts_with("svc-") && target.ends_with("-t/web/tcp/80"));
    }

    #[test]
    fn no_endpoints_leave_the_cluster_ip_to_the_range_reject_and_reject_node_ports() {
        let mut s = web(vec![]);
        s.ports[0].node_port = Some(30080);
        s.external_ips = vec!["203.0.113.7".parse().expect("an address")];
        let p = programme(&s, &settings());
        assert!(p.chains.is_empty());
        let elements: Vec<_> = p.elements.iter().collect();
        assert_eq!(
            elements,
            [
                (
                    &(Map::NoEndpointServices, "203.0.113.7 . tcp . 80".into()),
                    &REJECT_CHAIN.to_string()
                ),
                (
                    &(Map::NoEndpointNodePorts, "tcp . 30080".into()),
                    &REJECT_CHAIN.to_string()
                ),
            ]
        );
    }

    #[test]
    fn external_traffic_is_masqueraded_or_kept_on_local_endpoints() {
        let mut s = web(vec![ep("10.244.0.3", 8080), ep("10.244.1.4", 8080)]);
        s.ports[0].local = vec![ep("10.244.0.3", 8080)];
        s.ports[0].node_port = Some(30080);
        let p = programme(&s, &settings());
        let xt = chain(&p, "xt-");
        assert_eq!(xt[0], "jump mark-for-masquerade");
        assert!(xt[1].starts_with("goto svc-"));
        s.external_local = true;
        let p = programme(&s, &settings());
        let xt = chain(&p, "xt-");
        assert!(xt[0].starts_with("ip saddr 10.244.0.0/16 goto svc-"));
        assert!(xt[3].starts_with("goto lcl-"), "{}", xt[3]);
        assert!(
            p.elements
                .contains_key(&(Map::NodePorts, "tcp . 30080".into()))
        );
    }

    #[test]
    fn client_ip_affinity_remembers_the_endpoint_in_a_timed_set() {
        let mut s = web(vec![ep("10.244.0.3", 8080)]);
        s.affinity = Some(60);
        let p = programme(&s, &settings());
        let (set, timeout) = p.sets.iter().next().expect("a set");
        assert_eq!(*timeout, 60);
        assert!(chain(&p, "svc-")[1].starts_with(&format!("ip saddr @{set} goto ep-")));
        assert!(chain(&p, "ep-").contains(&&format!("update @{set} {{ ip saddr }}")));
    }

    #[test]
    fn internal_traffic_policy_local_uses_only_this_nodes_endpoints() {
        let mut s = web(vec![ep("10.244.0.3", 8080), ep("10.244.1.4", 8080)]);
        s.ports[0].local = vec![ep("10.244.0.3", 8080)];
        s.internal_local = true;
        let p = programme(&s, &settings());
        let target = &p.elements[&(Map::ServiceIps, "10.96.0.5 . tcp . 80".into())];
        assert!(target.starts_with("lcl-"));
        assert!(p.chains[target][1].starts_with("numgen random mod 1 "));
    }

    #[test]
    fn a_changed_endpoint_renames_only_the_chains_it_is_in() {
        let before = programme(
            &web(vec![ep("10.244.0.3", 8080), ep("10.244.0.4", 8080)]),
            &settings(),
        );
        let after = programme(
            &web(vec![ep("10.244.0.3", 8080), ep("10.244.0.5", 8080)]),
            &settings(),
        );
        let kept: Vec<_> = before
            .chains
            .keys()
            .filter(|k| after.chains.contains_key(*k))
            .collect();
        assert_eq!(
            kept.len(),
            1,
            "the endpoint chain of 10.244.0.3 stays: {kept:?}"
        );
        assert!(kept[0].contains("10.244.0.3"));
    }
}
