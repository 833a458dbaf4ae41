//! The service proxy: each Service's cluster IP, node ports and external IPs programmed into an
//! nftables table of this agent, as kube-proxy's nftables mode does, one Service at a time.

mod conntrack;
mod nft;
mod rules;
mod service;
mod table;

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use conntrack::Udp;
pub use conntrack::{Conntrack, ConntrackCommand, ConntrackError, Stale};
pub use nft::{Nft, NftCommand, NftError};
pub use service::NODE_PORTS;
use service::SERVICE_NAME_LABEL;
pub use table::{Map, Programme};

use crate::informer::{Informer, Key, ServiceCaches, key_of};

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error("{0:?} is not an IPv4 CIDR")]
    Cidr(String),
    #[error("bridge name {0:?} cannot name a table (letters, digits, '-' and '_', at most 15)")]
    Bridge(String),
}

/// How long to wait before reading the table back and trying again after nft refused a batch.
const RETRY: Duration = Duration::from_secs(1);

/// An IPv4 network (`10.96.0.0/12`), host bits clear.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    base: u32,
    prefix: u32,
}

impl Net {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX.checked_shl(32 - self.prefix).unwrap_or(0);
        u32::from(ip) & mask == self.base
    }
}

impl FromStr for Net {
    type Err = ProxyError;

    fn from_str(s: &str) -> Result<Net, ProxyError> {
        let (base, prefix) =
            crate::registration::ipv4_net(s).ok_or_else(|| ProxyError::Cidr(s.into()))?;
        Ok(Net { base, prefix })
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

/// What the proxy of one agent programs for.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `wasmkube-BRIDGE`: one table per agent, as several share a machine's network namespace.
    pub table: String,
    pub node_name: String,
    /// The bridge of this node's pods: only their traffic to cluster IPs is this table's.
    pub bridge: String,
    pub pod_network: Net,
    pub service_range: Net,
}

impl Settings {
    pub fn new(
        node_name: &str,
        bridge: &str,
        pod_network: &str,
        service_range: &str,
    ) -> Result<Settings, ProxyError> {
        let valid = (1..=15).contains(&bridge.len())
            && bridge.starts_with(|c: char| c.is_ascii_alphabetic())
            && bridge
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(ProxyError::Bridge(bridge.to_string()));
        }
        Ok(Settings {
            table: table_name(bridge),
            node_name: node_name.to_string(),
            bridge: bridge.to_string(),
            pod_network: pod_network.parse()?,
            service_range: service_range.parse()?,
        })
    }
}

/// The table of the agent whose pods are on `bridge`.
pub fn table_name(bridge: &str) -> String {
    format!("wasmkube-{bridge}")
}

/// Runs the proxy of this agent for as long as the process runs.
pub async fn run(caches: ServiceCaches, settings: Settings) {
    bridge_netfilter().await;
    Proxy::new(
        NftCommand,
        ConntrackCommand,
        settings,
        caches.services,
        caches.slices,
    )
    .run()
    .await;
}

/// Bridged traffic through the ip hooks, so that a reply from a pod to a pod on the same bridge
/// is un-NATed (as kube-proxy needs); best effort, the kernel may have it built in.
async fn bridge_netfilter() {
    const SYSCTL: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";
    if !std::path::Path::new(SYSCTL).exists() {
        let _ = crate::command::run("modprobe", &["br_netfilter"]).await;
    }
    if let Err(e) = std::fs::write(SYSCTL, "1") {
        tracing::warn!(error = %e, "turning on br_netfilter: pod-to-pod Service traffic on one bridge may fail");
    }
}

/// The proxy's view: the informers it reads, and what it programmed per Service.
pub struct Proxy<N, C> {
    nft: N,
    conntrack: C,
    settings: Settings,
    services: Arc<Informer<Service>>,
    slices: Arc<Informer<EndpointSlice>>,
    programmed: HashMap<Key, Programme>,
    /// Which Service holds each map key (a second Service asking for it gets nothing).
    owners: HashMap<(Map, String), Key>,
    /// The Service each EndpointSlice was last seen for, to find it again once it is gone.
    slice_service: HashMap<Key, Key>,
    /// Where each Service's UDP traffic goes, to forget the flows a change leaves stale.
    udp: HashMap<Key, Udp>,
}

impl<N: Nft, C: Conntrack> Proxy<N, C> {
    pub fn new(
        nft: N,
        conntrack: C,
        settings: Settings,
        services: Arc<Informer<Service>>,
        slices: Arc<Informer<EndpointSlice>>,
    ) -> Proxy<N, C> {
        Proxy {
            nft,
            conntrack,
            settings,
            services,
            slices,
            programmed: HashMap::new(),
            owners: HashMap::new(),
            slice_service: HashMap::new(),
            udp: HashMap::new(),
        }
    }

    /// Programs the table, then follows the informers' changes, until the task is dropped.
    pub async fn run(mut self) {
        let mut service_changes = self.services.subscribe();
        let mut slice_changes = self.slices.subscribe();
        self.services.synced().await;
        self.slices.synced().await;
        let mut resync = true;
        loop {
            if resync {
                if let Err(e) = self.sync_all().await {
                    tracing::warn!(error = %e, table = %self.settings.table, "programming the service proxy");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
                resync = false;
            }
            let mut changed = BTreeSet::new();
            let first = tokio::select! {
                key = service_changes.recv() => key.map(Change::Service),
                key = slice_changes.recv() => key.map(Change::Slice),
            };
            match first {
                Ok(change) => self.note(change, &mut changed),
                Err(RecvError::Lagged(_)) => resync = true,
                Err(RecvError::Closed) => return,
            }
            resync |= drain(&mut service_changes, |k| {
                self.note(Change::Service(k), &mut changed)
            });
            resync |= drain(&mut slice_changes, |k| {
                self.note(Change::Slice(k), &mut changed)
            });
            if resync {
                continue;
            }
            if let Err(e) = self.sync(changed).await {
                tracing::warn!(error = %e, "updating the service proxy; reading the table back");
                tokio::time::sleep(RETRY).await;
                resync = true;
            }
        }
    }

    /// Adds the Service a change concerns to `changed`.
    fn note(&mut self, change: Change, changed: &mut BTreeSet<Key>) {
        match change {
            Change::Service(key) => {
                changed.insert(key);
            }
            Change::Slice(key) => {
                if let Some(old) = self.slice_service.remove(&key) {
                    changed.insert(old);
                }
                if let Some(service) = self.slices.get(&key).as_deref().and_then(service_of) {
                    self.slice_service.insert(key, service.clone());
                    changed.insert(service);
                }
            }
        }
    }

    /// What the Service `key` asks for now, and where its UDP traffic goes (nothing once it
    /// is gone or unusable).
    fn desired(
        &self,
        key: &str,
        slices: &HashMap<Key, Vec<Arc<EndpointSlice>>>,
    ) -> (Programme, Udp) {
        let Some(service) = self.services.get(key) else {
            return Default::default();
        };
        let own: Vec<&EndpointSlice> = slices
            .get(key)
            .into_iter()
            .flatten()
            .map(Arc::as_ref)
            .collect();
        let s = &self.settings;
        match service::read(&service, &own, &s.node_name, s.service_range) {
            Ok(Some(proxied)) => {
                let mut programme = rules::programme(&proxied, s);
                programme.elements.retain(|element, _| {
                    let owner = self.owners.get(element);
                    let free = owner.is_none_or(|o| o == key);
                    if !free {
                        tracing::warn!(service = key, owner = ?owner, key = element.1, "address and port taken by another Service");
                    }
                    free
                });
                (programme, Udp::of(&proxied))
            }
            Ok(None) => Default::default(),
            Err(e) => {
                tracing::warn!(service = key, error = %e, "a Service the proxy leaves out");
                Default::default()
            }
        }
    }

    /// Every EndpointSlice by the key of its Service.
    fn slices_by_service(&self) -> HashMap<Key, Vec<Arc<EndpointSlice>>> {
        let mut by_service: HashMap<Key, Vec<Arc<EndpointSlice>>> = HashMap::new();
        for slice in self.slices.list() {
            if let Some(service) = service_of(&slice) {
                by_service.entry(service).or_default().push(slice);
            }
        }
        by_service
    }

    /// Writes the changes of the Services `keys` in one transaction.
    async fn sync(&mut self, keys: BTreeSet<Key>) -> Result<(), ProxyError> {
        let slices = self.slices_by_service();
        let mut updates = Vec::new();
        for key in keys {
            let (new, udp) = self.desired(&key, &slices);
            let old = self.programmed.get(&key).cloned().unwrap_or_default();
            let batch = table::diff(&self.settings.table, &old, &new);
            if !batch.is_empty() {
                updates.push((key, old, new, udp, batch));
            }
        }
        let all: String = updates
            .iter()
            .map(|(_, _, _, _, batch)| batch.as_str())
            .collect();
        if all.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.nft.apply(&all).await {
            if updates.len() == 1 {
                return Err(e.into());
            }
            // One Service's batch may be what the kernel refuses (a protocol it lacks): the
            // others still go in, and that one is tried again when it changes. When none goes
            // in, the table is not what the proxy thinks: read it back.
            let mut applied = false;
            let mut stale = BTreeSet::new();
            for (key, old, new, udp, batch) in updates {
                match self.nft.apply(&batch).await {
                    Ok(()) => {
                        stale.extend(self.record(key, &old, new, udp));
                        applied = true;
                    }
                    Err(e) => tracing::warn!(service = %key, error = %e, "rules refused"),
                }
            }
            self.forget(stale).await;
            return if applied { Ok(()) } else { Err(e.into()) };
        }
        let mut stale = BTreeSet::new();
        for (key, old, new, udp, _) in updates {
            stale.extend(self.record(key, &old, new, udp));
        }
        self.forget(stale).await;
        Ok(())
    }

    /// Tells the kernel to forget UDP flows the rules just written left stale (best effort: a
    /// flow not forgotten goes on to where it went until the client stops sending).
    async fn forget(&self, stale: BTreeSet<Stale>) {
        for flows in stale {
            if let Err(e) = self.conntrack.forget(flows).await {
                tracing::warn!(error = %e, "forgetting stale UDP flows");
            }
        }
    }

    /// Adopts what the table holds (made by an earlier run of this agent, or nothing) and brings
    /// it to what every Service asks for, with the fixed parts rewritten, in one transaction.
    async fn sync_all(&mut self) -> Result<(), ProxyError> {
        let listing = self.nft.list(&self.settings.table).await?;
        let existing = listing
            .as_ref()
            .map(Programme::from_listing)
            .unwrap_or_default();
        self.programmed.clear();
        self.owners.clear();
        self.slice_service = self
            .slices
            .list()
            .iter()
            .filter_map(|s| Some((key_of(&s.metadata), service_of(s)?)))
            .collect();
        let slices = self.slices_by_service();
        let mut keys: Vec<Key> = self
            .services
            .list()
            .iter()
            .map(|s| key_of(&s.metadata))
            .collect();
        keys.sort();
        let mut all = Programme::default();
        let mut each = Vec::new();
        let mut udp = HashMap::new();
        for key in keys {
            let (programme, flows) = self.desired(&key, &slices);
            for element in programme.elements.keys() {
                self.owners.insert(element.clone(), key.clone());
            }
            all.extend(programme.clone());
            if flows != Udp::default() {
                udp.insert(key.clone(), flows);
            }
            each.push((key, programme));
        }
        let mut batch = rules::skeleton(&self.settings);
        batch.push_str(&table::diff(&self.settings.table, &existing, &all));
        self.nft.apply(&batch).await?;
        self.programmed = each.into_iter().map(|(k, p)| (k, p.written())).collect();
        // Flows from before a (re)start are left alone: what changed meanwhile is not known.
        self.udp = udp;
        tracing::info!(table = %self.settings.table, services = self.programmed.len(), "service proxy programmed");
        Ok(())
    }

    /// Remembers what the Service `key` now has programmed, the map keys it holds and where its
    /// UDP traffic goes; returns the UDP flows the change left stale.
    fn record(&mut self, key: Key, old: &Programme, new: Programme, udp: Udp) -> Vec<Stale> {
        let stale = Udp::stale(&self.udp.remove(&key).unwrap_or_default(), &udp);
        if udp != Udp::default() {
            self.udp.insert(key.clone(), udp);
        }
        for element in old.elements.keys() {
            if self.owners.get(element) == Some(&key) {
                self.owners.remove(element);
            }
        }
        for element in new.elements.keys() {
            self.owners.insert(element.clone(), key.clone());
        }
        if new == Programme::default() {
            self.programmed.remove(&key);
        } else {
            self.programmed.insert(key, new.written());
        }
        stale
    }
}

/// A changed key from one of the informers.
enum Change {
    Service(Key),
    Slice(Key),
}

/// Takes every change already waiting; `true` when the receiver fell behind (resync).
fn drain(rx: &mut broadcast::Receiver<Key>, mut note: impl FnMut(Key)) -> bool {
    loop {
        match rx.try_recv() {
            Ok(key) => note(key),
            Err(TryRecvError::Lagged(_)) => return true,
            Err(TryRecvError::Empty | TryRecvError::Closed) => return false,
        }
    }
}

/// The key of the Service an EndpointSlice belongs to, by its label.
fn service_of(slice: &EndpointSlice) -> Option<Key> {
    let namespace = slice.metadata.namespace.as_deref()?;
    let service = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some(format!("{namespace}/{service}"))
}

#[cfg(test)]
mod tests;
