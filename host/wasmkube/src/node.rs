//! `wasmkube node` runs a node agent; `wasmkube up` runs the control plane and one node agent
//! in one process; `wasmkube join` joins a node (or, with `--control-plane`, a control-plane
//! host); `wasmkube image import` loads an image archive into the node's containerd.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use wasmkube_apiserver::Server;
use wasmkube_apiserver::registry::{DeleteOptions, WriteOptions, create_object, delete_object};
use wasmkube_model::resource::ResourceInfo;
use wasmkube_node::agent::{self, Config};
use wasmkube_node::api::{Api, Connection, Credential};
use wasmkube_node::bootstrap;
use wasmkube_node::containerd::Containerd;

use crate::server::{self, ServerArgs};

/// The project's own containerd socket (scripts/containerd.sh starts it).
const CONTAINERD_SOCKET: &str = "/run/wasmkube/containerd.sock";

/// The agent's settings shared by `node` and `up`.
#[derive(clap::Args, Clone)]
pub struct AgentArgs {
    /// The Node's name (default: the machine's hostname).
    #[arg(long)]
    pub node_name: Option<String>,
    #[arg(long, default_value = CONTAINERD_SOCKET)]
    pub containerd: PathBuf,
    /// Where the agent keeps pod directories, FIFOs and CNI state.
    #[arg(long, default_value = "/var/lib/wasmkube/node")]
    pub node_dir: PathBuf,
    /// Where container logs go (the kubelet's layout).
    #[arg(long, default_value = "/var/log/pods")]
    pub log_dir: PathBuf,
    /// The cluster's pod network; traffic from pods to outside it is masqueraded, and only pod
    /// CIDRs inside it become routes (default: 10.244.0.0/16; for `up`, its --cluster-cidr).
    #[arg(long = "pod-network")]
    pub pod_network: Option<String>,
    #[arg(long, default_value = wasmkube_node::cni::DEFAULT_PLUGIN_DIR)]
    pub cni_plugin_dir: PathBuf,
    /// The Linux bridge for this node's pods.
    #[arg(long, default_value = "wk0")]
    pub bridge: String,
    /// The node's InternalIP (default: the machine's first global IPv4 address).
    #[arg(long)]
    pub node_ip: Option<String>,
    /// The port of the agent's API (logs, exec, port-forward for the apiserver); 0, or a port
    /// already taken, gets a free one. The Node's status says which.
    #[arg(long, default_value_t = wasmkube_node::registration::AGENT_PORT)]
    pub agent_port: u16,
    /// A registry (HOST[:PORT], as in image references) to pull from over plain HTTP;
    /// repeatable. Registries on localhost, 127.0.0.1 and ::1 always are.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// The most processes and threads each container may hold (its cgroup's `pids.max`, as the
    /// kubelet's --pod-max-pids but per container); 0 or less for no limit.
    #[arg(long, default_value_t = agent::DEFAULT_POD_MAX_PIDS, allow_negative_numbers = true)]
    pub pod_max_pids: i64,
    /// The nameserver of pods with the ClusterFirst DNS policy: the kube-dns Service's
    /// ClusterIP, as the kubelet's --cluster-dns; repeatable (default: 10.96.0.10; for `up`,
    /// the tenth address of its service range).
    #[arg(long = "cluster-dns", value_name = "IP")]
    pub cluster_dns: Vec<IpAddr>,
    /// The cluster domain the node's DNS server answers for and pods search.
    #[arg(long, default_value = wasmkube_node::dns::DEFAULT_DOMAIN)]
    pub cluster_domain: String,
    /// A resolver (IP[:PORT]) the node's DNS server forwards names outside the cluster domain
    /// to; repeatable (default: the nameservers of the machine's /etc/resolv.conf).
    #[arg(long = "upstream-dns", value_name = "IP[:PORT]", value_parser = upstream)]
    pub upstream_dns: Vec<SocketAddr>,
}

/// `IP` or `IP:PORT` (port 53 unless given).
fn upstream(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>()
        .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| format!("{text:?} is not an IP address or IP:PORT"))
}

/// The kube-dns ClusterIP of a node agent not told one (the default service range's tenth).
const DEFAULT_CLUSTER_DNS: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 96, 0, 10));

/// The pod network of a node agent not told one.
const DEFAULT_POD_NETWORK: &str = "10.244.0.0/16";

impl AgentArgs {
    /// `--node-name`, or the machine's hostname.
    fn node_name(&self) -> String {
        self.node_name.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_lowercase())
                .unwrap_or_else(|_| "node".into())
        })
    }

    fn config(&self, connection: Connection, service_cidr: String) -> Config {
        Config {
            connection,
            rotated_kubeconfig: None,
            node_name: self.node_name(),
            containerd_socket: self.containerd.clone(),
            root_dir: self.node_dir.clone(),
            log_dir: self.log_dir.clone(),
            cluster_cidr: self
                .pod_network
                .clone()
                .unwrap_or_else(|| DEFAULT_POD_NETWORK.into()),
            cni_plugin_dir: self.cni_plugin_dir.clone(),
            bridge: self.bridge.clone(),
            node_ip: self.node_ip.clone(),
            agent_port: self.agent_port,
            insecure_registries: self.insecure_registries.clone(),
            pod_max_pids: (self.pod_max_pids > 0).then_some(self.pod_max_pids),
            cluster_dns: match self.cluster_dns.as_slice() {
                [] => vec![DEFAULT_CLUSTER_DNS],
                given => given.to_vec(),
            },
            cluster_domain: self.cluster_domain.clone(),
            upstream_dns: self.upstream_dns.clone(),
            service_cidr,
        }
    }
}

#[derive(clap::Args)]
pub struct NodeArgs {
    /// An apiserver, e.g. https://10.0.0.1:6443, or a load balancer in front of several;
    /// repeatable: the agent fails over between them in this order. With --kubeconfig, tried
    /// after the kubeconfig's servers.
    #[arg(long = "server", value_name = "URL")]
    pub servers: Vec<String>,
    /// The bearer token for the apiserver.
    #[arg(long)]
    pub token: Option<String>,
    /// The cluster CA (PEM): the apiserver's serving certificate chains to it, and the agent's
    /// API verifies the apiserver's client certificate against it (without it, the apiserver's
    /// certificate is not verified and the agent's API serves nobody).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// A kubeconfig to read the servers, CA and credential (a token, or a client certificate
    /// and key) from instead of --token and --ca-file.
    #[arg(long, conflicts_with_all = ["token", "ca_file"])]
    pub kubeconfig: Option<PathBuf>,
    /// The cluster's service IP range, as the server's --service-cidr: the proxy rejects an
    /// address in it that no Service owns (`wasmkube up` takes the server's).
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cidr: String,
    #[command(flatten)]
    pub agent: AgentArgs,
}

pub async fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    let servers = args.servers.iter().map(String::as_str);
    let connection = match (&args.kubeconfig, args.servers.first(), &args.token) {
        (Some(path), _, _) => {
            let mut connection = Connection::from_kubeconfig(path)?;
            connection.add_servers(servers)?;
            connection
        }
        (None, Some(server), Some(token)) => {
            let ca_pem = args
                .ca_file
                .as_ref()
                .map(|f| {
                    std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))
                })
                .transpose()?;
            let mut connection = Connection::to(server, Credential::Token(token.clone()), ca_pem)?;
            connection.add_servers(servers)?;
            connection
        }
        _ => anyhow::bail!("give --server and --token, or --kubeconfig"),
    };
    agent::run(args.agent.config(connection, args.service_cidr)).await?;
    Ok(())
}

#[derive(clap::Args)]
#[command(mut_arg("data_dir", |a| a.default_value(JOIN_DATA_DIR)))]
pub struct JoinArgs {
    /// The apiserver, `https://HOST:PORT`, or a load balancer in front of several; more than
    /// one: the agent fails over between them in this order (they are kept in its kubeconfig).
    #[arg(required = true, value_name = "SERVER")]
    pub servers: Vec<String>,
    /// A bootstrap token (`wasmkube token create`), used once to ask for the node's certificate
    /// (or, with --control-plane, to read the uploaded certificates).
    #[arg(long)]
    pub token: String,
    /// The cluster CA's public key hash, `sha256:HEX`, as `wasmkube token create` prints it.
    #[arg(long = "discovery-token-ca-cert-hash")]
    pub ca_cert_hash: String,
    /// Join as a further control-plane host instead of a node: fetch the certificates uploaded
    /// by `wasmkube token create --upload-certs`, then serve as `wasmkube server` with the
    /// options below (--store, --port, --tls-san…); DATA_DIR is its data directory.
    #[arg(long, requires = "certificate_key")]
    pub control_plane: bool,
    /// The key the certificates were uploaded with (64 hexadecimal digits), as kubeadm's.
    #[arg(long, requires = "control_plane", value_name = "KEY")]
    pub certificate_key: Option<String>,
    /// The control plane's settings (--control-plane); also --data-dir, where a node keeps its
    /// kubeconfig (its key and certificate) and starts with it without joining again, and
    /// --service-cidr, the cluster's service IP range.
    #[command(flatten, next_help_heading = "Server (with --control-plane)")]
    pub server: ServerArgs,
    #[command(flatten)]
    pub agent: AgentArgs,
}

/// Where a joined node keeps its kubeconfig unless told otherwise.
const JOIN_DATA_DIR: &str = "/var/lib/wasmkube/join";

/// `wasmkube join`: as a control-plane host (see [`crate::control_plane::join`]), or as a node:
/// the node's own certificate (see [`join`]), then the agent with it.
pub async fn run_join(args: JoinArgs) -> anyhow::Result<()> {
    if args.control_plane {
        return crate::control_plane::join(args).await;
    }
    let kubeconfig = args.server.data_dir.join("kubeconfig");
    let node = args.agent.node_name();
    let connection = join(
        &args.servers,
        &args.token,
        &args.ca_cert_hash,
        &kubeconfig,
        &node,
    )
    .await?;
    let config = Config {
        rotated_kubeconfig: Some(kubeconfig),
        ..args
            .agent
            .config(connection, args.server.service_cidr.to_string())
    };
    agent::run(config).await?;
    Ok(())
}

/// A connection to the apiservers `servers` (in this order) authenticated with the bootstrap
/// token `token`, trusting the cluster CA read from `cluster-info` of the first that answers and
/// checked against `pin`.
pub async fn token_connection(
    servers: &[String],
    token: &str,
    pin: &str,
) -> anyhow::Result<Connection> {
    if wasmkube_apiserver::auth::bootstrap_token::split(token).is_none() {
        anyhow::bail!("--token: not a bootstrap token ([a-z0-9]{{6}}.[a-z0-9]{{16}})");
    }
    let mut discovered = Err(anyhow::anyhow!("no apiserver given"));
    for server in servers {
        discovered = bootstrap::discover(server, pin).await.map_err(Into::into);
        match &discovered {
            Ok(_) => break,
            Err(e) => tracing::warn!(%server, error = %e, "reading the cluster CA"),
        }
    }
    let ca_pem = discovered?;
    let mut connection = Connection::to(
        servers.first().map_or("", String::as_str),
        Credential::Token(token.to_string()),
        Some(ca_pem),
    )?;
    connection.add_servers(servers.iter().map(String::as_str))?;
    Ok(connection)
}

/// The connection of the node `node` to the apiservers `servers` with its own client
/// certificate, kept in the kubeconfig `kubeconfig` (0600) with every server. Without one yet:
/// the cluster CA read from `cluster-info` of the first server that answers and checked against
/// `pin`, a new key, and a certificate asked for with the bootstrap token `token` (which is not
/// kept). With one, `servers` are not looked at.
async fn join(
    servers: &[String],
    token: &str,
    pin: &str,
    kubeconfig: &Path,
    node: &str,
) -> anyhow::Result<Connection> {
    if !kubeconfig.exists() {
        let mut connection = token_connection(servers, token, pin).await?;
        let (cert_pem, key_pem) =
            bootstrap::client_certificate(&Api::new(&connection)?, node).await?;
        connection.credential = Credential::Certificate { cert_pem, key_pem };
        bootstrap::write_private(kubeconfig, &connection.kubeconfig())?;
        tracing::info!(node, kubeconfig = %kubeconfig.display(), "joined with a certificate of the node's own");
    }
    Ok(Connection::from_kubeconfig(kubeconfig)?)
}

#[derive(clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub agent: AgentArgs,
}

/// The control plane and a node agent on this machine, in one process; prints a summary once
/// the node is Ready.
pub async fn run_up(mut args: UpArgs) -> anyhow::Result<()> {
    // One network for both halves, unless told otherwise.
    if args.agent.pod_network.is_none() {
        args.agent.pod_network = Some(args.server.cluster_cidr.to_string());
    }
    let service_cidr = args.server.service_cidr.to_string();
    let data_dir = args.server.data_dir.clone();
    let started = server::start(args.server).await?;
    if args.agent.cluster_dns.is_empty()
        && let Some(dns) = started.server.service_range.dns()
    {
        args.agent.cluster_dns = vec![IpAddr::V4(dns)];
    }
    // The agent joins as any node does, with a bootstrap token made for it (never the admin's
    // credentials); started again, it has its kubeconfig already.
    let kubeconfig = data_dir.join("pki/node.kubeconfig");
    let node = args.agent.node_name();
    let token = if kubeconfig.exists() {
        String::new()
    } else {
        own_bootstrap_token(&started.server).await?
    };
    let pin = wasmkube_apiserver::certificates::ca_pin(&started.ca_pem)?;
    let url = started.url.clone();
    let summary = started.summary(Some(&node));
    let ready = node_ready(started.server.clone(), node.clone());
    let server = started.server.clone();
    let agent = async move {
        let connection = join(&[url], &token, &pin, &kubeconfig, &node).await?;
        if !token.is_empty() {
            forget_bootstrap_token(&server, &token).await?;
        }
        let config = Config {
            rotated_kubeconfig: Some(kubeconfig),
            ..args.agent.config(connection, service_cidr)
        };
        agent::run(config).await?;
        anyhow::Ok(())
    };
    let banner = async move {
        ready.await;
        println!("{summary}");
        anyhow::Ok(())
    };
    tokio::try_join!(started.serve(), agent, banner)?;
    Ok(())
}

/// A bootstrap token for `up`'s own agent, valid for an hour (its Secret in `kube-system`, as
/// `wasmkube token create` makes them); deleted once the agent has joined.
async fn own_bootstrap_token(server: &Server) -> anyhow::Result<String> {
    use wasmkube_apiserver::auth::bootstrap_token;
    let token = bootstrap_token::generate();
    let expires = chrono::Utc::now() + chrono::Duration::hours(1);
    let groups = [wasmkube_apiserver::auth::bootstrap::DEFAULT_NODE_TOKEN_GROUP];
    let secret = bootstrap_token::secret(&token, Some(expires), &groups)
        .context("a generated token is malformed")?;
    create_object(
        server,
        &*secrets(server)?,
        Some(bootstrap_token::NAMESPACE),
        secret,
        WriteOptions::INTERNAL,
        &mut Vec::new(),
    )
    .await?;
    Ok(token)
}

/// How Secrets are served.
fn secrets(server: &Server) -> anyhow::Result<Arc<ResourceInfo>> {
    server
        .registry()
        .by_kind("v1", "Secret")
        .cloned()
        .context("secrets are not served")
}

/// Deletes the Secret of the bootstrap token `token` once `up`'s agent has joined with it, so
/// that it authenticates nobody else.
async fn forget_bootstrap_token(server: &Server, token: &str) -> anyhow::Result<()> {
    use wasmkube_apiserver::auth::bootstrap_token;
    let (id, _) = bootstrap_token::split(token).context("a generated token is malformed")?;
    let name = format!("{}{id}", bootstrap_token::SECRET_PREFIX);
    delete_object(
        server,
        &*secrets(server)?,
        Some(bootstrap_token::NAMESPACE),
        &name,
        &DeleteOptions::background(),
    )
    .await?;
    Ok(())
}

/// Resolves once the Node `name` has a `Ready` condition that is `True`.
async fn node_ready(server: Arc<Server>, name: String) {
    let Some(nodes) = server.registry().by_kind("v1", "Node").cloned() else {
        return;
    };
    loop {
        if let Ok(Some(node)) = server.objects.get(&nodes, None, &name).await {
            let ready = node.object["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            if ready {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[derive(clap::Subcommand)]
pub enum ImageCommand {
    /// Load an OCI image layout or `docker save` archive into the node's containerd.
    Import {
        file: PathBuf,
        #[arg(long, default_value = CONTAINERD_SOCKET)]
        containerd: PathBuf,
    },
}

pub async fn run_image(command: ImageCommand) -> anyhow::Result<()> {
    match command {
        ImageCommand::Import { file, containerd } => {
            let client = Containerd::connect(&containerd).await?;
            for name in wasmkube_node::image::import(&client, &file).await? {
                println!("imported {name}");
            }
        }
    }
    Ok(())
}
