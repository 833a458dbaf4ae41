//! The cluster-wide settings of the host: the pod network, the service IP range, how long nodes may stay silent, default tolerations, the default Pod Security level.

use std::net::Ipv4Addr;
use std::str::FromStr;
use std::time::Duration;

/// A setting that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0:?} is not an IPv4 CIDR of /8 to /24 (e.g. 10.244.0.0/16)")]
    Cidr(String),
    #[error("{0:?} is not a duration (e.g. 40s, 2m, 1h)")]
    Duration(String),
}

/// What the host's node controllers and admission need to know about the cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The pod network; each node gets the next free /24 of it as `spec.podCIDR`.
    pub cluster_cidr: ClusterCidr,
    /// How long a node may go without a heartbeat before it is marked unreachable.
    pub node_monitor_grace_period: Duration,
    /// How long pods tolerate a not-ready or unreachable node unless they say otherwise.
    pub default_toleration_seconds: i64,
    /// How long an Event is kept after it was last seen.
    pub event_ttl: Duration,
    /// The cluster CA's certificate (PEM), published in every namespace as the `kube-root-ca.crt`
    /// ConfigMap; `None` publishes nothing (servers without TLS, in tests).
    pub root_ca: Option<String>,
    /// Where Services get their cluster IPs (kubeadm's `--service-cidr`).
    pub service_range: ServiceRange,
    /// The Pod Security level a namespace without `pod-security.kubernetes.io/*` labels
    /// enforces, warns and audits at (`kube-system` excepted: it is `privileged`).
    pub pod_security: crate::registry::PodSecurityLevel,
    /// Signs and verifies ServiceAccount tokens; `None` serves no TokenRequest and accepts no
    /// ServiceAccount token (servers without a data directory, in tests).
    pub service_accounts: Option<std::sync::Arc<crate::auth::token::TokenIssuer>>,
    /// The cluster CA, signing approved node certificate requests; `None` signs none (servers
    /// without a data directory, in tests).
    pub certificate_authority: Option<std::sync::Arc<crate::certificates::Authority>>,
    /// The client certificate and key (PEM, one after the other) presented to node agents:
    /// `CN=kube-apiserver-kubelet-client` from the cluster CA, issued at start and kept in
    /// memory only; `None` presents none (servers without a data directory, in tests).
    pub kubelet_client: Option<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            cluster_cidr: ClusterCidr::from_str("10.244.0.0/16").expect("a valid CIDR"),
            node_monitor_grace_period: Duration::from_secs(40),
            default_toleration_seconds: 300,
            event_ttl: Duration::from_secs(3600),
            root_ca: None,
            service_range: ServiceRange::default(),
            pod_security: crate::registry::PodSecurityLevel::Baseline,
            service_accounts: None,
            certificate_authority: None,
            kubelet_client: None,
        }
    }
}

/// The first address and prefix length of an IPv4 CIDR whose prefix is in `bits`, the host bits
/// cleared.
pub(crate) fn ipv4_cidr(cidr: &str, bits: std::ops::RangeInclusive<u32>) -> Option<(u32, u32)> {
    let (ip, prefix) = cidr.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let prefix: u32 = prefix.parse().ok().filter(|b| bits.contains(b))?;
    Some((u32::from(ip) & !(u32::MAX >> prefix), prefix))
}

/// The cluster's pod network, cut into one /24 per node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterCidr {
    base: u32,
    prefix: u32,
}

/// The prefix length of a node's pod CIDR.
const NODE_PREFIX: u32 = 24;

impl ClusterCidr {
    /// How many node CIDRs the network holds.
    pub fn subnets(&self) -> u32 {
        1 << (NODE_PREFIX - self.prefix)
    }

    /// Node CIDR number `index` (`10.244.3.0/24` for 3 in `10.244.0.0/16`).
    pub fn subnet(&self, index: u32) -> String {
        let first = Ipv4Addr::from(self.base + (index << (32 - NODE_PREFIX)));
        format!("{first}/{NODE_PREFIX}")
    }

    /// The number of a node CIDR of this network, if it is one.
    pub fn index_of(&self, cidr: &str) -> Option<u32> {
        let (first, _) = ipv4_cidr(cidr, NODE_PREFIX..=NODE_PREFIX)?;
        let offset = first.checked_sub(self.base)? >> (32 - NODE_PREFIX);
        (offset < self.subnets()).then_some(offset)
    }
}

impl std::fmt::Display for ClusterCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

impl FromStr for ClusterCidr {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let (base, prefix) = ipv4_cidr(s, 8..=NODE_PREFIX).ok_or(ConfigError::Cidr(s.into()))?;
        Ok(ClusterCidr { base, prefix })
    }
}

/// A duration as Kubernetes flags write them: `40s`, `500ms`, `2m`, `1h` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, ConfigError> {
    let bad = || ConfigError::Duration(s.into());
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(bad()),
    }
}

/// The service IP range (a CIDR); `.1` is the `kubernetes` Service's.
#[derive(Clone, Copy, Debug)]
pub struct ServiceRange {
    base: u32,
    size: u32,
}

impl ServiceRange {
    pub fn parse(cidr: &str) -> Option<ServiceRange> {
        let (base, bits) = ipv4_cidr(cidr, 8..=30)?;
        Some(ServiceRange {
            base,
            size: 1u32 << (32 - bits),
        })
    }

    pub(crate) fn contains(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        ip > self.base && ip < self.base + self.size - 1
    }

    /// The addresses a Service that names none may get, as offsets from the network address:
    /// the upper band first, then the lower one (the network address, `.1` of the apiserver's
    /// Service and the broadcast address are never given). The lower band (`min(max(16,
    /// size/16), 256)` addresses, KEP-3070) is left to Services that ask for an address, such as
    /// kube-dns's `.10`, for as long as the upper band has room.
    pub(crate) fn dynamic_bands(&self) -> [std::ops::Range<u32>; 2] {
        let last = self.size - 1;
        let static_band = (self.size / 16).clamp(16, 256).min(last);
        [static_band..last, 2.min(static_band)..static_band]
    }

    /// The address at `offset` from the network address.
    pub(crate) fn at(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base + offset)
    }

    /// The first usable address, the `kubernetes` Service's.
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    /// The tenth address, the `kube-dns` Service's (10.96.0.10, where charts and tools expect
    /// the cluster DNS); `None` for a range too small to hold it.
    pub fn dns(&self) -> Option<Ipv4Addr> {
        (self.size > 11).then(|| Ipv4Addr::from(self.base + 10))
    }
}

impl std::fmt::Display for ServiceRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bits = 32 - self.size.trailing_zeros();
        write!(f, "{}/{bits}", Ipv4Addr::from(self.base))
    }
}

impl FromStr for ServiceRange {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        ServiceRange::parse(s).ok_or(ConfigError::Cidr(s.into()))
    }
}

impl Default for ServiceRange {
    fn default() -> Self {
        ServiceRange::parse("10.96.0.0/12").expect("a valid CIDR")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_dns_is_the_tenth_address_of_a_range_that_holds_it() {
        let range = ServiceRange::default();
        assert_eq!(range.dns(), Some(Ipv4Addr::new(10, 96, 0, 10)));
        assert!(range.contains(Ipv4Addr::new(10, 96, 0, 10)));
        let small = ServiceRange::parse("10.0.0.0/29").expect("a valid CIDR");
        assert_eq!(small.dns(), None, "8 addresses have no tenth");
        let just = ServiceRange::parse("10.0.0.0/28").expect("a valid CIDR");
        assert!(just.dns().is_some_and(|ip| just.contains(ip)));
    }

    #[test]
    fn addresses_are_given_from_the_upper_band_first() {
        let [upper, lower] = ServiceRange::default().dynamic_bands();
        assert_eq!((upper.start, upper.end), (256, (1 << 20) - 1));
        assert_eq!(
            (lower.start, lower.end),
            (2, 256),
            "10.96.0.10 is in the static band"
        );
        let [upper, lower] = ServiceRange::parse("10.0.0.0/24")
            .expect("valid")
            .dynamic_bands();
        assert_eq!((upper, lower), (16..255, 2..16));
        let [upper, lower] = ServiceRange::parse("10.0.0.0/28")
            .expect("valid")
            .dynamic_bands();
        assert_eq!(
            (upper, lower),
            (15..15, 2..15),
            "too small for two bands: all static"
        );
    }

    #[test]
    fn a_service_range_reads_and_prints_as_a_cidr() {
        let range = ServiceRange::from_str("10.100.7.0/16").expect("valid");
        assert_eq!(range.to_string(), "10.100.0.0/16");
        assert_eq!(range.first(), Ipv4Addr::new(10, 100, 0, 1));
        assert!(ServiceRange::from_str("10.96.0.0/31").is_err());
    }

    #[test]
    fn node_cidrs_of_a_cluster_cidr() {
        let net = ClusterCidr::from_str("10.244.7.9/16").expect("valid");
        assert_eq!(net.subnet(0), "10.244.0.0/24", "the host bits cleared");
        assert_eq!(net.to_string(), "10.244.0.0/16");
        assert_eq!(net.subnets(), 256);
        assert_eq!(net.subnet(3), "10.244.3.0/24");
        assert_eq!(net.index_of("10.244.255.0/24"), Some(255));
        assert_eq!(net.index_of("10.245.0.0/24"), None);
        assert_eq!(net.index_of("10.244.1.0/25"), None);
        assert!(ClusterCidr::from_str("10.0.0.0/25").is_err());
        assert_eq!(
            ClusterCidr::from_str("10.0.0.0/8")
                .expect("valid")
                .subnets(),
            65536
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("40s").ok(), Some(Duration::from_secs(40)));
        assert_eq!(parse_duration("2m").ok(), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h").ok(), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_duration("250ms").ok(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_duration("90").ok(), Some(Duration::from_secs(90)));
        assert!(parse_duration("s").is_err() && parse_duration("4d").is_err());
    }
}
