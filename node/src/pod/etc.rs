//! The pod's `/etc/resolv.conf`, `/etc/hosts` and hostname, made as the kubelet makes them
//! (`pkg/kubelet/network/dns`, `managedHostsFileContent`, `GeneratePodHostNameAndDomain`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Pod, PodDNSConfig};
use wasmkube_model::validation::{is_dns1123_label, is_dns1123_subdomain};

use crate::spec::Bind;

/// The kubelet's limits on the pod's resolv.conf: nameservers, search domains, and characters
/// of the search line (`MaxDNSNameservers`, `MaxDNSSearchPathsExpanded`,
/// `MaxDNSSearchListCharsExpanded`).
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;
const MAX_SEARCH_CHARS: usize = 2048;
/// The longest search domain a resolver takes (glibc aborts on longer ones).
const MAX_SEARCH_LEN: usize = 253;
/// The longest UTS hostname, and the longest FQDN `setHostnameAsFQDN` may set.
const MAX_HOSTNAME_LEN: usize = 63;
const MAX_FQDN_LEN: usize = 64;
/// The longest resolver option (`ndots:5`, `single-request-reopen`).
const MAX_OPTION_LEN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum EtcError {
    #[error("{field}: Invalid value: {value:?}: {reason}")]
    Invalid {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error(
        "failed to construct FQDN from pod hostname and cluster domain, FQDN {0} is too long ({MAX_FQDN_LEN} characters is the max, {len} characters requested)",
        len = .0.len()
    )]
    FqdnTooLong(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn invalid(field: &'static str, value: &str, reason: &'static str) -> EtcError {
    EtcError::Invalid {
        field,
        value: value.to_string(),
        reason,
    }
}

/// The lines of a resolv.conf that matter to pods.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResolvConf {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl ResolvConf {
    /// The node's resolv.conf as the kubelet reads it: every `nameserver`, the last `search`,
    /// every `options`.
    pub fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf::default();
        for line in text.lines() {
            let mut fields = line.split_whitespace();
            match fields.next() {
                Some("nameserver") => conf.nameservers.extend(fields.next().map(str::to_string)),
                Some("search") => conf.searches = fields.map(str::to_string).collect(),
                Some("options") => conf.options.extend(fields.map(str::to_string)),
                _ => {}
            }
        }
        conf
    }

    /// The file, as containerd writes it for a pod sandbox.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if !self.searches.is_empty() {
            text += &format!("search {}\n", self.searches.join(" "));
        }
        for server in &self.nameservers {
            text += &format!("nameserver {server}\n");
        }
        if !self.options.is_empty() {
            text += &format!("options {}\n", self.options.join(" "));
        }
        text
    }
}

/// What the node knows that pods' DNS settings derive from.
#[derive(Clone, Debug, Default)]
pub struct NodeDns {
    /// The nameservers of `ClusterFirst` pods (the kubelet's `--cluster-dns`).
    pub cluster_dns: Vec<IpAddr>,
    /// The cluster domain (`--cluster-domain`), e.g. `cluster.local`.
    pub domain: String,
    /// The node's resolv.conf: the `Default` policy's.
    pub host: ResolvConf,
    /// The node's `/etc/hosts`: a hostNetwork pod's starts from it.
    pub hosts: String,
}

/// The pod's resolv.conf for its `dnsPolicy` and `dnsConfig` (the kubelet's `GetPodDNS`).
pub fn resolv_conf(pod: &Pod, dns: &NodeDns) -> Result<String, EtcError> {
    let spec = pod.spec.clone().unwrap_or_default();
    let host_network = spec.host_network == Some(true);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let cluster = match policy {
        "None" => None,
        "ClusterFirstWithHostNet" => Some(true),
        "ClusterFirst" => Some(!host_network),
        "Default" => Some(false),
        other => return Err(invalid("spec.dnsPolicy", other, "not a DNS policy")),
    };
    let mut conf = match cluster {
        None => ResolvConf::default(),
        Some(true) if !dns.cluster_dns.is_empty() => {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            let domain = &dns.domain;
            let mut searches = vec![
                format!("{ns}.svc.{domain}"),
                format!("svc.{domain}"),
                domain.clone(),
            ];
            searches.extend(dns.host.searches.iter().cloned());
            ResolvConf {
                nameservers: dns.cluster_dns.iter().map(IpAddr::to_string).collect(),
                searches: unique(searches),
                options: vec!["ndots:5".into()],
            }
        }
        // No cluster DNS: ClusterFirst falls back to the node's, as in the kubelet.
        Some(_) => dns.host.clone(),
    };
    if let Some(config) = &spec.dns_config {
        append(&mut conf, config)?;
    }
    conf.nameservers.truncate(MAX_NAMESERVERS);
    conf.searches = within_limits(conf.searches);
    Ok(conf.render())
}

/// Adds the pod's own `dnsConfig` (the kubelet's `appendDNSConfig`): its values are checked,
/// since they become lines of a file.
fn append(conf: &mut ResolvConf, config: &PodDNSConfig) -> Result<(), EtcError> {
    for server in config.nameservers.iter().flatten() {
        let ip: IpAddr = server.parse().map_err(|_| {
            invalid(
                "spec.dnsConfig.nameservers",
                server,
                "must be a valid IP address",
            )
        })?;
        conf.nameservers.push(ip.to_string());
    }
    for search in config.searches.iter().flatten() {
        if !is_dns1123_subdomain(search.strip_suffix('.').unwrap_or(search)) {
            let reason = "must be a lowercase RFC 1123 subdomain";
            return Err(invalid("spec.dnsConfig.searches", search, reason));
        }
        conf.searches.push(search.clone());
    }
    conf.nameservers = unique(std::mem::take(&mut conf.nameservers));
    conf.searches = unique(std::mem::take(&mut conf.searches));
    for option in config.options.iter().flatten() {
        let name = option.name.as_deref().unwrap_or_default();
        let value = option.value.as_deref();
        for part in std::iter::once(name).chain(value) {
            let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
            if part.len() > MAX_OPTION_LEN || !part.chars().all(allowed) {
                let reason = "must be letters, digits, '-', '_' or '.'";
                return Err(invalid("spec.dnsConfig.options", part, reason));
            }
        }
        if name.is_empty() {
            return Err(invalid("spec.dnsConfig.options", name, "must not be empty"));
        }
        let rendered = match value {
            Some(value) if !value.is_empty() => format!("{name}:{value}"),
            _ => name.to_string(),
        };
        let same = |o: &String| o.split(':').next() == Some(name);
        match conf.options.iter_mut().find(|o| same(o)) {
            Some(existing) => *existing = rendered,
            None => conf.options.push(rendered),
        }
    }
    Ok(())
}

/// The search domains the kubelet keeps (`formDNSSearchFitsLimits`): the first 32, none longer
/// than a DNS name, and the last ones dropped until the line is at most 2048 characters.
fn within_limits(mut searches: Vec<String>) -> Vec<String> {
    searches.truncate(MAX_SEARCHES);
    searches.retain(|s| s.len() <= MAX_SEARCH_LEN);
    while searches.join(" ").len() > MAX_SEARCH_CHARS {
        searches.pop();
    }
    searches
}

fn unique(items: Vec<String>) -> Vec<String> {
    let mut kept: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        if !kept.contains(&item) {
            kept.push(item);
        }
    }
    kept
}

/// The pod's hostname, its domain when it has a `subdomain`, and the UTS hostname its
/// containers see.
#[derive(Clone, Debug, PartialEq)]
pub struct Names {
    pub hostname: String,
    /// `SUBDOMAIN.NS.svc.DOMAIN`.
    pub domain: Option<String>,
    /// The hostname, or the FQDN with `setHostnameAsFQDN`.
    pub uts: String,
}

impl Names {
    /// The kubelet's `GeneratePodHostNameAndDomain` and `GetPodHostnameAndFQDN`.
    pub fn of(pod: &Pod, cluster_domain: &str) -> Result<Names, EtcError> {
        let spec = pod.spec.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let hostname = match spec.hostname.as_deref().filter(|h| !h.is_empty()) {
            Some(h) if !is_dns1123_label(h) => {
                return Err(invalid("spec.hostname", h, "must be a DNS label"));
            }
            Some(h) => h.to_string(),
            None if !is_dns1123_subdomain(&name) => {
                return Err(invalid("metadata.name", &name, "must be a DNS subdomain"));
            }
            None => name,
        };
        let hostname = truncate(&hostname)?;
        let domain = match spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
            Some(s) if !is_dns1123_label(s) => {
                return Err(invalid("spec.subdomain", s, "must be a DNS label"));
            }
            Some(s) => {
                let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
                Some(format!("{s}.{ns}.svc.{cluster_domain}"))
            }
            None => None,
        };
        let uts = match &domain {
            Some(domain) if spec.set_hostname_as_fqdn == Some(true) => {
                let fqdn = format!("{hostname}.{domain}");
                if fqdn.len() > MAX_FQDN_LEN {
                    return Err(EtcError::FqdnTooLong(fqdn));
                }
                fqdn
            }
            _ => hostname.clone(),
        };
        Ok(Names {
            hostname,
            domain,
            uts,
        })
    }
}

/// A hostname cut to 63 characters with trailing `-` and `.` removed (the kubelet's
/// `truncatePodHostnameIfNeeded`).
fn truncate(hostname: &str) -> Result<String, EtcError> {
    if hostname.len() <= MAX_HOSTNAME_LEN {
        return Ok(hostname.to_string());
    }
    let cut = hostname[..MAX_HOSTNAME_LEN].trim_end_matches(['-', '.']);
    if cut.is_empty() {
        return Err(invalid("spec.hostname", hostname, "nothing left once cut"));
    }
    Ok(cut.to_string())
}

/// The pod's `/etc/hosts`: the kubelet's managed file with the pod's address and names, or
/// for a hostNetwork pod the node's own file; then the pod's `hostAliases`.
pub fn hosts(pod: &Pod, names: &Names, ip: &str, dns: &NodeDns) -> Result<String, EtcError> {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut text = if spec.host_network == Some(true) {
        format!(
            "# Kubernetes-managed hosts file (host network).\n{}",
            dns.hosts
        )
    } else {
        let mut text = String::from(
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
        );
        let hostname = &names.hostname;
        if !ip.is_empty() {
            text += &match &names.domain {
                Some(domain) => format!("{ip}\t{hostname}.{domain}\t{hostname}\n"),
                None => format!("{ip}\t{hostname}\n"),
            };
        }
        text
    };
    let aliases = spec.host_aliases.unwrap_or_default();
    if !aliases.is_empty() {
        text += "\n# Entries added by HostAliases.\n";
    }
    for alias in aliases {
        let ip: IpAddr = alias.ip.parse().map_err(|_| {
            invalid(
                "spec.hostAliases.ip",
                &alias.ip,
                "must be a valid IP address",
            )
        })?;
        let hostnames = alias.hostnames.unwrap_or_default();
        if let Some(bad) = hostnames.iter().find(|h| !is_dns1123_subdomain(h)) {
            let reason = "must be a lowercase RFC 1123 subdomain";
            return Err(invalid("spec.hostAliases.hostnames", bad, reason));
        }
        text += &format!("{ip}\t{}\n", hostnames.join("\t"));
    }
    Ok(text)
}

/// Writes the pod's `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` into `pod_dir` and
/// returns their bind mounts.
pub fn write(
    pod_dir: &Path,
    hosts: String,
    hostname: &str,
    resolv_conf: String,
) -> Result<Vec<Bind>, EtcError> {
    let etc = pod_dir.join("etc");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EtcError::Io { path, source }
    };
    std::fs::create_dir_all(&etc).map_err(io(&etc))?;
    let files = [
        ("hosts", hosts),
        ("hostname", format!("{hostname}\n")),
        ("resolv.conf", resolv_conf),
    ];
    let mut binds = Vec::new();
    for (name, text) in files {
        let path = etc.join(name);
        std::fs::write(&path, text).map_err(io(&path))?;
        binds.push(Bind {
            source: path,
            destination: format!("/etc/{name}"),
            read_only: false,
        });
    }
    Ok(binds)
}

#[cfg(test)]
mod tests;
