//! The cluster's DNS zone: an index of the Services and their EndpointSlices, answering one
//! question at a time as CoreDNS's kubernetes plugin does.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA, SRV};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use wasmkube_model::validation::{is_dns1123_label, is_dns1123_subdomain};

/// The TTL of every record (CoreDNS's default for the kubernetes plugin).
pub const TTL: u32 = 5;
/// The most records in one answer section: a headless Service of thousands of pods answers
/// with the first of them (sorted by address), never with an unbounded list.
pub const MAX_RECORDS: usize = 256;
/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    #[error("the cluster domain {0:?} is not a DNS subdomain")]
    Domain(String),
}

/// What the zone says about one question.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// The name has records of the asked type (and these extra ones for the additional section).
    Found {
        answers: Vec<Record>,
        additionals: Vec<Record>,
    },
    /// The name exists, but has no records of the asked type (NOERROR, no answers).
    NoData,
    /// The name does not exist in the zone.
    NxDomain,
    /// The name is outside the cluster domain, or a reverse name of an address the cluster does
    /// not know: it is forwarded upstream.
    Elsewhere,
}

impl Answer {
    fn records(answers: Vec<Record>) -> Answer {
        Answer::with_additionals(answers, Vec::new())
    }

    fn with_additionals(answers: Vec<Record>, additionals: Vec<Record>) -> Answer {
        if answers.is_empty() {
            return Answer::NoData;
        }
        Answer::Found {
            answers,
            additionals,
        }
    }
}

/// The origin (`cluster.local.`) of a cluster domain given as `cluster.local`.
pub fn origin(domain: &str) -> Result<Name, ZoneError> {
    let domain = domain.trim_end_matches('.').to_lowercase();
    if !is_dns1123_subdomain(&domain) {
        return Err(ZoneError::Domain(domain));
    }
    Name::from_ascii(format!("{domain}.")).map_err(|_| ZoneError::Domain(domain))
}

/// A Service port, or an EndpointSlice port, that has a name.
#[derive(Clone, Debug)]
struct Port {
    name: String,
    /// Lowercase, as in `_tcp`.
    protocol: String,
    port: u16,
}

/// A ready endpoint of a Service.
#[derive(Debug)]
struct Endpoint {
    ip: IpAddr,
    /// Its `hostname`, or its address with dashes (`10-244-0-5`), as CoreDNS names it.
    host: String,
    ports: Vec<Port>,
}

#[derive(Debug)]
enum Kind {
    ClusterIp(Vec<IpAddr>),
    Headless,
    External(Name),
}

#[derive(Debug)]
struct Entry {
    kind: Kind,
    ports: Vec<Port>,
    /// Ready endpoints, sorted by address, one per address.
    endpoints: Vec<Endpoint>,
    publish_not_ready: bool,
}

/// A snapshot of the zone, built from the caches after each change and read by every query.
#[derive(Debug)]
pub struct Zone {
    origin: Name,
    /// By (namespace, name).
    services: HashMap<(String, String), Entry>,
    /// The namespaces that hold a Service: `NS.svc.cluster.local` exists for them.
    namespaces: HashSet<String>,
    /// PTR targets of the ClusterIPs and endpoint addresses.
    reverse: HashMap<IpAddr, Name>,
    serial: u32,
    /// Whether the caches were listed: until then, the cluster's names get SERVFAIL, not
    /// NXDOMAIN (as CoreDNS before its first sync).
    synced: bool,
}

impl Zone {
    /// The zone before the caches are listed.
    pub fn pending(origin: Name) -> Zone {
        let mut zone = Zone::build(origin, 0, &[], &[]);
        zone.synced = false;
        zone
    }

    pub fn synced(&self) -> bool {
        self.synced
    }

    /// An index of these Services and EndpointSlices; `serial` is the SOA's serial number.
    /// Objects with names that cannot be DNS labels are left out.
    pub fn build(
        origin: Name,
        serial: u32,
        services: &[Arc<Service>],
        slices: &[Arc<EndpointSlice>],
    ) -> Zone {
        let mut zone = Zone {
            origin,
            services: HashMap::new(),
            namespaces: HashSet::new(),
            reverse: HashMap::new(),
            serial,
            synced: true,
        };
        for service in services {
            if let Some((key, entry)) = entry(service) {
                zone.namespaces.insert(key.0.clone());
                zone.services.insert(key, entry);
            }
        }
        for slice in slices {
            zone.add_slice(slice);
        }
        let mut keys: Vec<(String, String)> = zone.services.keys().cloned().collect();
        keys.sort();
        for (ns, name) in keys {
            let Some(service) = zone.name(&[&name, &ns, "svc"]) else {
                continue;
            };
            let Some(entry) = zone.services.get_mut(&(ns, name)) else {
                continue;
            };
            entry.endpoints.sort_by_key(|e| e.ip);
            entry.endpoints.dedup_by_key(|e| e.ip);
            if let Kind::ClusterIp(ips) = &entry.kind {
                for ip in ips {
                    zone.reverse.entry(*ip).or_insert_with(|| service.clone());
                }
            }
            for endpoint in &entry.endpoints {
                if let Ok(name) = service.prepend_label(endpoint.host.as_str()) {
                    zone.reverse.entry(endpoint.ip).or_insert(name);
                }
            }
        }
        zone
    }

    /// The ready endpoints of one EndpointSlice, added to its Service.
    fn add_slice(&mut self, slice: &EndpointSlice) {
        if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
            return;
        }
        let ns = slice.metadata.namespace.clone().unwrap_or_default();
        let Some(service) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        else {
            return;
        };
        let Some(entry) = self.services.get_mut(&(ns, service.clone())) else {
            return;
        };
        let ports: Vec<Port> = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| port(p.name.as_deref(), p.protocol.as_deref(), p.port))
            .collect();
        for endpoint in &slice.endpoints {
            let ready = endpoint.conditions.as_ref().and_then(|c| c.ready) != Some(false);
            if !ready && !entry.publish_not_ready {
                continue;
            }
            for ip in endpoint.addresses.iter().filter_map(|a| a.parse().ok()) {
                let host = match endpoint.hostname.as_deref() {
                    Some(h) if is_dns1123_label(h) => h.to_string(),
                    _ => dashed(ip),
                };
                entry.endpoints.push(Endpoint {
                    ip,
                    host,
                    ports: ports.clone(),
                });
            }
        }
    }

    /// The SOA record of the zone (the authority section of negative answers).
    pub fn soa(&self) -> Record {
        let name = |label: &str| {
            self.origin
                .prepend_label(label)
                .unwrap_or_else(|_| self.origin.clone())
        };
        let soa = SOA::new(
            name("ns.dns"),
            name("hostmaster"),
            self.serial,
            7200,
            1800,
            86400,
            TTL,
        );
        Record::from_rdata(self.origin.clone(), TTL, RData::SOA(soa))
    }

    /// The answer to a question of type `qtype` about `name`.
    pub fn answer(&self, name: &Name, qtype: RecordType) -> Answer {
        let lower = name.to_lowercase();
        if !self.origin.zone_of(&lower) {
            return self.reverse_answer(name, &lower, qtype);
        }
        let inside = usize::from(lower.num_labels() - self.origin.num_labels());
        let labels: Vec<String> = lower
            .iter()
            .take(inside)
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        match labels.as_slice() {
            [] if qtype == RecordType::SOA => Answer::records(vec![self.soa()]),
            [] | ["svc" | "pod"] => Answer::NoData,
            [ns, "svc"] if self.namespaces.contains(*ns) => Answer::NoData,
            [service, ns, "svc"] => self.service(name, ns, service, qtype),
            [port, protocol, service, ns, "svc"] => {
                match (port.strip_prefix('_'), protocol.strip_prefix('_')) {
                    (Some(port), Some(protocol)) => {
                        self.port(name, ns, service, port, protocol, qtype)
                    }
                    _ => Answer::NxDomain,
                }
            }
            [host, service, ns, "svc"] => self.endpoint(name, ns, service, host, qtype),
            _ => Answer::NxDomain,
        }
    }

    /// PTR records for the cluster's addresses; other reverse names and names outside the
    /// zone go upstream.
    fn reverse_answer(&self, name: &Name, lower: &Name, qtype: RecordType) -> Answer {
        let Ok(net) = lower.parse_arpa_name() else {
            return Answer::Elsewhere;
        };
        if net.prefix_len() != net.max_prefix_len() {
            return Answer::Elsewhere;
        }
        match self.reverse.get(&net.addr()) {
            Some(target) if qtype == RecordType::PTR => {
                Answer::records(vec![record(name, RData::PTR(PTR(target.clone())))])
            }
            Some(_) => Answer::NoData,
            None => Answer::Elsewhere,
        }
    }

    /// `SERVICE.NS.svc.DOMAIN`.
    fn service(&self, name: &Name, ns: &str, service: &str, qtype: RecordType) -> Answer {
        let Some(entry) = self.entry(ns, service) else {
            return Answer::NxDomain;
        };
        let ips: Vec<IpAddr> = match &entry.kind {
            Kind::External(target) => {
                return Answer::records(vec![record(name, RData::CNAME(CNAME(target.clone())))]);
            }
            Kind::ClusterIp(ips) => ips.clone(),
            // A headless Service without ready endpoints has no name (CoreDNS: NXDOMAIN).
            Kind::Headless if entry.endpoints.is_empty() => return Answer::NxDomain,
            Kind::Headless => entry.endpoints.iter().map(|e| e.ip).collect(),
        };
        match qtype {
            RecordType::A | RecordType::AAAA => Answer::records(addresses(name, &ips, qtype)),
            RecordType::SRV => self.srv(name, ns, service, entry, |_| true),
            _ => Answer::NoData,
        }
    }

    /// `_PORT._PROTOCOL.SERVICE.NS.svc.DOMAIN`: SRV records of one named port.
    fn port(
        &self,
        name: &Name,
        ns: &str,
        service: &str,
        port: &str,
        protocol: &str,
        qtype: RecordType,
    ) -> Answer {
        let Some(entry) = self.entry(ns, service) else {
            return Answer::NxDomain;
        };
        let wanted = |p: &Port| p.name == port && p.protocol == protocol;
        let exists = match entry.kind {
            Kind::ClusterIp(_) => entry.ports.iter().any(wanted),
            Kind::Headless => entry.endpoints.iter().any(|e| e.ports.iter().any(wanted)),
            Kind::External(_) => false,
        };
        match (exists, qtype) {
            (false, _) => Answer::NxDomain,
            (true, RecordType::SRV) => self.srv(name, ns, service, entry, wanted),
            (true, _) => Answer::NoData,
        }
    }

    /// SRV records of a Service's named ports that `wanted` picks: one per port pointing at the
    /// Service for a ClusterIP, one per endpoint and port pointing at the endpoint for a
    /// headless Service; their addresses go in the additional section.
    fn srv(
        &self,
        name: &Name,
        ns: &str,
        service: &str,
        entry: &Entry,
        wanted: impl Fn(&Port) -> bool,
    ) -> Answer {
        let Some(service_name) = self.name(&[service, ns, "svc"]) else {
            return Answer::NoData;
        };
        let mut targets: Vec<(Name, u16, Vec<IpAddr>)> = Vec::new();
        match &entry.kind {
            Kind::ClusterIp(ips) => {
                for port in entry.ports.iter().filter(|p| wanted(p)) {
                    targets.push((service_name.clone(), port.port, ips.clone()));
                }
            }
            Kind::Headless => {
                for endpoint in &entry.endpoints {
                    let Ok(target) = service_name.prepend_label(endpoint.host.as_str()) else {
                        continue;
                    };
                    for port in endpoint.ports.iter().filter(|p| wanted(p)) {
                        targets.push((target.clone(), port.port, vec![endpoint.ip]));
                    }
                }
            }
            Kind::External(_) => {}
        }
        targets.truncate(MAX_RECORDS);
        let weight = u16::try_from(100 / targets.len().max(1))
            .unwrap_or(1)
            .max(1);
        let answers = targets
            .iter()
            .map(|(target, port, _)| {
                record(name, RData::SRV(SRV::new(0, weight, *port, target.clone())))
            })
            .collect();
        let mut additionals: Vec<Record> = Vec::new();
        for (target, _, ips) in &targets {
            if additionals.iter().any(|r| r.name == *target) {
                continue;
            }
            additionals.extend(addresses(target, ips, RecordType::A));
            additionals.extend(addresses(target, ips, RecordType::AAAA));
        }
        additionals.truncate(MAX_RECORDS);
        Answer::with_additionals(answers, additionals)
    }

    /// `HOST.SERVICE.NS.svc.DOMAIN`: the endpoint with that hostname (or dashed address).
    fn endpoint(
        &self,
        name: &Name,
        ns: &str,
        service: &str,
        host: &str,
        qtype: RecordType,
    ) -> Answer {
        let Some(entry) = self.entry(ns, service) else {
            return Answer::NxDomain;
        };
        let ips: Vec<IpAddr> = entry
            .endpoints
            .iter()
            .filter(|e| e.host == host)
            .map(|e| e.ip)
            .collect();
        if ips.is_empty() {
            return Answer::NxDomain;
        }
        match qtype {
            RecordType::A | RecordType::AAAA => Answer::records(addresses(name, &ips, qtype)),
            _ => Answer::NoData,
        }
    }

    fn entry(&self, ns: &str, service: &str) -> Option<&Entry> {
        self.services.get(&(ns.to_string(), service.to_string()))
    }

    /// `labels` followed by the cluster domain.
    fn name(&self, labels: &[&str]) -> Option<Name> {
        labels
            .iter()
            .rev()
            .try_fold(self.origin.clone(), |name, label| {
                name.prepend_label(*label)
            })
            .ok()
    }
}

/// A Service's key and entry; `None` for one with a name that cannot be a DNS label, an
/// ExternalName that is not a DNS name, or no ClusterIP yet.
fn entry(service: &Service) -> Option<((String, String), Entry)> {
    let ns = service.metadata.namespace.clone()?;
    let name = service.metadata.name.clone()?;
    if !is_dns1123_label(&ns) || !is_dns1123_label(&name) {
        return None;
    }
    let spec = service.spec.as_ref()?;
    let kind = if spec.type_.as_deref() == Some("ExternalName") {
        let target = spec.external_name.as_deref()?.trim_end_matches('.');
        if !is_dns1123_subdomain(&target.to_lowercase()) {
            return None;
        }
        Kind::External(Name::from_ascii(format!("{target}.")).ok()?)
    } else if spec.cluster_ip.as_deref() == Some("None") {
        Kind::Headless
    } else {
        let listed = spec.cluster_ips.iter().flatten();
        let ips: Vec<IpAddr> = listed
            .chain(spec.cluster_ip.iter())
            .filter_map(|ip| ip.parse().ok())
            .fold(Vec::new(), |mut ips, ip| {
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
                ips
            });
        if ips.is_empty() {
            return None;
        }
        Kind::ClusterIp(ips)
    };
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| port(p.name.as_deref(), p.protocol.as_deref(), Some(p.port)))
        .collect();
    let entry = Entry {
        kind,
        ports,
        endpoints: Vec::new(),
        publish_not_ready: spec.publish_not_ready_addresses == Some(true),
    };
    Some(((ns, name), entry))
}

/// A named port with a known protocol and a port number in range.
fn port(name: Option<&str>, protocol: Option<&str>, port: Option<i32>) -> Option<Port> {
    let name = name.filter(|n| is_dns1123_label(n))?;
    let protocol = match protocol.unwrap_or("TCP") {
        "TCP" => "tcp",
        "UDP" => "udp",
        "SCTP" => "sctp",
        _ => return None,
    };
    Some(Port {
        name: name.to_string(),
        protocol: protocol.to_string(),
        port: u16::try_from(port?).ok().filter(|p| *p > 0)?,
    })
}

/// An address as a DNS label: `10-244-0-5`, or dashes for the colons of an IPv6 address.
fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => ip.to_string().replace('.', "-"),
        IpAddr::V6(ip) => ip.to_string().replace(':', "-"),
    }
}

/// A or AAAA records (as `qtype` asks) of those of `ips` in that family.
fn addresses(name: &Name, ips: &[IpAddr], qtype: RecordType) -> Vec<Record> {
    ips.iter()
        .filter_map(|ip| match (ip, qtype) {
            (IpAddr::V4(ip), RecordType::A) => Some(RData::A(A(*ip))),
            (IpAddr::V6(ip), RecordType::AAAA) => Some(RData::AAAA(AAAA(*ip))),
            _ => None,
        })
        .take(MAX_RECORDS)
        .map(|data| record(name, data))
        .collect()
}

fn record(name: &Name, data: RData) -> Record {
    Record::from_rdata(name.clone(), TTL, data)
}

#[cfg(test)]
mod tests;
