//! The node agent: registers the node, then runs a worker for every pod bound to it, adopting
//! the containers a previous agent left running and cleaning up after pods that are gone.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use tokio::sync::watch;

use crate::api::{Api, ApiError, Connection};
use crate::cni::{Cni, CniError};
use crate::console::Consoles;
use crate::containerd::{Containerd, ContainerdError};
use crate::dns::{self, DnsError};
use crate::image::{self, ImageError, registry};
use crate::informer::ServiceCaches;
use crate::pod::etc::{NodeDns, ResolvConf};
use crate::pod::{self, Context, Desired, Worker};
use crate::proxy::{self, ProxyError};
use crate::registration::{self, Machine};
use crate::rotation;
use crate::runtime::{ContainerdRuntime, Found, Runtime, RuntimeError};
use crate::serving::{self, Names, Serving};
use crate::streams::{self, ServeError, Streams};
use crate::watcher::{Change, Watcher};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Containerd(#[from] ContainerdError),
    #[error(transparent)]
    Dns(#[from] DnsError),
    #[error("the pod CIDR {0:?} has no gateway address for the cluster DNS")]
    NoGateway(String),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Network(#[from] CniError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    #[error("node {0} was given no pod CIDR within 30 s (is the host allocating them?)")]
    NoPodCidr(String),
    #[error(
        "node {node} was given the pod CIDR {cidr:?}, which is not inside the cluster's pod network {cluster}"
    )]
    ForeignPodCidr {
        node: String,
        cidr: String,
        cluster: String,
    },
}

/// The default of `--pod-max-pids`: the most processes (and threads) a container may hold, so
/// that a fork bomb in one pod cannot take the node's pid space (the kubelet's default is no
/// limit; 4096 is far above what a service needs and far below `pid_max`).
pub const DEFAULT_POD_MAX_PIDS: i64 = 4096;

/// How the agent is set up.
#[derive(Clone, Debug)]
pub struct Config {
    pub connection: Connection,
    /// The kubeconfig of a node that joined: its client certificate is renewed before it
    /// expires, and the connection switched to the new one.
    pub rotated_kubeconfig: Option<PathBuf>,
    pub node_name: String,
    pub containerd_socket: PathBuf,
    /// The agent's state: pod directories, FIFOs, CNI allocations.
    pub root_dir: PathBuf,
    /// Container logs (the kubelet's `/var/log/pods`).
    pub log_dir: PathBuf,
    pub cluster_cidr: String,
    pub cni_plugin_dir: PathBuf,
    /// The bridge this node's pods hang off (one per node on a machine).
    pub bridge: String,
    /// The node's InternalIP; by default the first global IPv4 address.
    pub node_ip: Option<String>,
    /// The port of the agent's API (logs, exec, port-forward); 0, or a taken port, gets a free one.
    pub agent_port: u16,
    /// Registries (`host[:port]`) pulled from over plain HTTP, besides the loopback ones.
    pub insecure_registries: Vec<String>,
    /// The most processes each container may hold (the kubelet's `--pod-max-pids`); `None`
    /// is no limit.
    pub pod_max_pids: Option<i64>,
    /// The nameservers of `ClusterFirst` pods (the kubelet's `--cluster-dns`): the `kube-dns`
    /// Service's ClusterIP.
    pub cluster_dns: Vec<IpAddr>,
    /// The cluster domain the node's DNS server answers for (`--cluster-domain`).
    pub cluster_domain: String,
    /// Where the node's DNS server forwards other names; empty for the node's resolv.conf.
    pub upstream_dns: Vec<SocketAddr>,
    /// The cluster's service IP range, whose addresses the proxy owns on this node.
    pub service_cidr: String,
}

/// The pod CIDR the host gave the node, waiting for it for up to 30 s. One outside the cluster's
/// pod network is ignored (it would become the bridge's subnet and routes) with a Warning Event
/// on the Node, and waited past like a missing one.
async fn pod_cidr(
    api: &Api,
    name: &str,
    cluster: &str,
    events: &crate::pod::event::Recorder,
) -> Result<String, AgentError> {
    let mut foreign: Option<String> = None;
    for _ in 0..60 {
        if let Some(node) = api.get(&format!("/api/v1/nodes/{name}")).await?
            && let Some(cidr) = node.pointer("/spec/podCIDR").and_then(Value::as_str)
        {
            if registration::within_cluster(cidr, cluster) {
                return Ok(cidr.to_string());
            }
            if foreign.as_deref() != Some(cidr) {
                registration::ignored_pod_cidr(events, name, cidr, cluster);
                foreign = Some(cidr.to_string());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(match foreign {
        Some(cidr) => AgentError::ForeignPodCidr {
            node: name.to_string(),
            cidr,
            cluster: cluster.to_string(),
        },
        None => AgentError::NoPodCidr(name.to_string()),
    })
}

/// Runs the agent until its process ends.
pub async fn run(config: Config) -> Result<(), AgentError> {
    let began = tokio::time::Instant::now();
    let containerd = Containerd::connect(&config.containerd_socket).await?;
    let version = containerd.version().await?;
    let api = Api::new(&config.connection)?;
    if let Some(kubeconfig) = &config.rotated_kubeconfig {
        let (api, path, node) = (api.clone(), kubeconfig.clone(), config.node_name.clone());
        tokio::spawn(rotation::rotate(api, path, node));
    }
    let address = config
        .node_ip
        .clone()
        .unwrap_or_else(registration::host_address);
    let machine = Machine::read(&config.root_dir, address, version);
    let images = image::list(&containerd).await?;
    let listener = streams::bind(config.agent_port).await?;
    let agent_port = listener
        .local_addr()
        .map_or(config.agent_port, |a| a.port());
    let node =
        registration::register(&api, &config.node_name, &machine, &images, agent_port).await?;
    let resolver = Arc::new(serving::Resolver::default());
    match &config.connection.ca_pem {
        Some(ca_pem) => {
            let serving = Serving {
                api: api.clone(),
                path: config.root_dir.join(serving::FILE),
                node: config.node_name.clone(),
                names: Names::of_addresses(&node["status"]["addresses"]),
                ca_pem: ca_pem.clone(),
                resolver: resolver.clone(),
            };
            tokio::spawn(serving.run());
        }
        None => tracing::warn!("no cluster CA: the agent's API gets no serving certificate"),
    }
    tokio::spawn(registration::heartbeat(
        api.clone(),
        config.node_name.clone(),
    ));
    let events = crate::pod::event::Recorder::start(api.clone(), config.node_name.clone());
    let cidr = pod_cidr(&api, &config.node_name, &config.cluster_cidr, &events).await?;
    let cni = Cni {
        plugin_dir: config.cni_plugin_dir.clone(),
        state_dir: config.root_dir.join("cni"),
        bridge: config.bridge.clone(),
        pod_cidr: cidr.clone(),
        cluster_cidr: config.cluster_cidr.clone(),
    };
    cni.prepare_node().await?;
    let host_resolv = host_resolv_conf();
    let upstreams = match config.upstream_dns.as_slice() {
        [] => dns::upstreams(&host_resolv.text),
        given => given.to_vec(),
    };
    let gateway = dns::gateway(&cidr).ok_or_else(|| AgentError::NoGateway(cidr.clone()))?;
    let dns_config = dns::Config {
        address: SocketAddr::new(gateway, 53),
        domain: config.cluster_domain.clone(),
        upstreams,
    };
    let caches = ServiceCaches::start(&api);
    dns::start(api.clone(), caches.clone(), &config.node_name, dns_config)?;
    let proxy = proxy::Settings::new(
        &config.node_name,
        &config.bridge,
        &config.cluster_cidr,
        &config.service_cidr,
    )?;
    tokio::spawn(proxy::run(caches, proxy));
    tokio::spawn(registration::routes(
        api.clone(),
        config.node_name.clone(),
        config.cluster_cidr.clone(),
        events.clone(),
    ));
    tokio::spawn(crate::storage::run(
        api.clone(),
        config.node_name.clone(),
        config.root_dir.join("storage"),
    ));
    let runtime: Arc<dyn Runtime> = Arc::new(ContainerdRuntime {
        containerd,
        cni,
        registry: registry::Client::new(config.insecure_registries.clone())
            .map_err(ImageError::from)?,
        state_dir: config.root_dir.clone(),
        accounts: Default::default(),
    });
    let consoles = Arc::new(Consoles::default());
    let streams = Arc::new(Streams {
        api: api.clone(),
        consoles: consoles.clone(),
        runtime: runtime.clone(),
        node_name: config.node_name.clone(),
        log_dir: config.log_dir.clone(),
    });
    let ca_pem = config.connection.ca_pem.clone().unwrap_or_default();
    tokio::spawn(async move {
        if let Err(e) = streams::serve(listener, streams, resolver, &ca_pem).await {
            tracing::error!(error = %e, "the agent API stopped");
        }
    });
    let ctx = Arc::new(Context {
        api: api.clone(),
        runtime,
        node_name: config.node_name.clone(),
        host_ip: machine.address.clone(),
        pods_dir: config.root_dir.join("pods"),
        log_dir: config.log_dir.clone(),
        fifo_dir: config.root_dir.join("fifo"),
        allocatable: machine.allocatable(),
        dns: NodeDns {
            cluster_dns: config.cluster_dns.clone(),
            domain: config.cluster_domain.clone(),
            host: ResolvConf::parse(&host_resolv.for_pods),
            hosts: std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
        },
        pids_limit: config.pod_max_pids,
        starting: tokio::sync::Semaphore::new(STARTING_AT_ONCE),
        events,
        consoles,
    });
    tracing::info!(node = %config.node_name, pod_cidr = %cidr, address = %machine.address, "node registered");
    Pods::new(ctx, began).run().await
}

/// The machine's resolv.conf: the agent's own (its DNS server forwards to these), and the one
/// pods with the `Default` policy get.
struct HostResolv {
    text: String,
    for_pods: String,
}

/// systemd-resolved's list of the real upstream servers, behind its 127.0.0.53 stub.
const RESOLVED_UPSTREAMS: &str = "/run/systemd/resolve/resolv.conf";

/// Reads the machine's resolv.conf. A loopback stub (systemd-resolved) cannot be reached from a
/// pod's network namespace, so pods then get the servers behind it, as kubeadm sets up.
fn host_resolv_conf() -> HostResolv {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let servers = ResolvConf::parse(&text).nameservers;
    let loopback = |s: &String| s.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    let for_pods = if !servers.is_empty() && servers.iter().all(loopback) {
        std::fs::read_to_string(RESOLVED_UPSTREAMS).unwrap_or_else(|_| text.clone())
    } else {
        text.clone()
    };
    HostResolv { text, for_pods }
}

/// How many pod networks and containers are made at once (see [`Context::starting`]).
const STARTING_AT_ONCE: usize = 4;

/// How often the agent looks for containers and networks that no pod worker owns.
const HOUSEKEEPING: Duration = Duration::from_secs(20);

/// The pod workers of this node, by pod uid.
struct Pods {
    ctx: Arc<Context>,
    workers: HashMap<String, watch::Sender<Desired>>,
    /// When the agent started, for the adoption figure.
    began: tokio::time::Instant,
}

impl Pods {
    fn new(ctx: Arc<Context>, began: tokio::time::Instant) -> Pods {
        Pods {
            ctx,
            workers: HashMap::new(),
            began,
        }
    }

    /// Lists and watches this node's pods (see [`Watcher`]).
    async fn run(mut self) -> Result<(), AgentError> {
        let path = format!(
            "/api/v1/pods?fieldSelector=spec.nodeName%3D{}",
            self.ctx.node_name
        );
        let mut watcher = Watcher::new(self.ctx.api.clone(), path);
        let mut first = true;
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let change = tokio::select! {
                change = watcher.next() => change,
                _ = housekeeping.tick(), if !first => {
                    self.clean_orphans().await;
                    continue;
                }
            };
            let event = match change {
                Change::Listed(items) => {
                    let pods: Vec<Pod> = items
                        .into_iter()
                        .filter_map(|p| serde_json::from_value(p).ok())
                        .collect();
                    self.sync(&pods, first).await?;
                    first = false;
                    continue;
                }
                Change::Event(event) => event,
            };
            let Ok(pod) = serde_json::from_value::<Pod>(event.object) else {
                continue;
            };
            if event.kind == "DELETED" {
                self.gone(&pod);
            } else {
                self.upsert(pod, Vec::new());
            }
        }
    }

    /// Brings the workers in line with a fresh list. On the first list, the containers and
    /// networks already on the node are adopted by their pods, or removed when their pod is
    /// gone.
    async fn sync(&mut self, pods: &[Pod], adopt: bool) -> Result<(), AgentError> {
        let mut found: HashMap<String, Vec<Found>> = HashMap::new();
        if adopt {
            // Agents of several nodes may share one containerd: each adopts only its own.
            let ours = |c: &Found| c.labels.get(pod::LABEL_NODE) == Some(&self.ctx.node_name);
            for container in self.ctx.runtime.list().await?.into_iter().filter(ours) {
                let uid = container
                    .labels
                    .get(pod::LABEL_POD_UID)
                    .cloned()
                    .unwrap_or_default();
                found.entry(uid).or_default().push(container);
            }
        }
        let listed: HashSet<&str> = pods
            .iter()
            .filter_map(|p| p.metadata.uid.as_deref())
            .collect();
        let running = pods
            .iter()
            .filter_map(|p| found.get(p.metadata.uid.as_deref()?))
            .flatten()
            .filter(|c| c.exit.is_none())
            .count();
        for pod in pods {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            self.upsert(pod.clone(), found.remove(&uid).unwrap_or_default());
        }
        let gone: Vec<String> = self
            .workers
            .keys()
            .filter(|uid| !listed.contains(uid.as_str()))
            .cloned()
            .collect();
        for uid in gone {
            if let Some(worker) = self.workers.remove(&uid) {
                let _ = worker.send(None);
            }
        }
        if adopt {
            tracing::info!(
                running,
                pods = pods.len(),
                ms = self.began.elapsed().as_millis() as u64,
                "adopted the running containers of this node's pods"
            );
            self.clean_orphans().await;
        }
        Ok(())
    }

    /// Removes the containers and networks of this node's pods that have no worker: pods
    /// deleted while the agent was down, and anything a worker failed to give back.
    async fn clean_orphans(&self) {
        let containers = match self.ctx.runtime.list().await {
            Ok(containers) => containers,
            Err(e) => {
                tracing::warn!(error = %e, "listing containers for housekeeping");
                return;
            }
        };
        let orphan = |uid: &str| !self.workers.contains_key(uid);
        let containers: Vec<(String, String)> = containers
            .into_iter()
            .filter(|c| c.labels.get(pod::LABEL_NODE) == Some(&self.ctx.node_name))
            .filter_map(|c| Some((c.labels.get(pod::LABEL_POD_UID)?.clone(), c.id)))
            .filter(|(uid, _)| orphan(uid))
            .collect();
        let networks: Vec<String> = self
            .ctx
            .runtime
            .attached()
            .into_iter()
            .filter(|uid| orphan(uid))
            .collect();
        if containers.is_empty() && networks.is_empty() {
            return;
        }
        // Stopping takes time: the watch goes on meanwhile.
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            for (uid, id) in containers {
                tracing::info!(container = %id, pod = %uid, "removing the container of a deleted pod");
                pod::kill_and_remove(&ctx, &id).await;
            }
            for uid in networks {
                tracing::info!(pod = %uid, "detaching the network of a deleted pod");
                if let Err(e) = ctx.runtime.detach(&uid, &[]).await {
                    tracing::warn!(pod = %uid, error = %e, "detaching an orphan network");
                }
                pod::volumes::clean(&ctx.pods_dir.join(&uid)).await;
            }
        });
    }

    /// Hands the pod to its worker, starting one for a pod new to the node.
    fn upsert(&mut self, pod: Pod, found: Vec<Found>) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if let Some(worker) = self.workers.get(&uid) {
            let _ = worker.send(Some(pod));
            return;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let terminal = matches!(phase, Some("Succeeded" | "Failed"));
        if terminal && found.is_empty() && pod.metadata.deletion_timestamp.is_none() {
            // A finished pod is never run again.
            return;
        }
        let (tx, rx) = watch::channel(Some(pod));
        tokio::spawn(Worker::new(self.ctx.clone(), rx, found).run());
        self.workers.insert(uid, tx);
    }

    fn gone(&mut self, pod: &Pod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if let Some(worker) = self.workers.remove(&uid) {
            let _ = worker.send(None);
        }
    }
}
