//! `wasmkube server`: opens the store, writes the kubeconfig, and serves the API over HTTPS.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::advertise;
use crate::election::Election;
use crate::etcd_tls::EtcdArgs;
use anyhow::Context;
use serde_json::json;
use wasmkube_apiserver::auth::token::{DEFAULT_ISSUER, TokenIssuer};
use wasmkube_apiserver::config::{self, ClusterCidr, ServiceRange};
use wasmkube_apiserver::registry::{PodSecurityLevel, WriteOptions, create_object};
use wasmkube_apiserver::tls::{Identity, KUBELET_CLIENT_USER, Names};
use wasmkube_apiserver::{ClusterConfig, Server, app, serve_tls};
use wasmkube_controller::builtin::{Builtin, Outcome};
use wasmkube_controller::leader::Timing;
use wasmkube_controller::module;
use wasmkube_controller::module::PluginKind;
use wasmkube_model::names::DEFAULT_STORAGE_CLASS;
use wasmkube_runtime::Runtime;
use wasmkube_store::Store;
use wasmkube_store::embedded::EmbeddedStore;
use wasmkube_store::etcd::EtcdStore;
use wasmkube_store::watch_cache::{WatchCache, WatchCacheConfig};

#[derive(clap::Args)]
pub struct ServerArgs {
    /// Where the store, certificates and kubeconfig live.
    #[arg(long, default_value = ".data")]
    pub data_dir: PathBuf,
    /// The HTTPS port.
    #[arg(long, default_value_t = 6443)]
    pub port: u16,
    /// The address the API listens on: all interfaces by default, as kube-apiserver's
    /// `--bind-address`. The kubeconfig names it (127.0.0.1 when it is all interfaces).
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// A further name or address the serving certificate is valid for (it always is for
    /// localhost, the `kubernetes` Service, this host's name and its addresses); repeat for
    /// several.
    #[arg(long = "tls-san", value_name = "NAME")]
    pub tls_sans: Vec<String>,
    /// The address pods and other hosts reach the API at, named by the `kubernetes` Service's
    /// endpoints (kube-apiserver's `--advertise-address`): by default the bind address, or this
    /// host's first global IPv4 address when it binds all interfaces.
    #[arg(long)]
    pub advertise_address: Option<IpAddr>,
    /// `embedded` (on disk in the data directory), `etcd://HOST:PORT[,HOST:PORT…]`, or
    /// `etcds://HOST:PORT[,…]` for etcd over TLS (with --etcd-cafile, and --etcd-certfile and
    /// --etcd-keyfile for an etcd that verifies clients).
    #[arg(long, default_value = "embedded")]
    pub store: String,
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// A plugin (a `.wasm` component: a controller or a scheduling policy) to run besides the
    /// built-in ones; repeat for several.
    #[arg(long = "plugin")]
    pub plugins: Vec<PathBuf>,
    /// A built-in plugin to leave out (`replicaset`, `deployment`, `default`…; see `wasmkube
    /// plugin builtins`); repeat for several. One installed by an earlier start is removed.
    #[arg(long = "disable-plugin", value_name = "NAME")]
    pub disabled: Vec<String>,
    /// Where compiled plugins are cached (default: DATA_DIR/plugin-cache); it must be private to
    /// the host, its files are loaded as code. `wasmkube plugin precompile` fills it ahead.
    #[arg(long, value_name = "DIR")]
    pub plugin_cache: Option<PathBuf>,
    /// The pod network: each node gets the next free /24 of it as `spec.podCIDR`.
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: ClusterCidr,
    /// The service IP range: Services get their cluster IPs from it, its first address is the
    /// `kubernetes` Service's (as kubeadm's `--service-cidr`).
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cidr: ServiceRange,
    /// How long a node may go without a heartbeat before it is marked unreachable (`40s`, `2m`).
    #[arg(long, default_value = "40s", value_parser = config::parse_duration)]
    pub node_monitor_grace_period: Duration,
    /// How long pods tolerate a not-ready or unreachable node unless they say otherwise.
    #[arg(long, default_value_t = 300)]
    pub default_toleration_seconds: i64,
    /// How long Events are kept after they were last seen (`1h`, `30m`), as kube-apiserver's
    /// `--event-ttl`.
    #[arg(long, default_value = "1h", value_parser = config::parse_duration)]
    pub event_ttl: Duration,
    /// The Pod Security level (`privileged`, `baseline`, `restricted`) a namespace without
    /// `pod-security.kubernetes.io/*` labels enforces, warns and audits at; `kube-system` is
    /// `privileged` unless labelled.
    #[arg(long, default_value = "baseline", value_name = "LEVEL")]
    pub pod_security_default: PodSecurityLevel,
    /// The `iss` of ServiceAccount tokens, as kube-apiserver's `--service-account-issuer`.
    #[arg(long, default_value = DEFAULT_ISSUER)]
    pub service_account_issuer: String,
    /// The audiences a ServiceAccount token must be meant for (one of them) to authenticate,
    /// comma-separated, as kube-apiserver's `--api-audiences`; by default the issuer.
    #[arg(long, value_delimiter = ',')]
    pub api_audiences: Vec<String>,
    /// How long the leader's lease holds (kube-controller-manager's
    /// `--leader-elect-lease-duration`): another host takes over this long after the leader
    /// last renewed it.
    #[arg(long, default_value = "15s", value_parser = config::parse_duration)]
    pub leader_elect_lease_duration: Duration,
    /// How long the leader keeps trying to renew its lease before it stops acting; shorter
    /// than the lease duration.
    #[arg(long, default_value = "10s", value_parser = config::parse_duration)]
    pub leader_elect_renew_deadline: Duration,
    /// How often the lease is renewed, or tried for by a host that does not lead.
    #[arg(long, default_value = "2s", value_parser = config::parse_duration)]
    pub leader_elect_retry_period: Duration,
}

/// This host's name, empty when it cannot be read.
pub fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    name.trim().to_string()
}

impl ServerArgs {
    /// What the serving certificate must be valid for: the defaults, this host's name and
    /// addresses, the bind address, the `kubernetes` Service's IP and every `--tls-san`.
    fn names(&self) -> anyhow::Result<Names> {
        let mut names = Names::default();
        // A hostname that is no DNS name (an odd container's) is left out, not an error.
        let _ = names.add(&hostname());
        for ip in wasmkube_node::registration::host_addresses() {
            names.ip(ip);
        }
        names.ip(self.bind_address);
        if let Some(ip) = self.advertise_address {
            names.ip(ip);
        }
        names.ip(IpAddr::V4(self.service_cidr.first()));
        for san in &self.tls_sans {
            names.add(san)?;
        }
        Ok(names)
    }

    /// The address clients on this host reach the API at: the bind address, or 127.0.0.1 when
    /// it is all interfaces.
    fn reachable(&self, port: u16) -> SocketAddr {
        let ip = match self.bind_address {
            ip if ip.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
            ip => ip,
        };
        SocketAddr::new(ip, port)
    }

    /// The leader election's timing, checked so that a leader stops before its lease may be
    /// taken.
    fn timing(&self) -> anyhow::Result<Timing> {
        let timing = Timing {
            lease_duration: self.leader_elect_lease_duration,
            renew_deadline: self.leader_elect_renew_deadline,
            retry_period: self.leader_elect_retry_period,
        };
        timing
            .check()
            .map_err(|e| anyhow::anyhow!("--leader-elect-*: {e}"))?;
        Ok(timing)
    }

    /// The cluster settings of the flags, for a cluster of `identity` (its CA published and
    /// signing node certificates) whose ServiceAccount tokens are signed with the key kept in `pki`.
    pub fn cluster(&self, identity: &Identity, pki: &Path) -> anyhow::Result<ClusterConfig> {
        let tokens =
            TokenIssuer::load_or_create(pki, &self.service_account_issuer, &self.api_audiences)?;
        Ok(ClusterConfig {
            cluster_cidr: self.cluster_cidr,
            node_monitor_grace_period: self.node_monitor_grace_period,
            default_toleration_seconds: self.default_toleration_seconds,
            event_ttl: self.event_ttl,
            root_ca: Some(identity.ca_pem.clone()),
            service_range: self.service_cidr,
            pod_security: self.pod_security_default,
            service_accounts: Some(Arc::new(tokens)),
            certificate_authority: identity.authority()?.map(Arc::new),
            kubelet_client: match identity.issue_client(KUBELET_CLIENT_USER, None) {
                Ok((cert, key)) => Some(format!("{cert}{key}")),
                Err(e) => {
                    tracing::warn!(error = %e, "node agents' APIs cannot be reached");
                    None
                }
            },
        })
    }
}

/// The Plugin name for a `.wasm` file: `wasmkube_plugin_replicaset.wasm` → `replicaset`,
/// `wasmkube_policy_default.wasm` → `default`, `my_thing.wasm` → `my-thing`.
fn plugin_name(file: &std::path::Path) -> String {
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plugin");
    stem.trim_start_matches("wasmkube_plugin_")
        .trim_start_matches("wasmkube_policy_")
        .replace('_', "-")
}

/// The plugins compiled into this binary (see `build.rs`). A `static`: each crate that used a
/// `const` got its own copy of the embedded bytes (the binary held them three times).
pub static BUILTINS: &[Builtin] = include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// Installs the built-in plugins (but the disabled ones) and every `--plugin` as `Plugin`
/// objects of the kind their component is (a changed file replaces the running module in
/// place: the leading host's supervisor swaps it). Returns the plugins installed and the
/// runtime that loads them.
async fn install_plugins(
    server: &Arc<Server>,
    args: &ServerArgs,
) -> anyhow::Result<(Arc<Runtime>, Vec<String>)> {
    if let Some(unknown) = args
        .disabled
        .iter()
        .find(|d| !BUILTINS.iter().any(|b| b.name == d.as_str()))
    {
        let names: Vec<&str> = BUILTINS.iter().map(|b| b.name).collect();
        anyhow::bail!(
            "--disable-plugin {unknown}: no such built-in plugin (built-ins: {})",
            names.join(", ")
        );
    }
    let mut installed = Vec::new();
    for builtin in BUILTINS {
        let outcome = if args.disabled.iter().any(|d| d == builtin.name) {
            builtin.disable(server).await
        } else {
            builtin.ensure(server).await
        }
        .with_context(|| format!("installing the built-in plugin {}", builtin.name))?;
        tracing::info!(
            plugin = builtin.name,
            kind = builtin.kind.as_str(),
            outcome = outcome.as_str(),
            "built-in plugin"
        );
        if !matches!(outcome, Outcome::Removed | Outcome::Absent) {
            installed.push(builtin.name.to_string());
        }
    }
    let cache = args
        .plugin_cache
        .clone()
        .unwrap_or_else(|| args.data_dir.join("plugin-cache"));
    let runtime = Arc::new(Runtime::new(cache)?.with_compiler(crate::plugin_cli::compiler()?));
    for file in &args.plugins {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let name = plugin_name(file);
        let module = runtime
            .load(&bytes)
            .with_context(|| format!("loading {}", file.display()))?;
        let kind = PluginKind::of(&module);
        module::install(server, &name, kind, &bytes)
            .await
            .with_context(|| format!("installing {}", file.display()))?;
        tracing::info!(plugin = %name, kind = kind.as_str(), file = %file.display(), "plugin installed");
        installed.push(name);
    }
    installed.sort();
    installed.dedup();
    Ok((runtime, installed))
}

/// Opens the store named by `--store` (an etcd one with the TLS settings of `etcd`).
pub async fn open_store(
    spec: &str,
    etcd: &EtcdArgs,
    data_dir: &std::path::Path,
) -> anyhow::Result<Arc<dyn Store>> {
    if spec == "embedded" {
        let store = EmbeddedStore::open(&data_dir.join("store.redb"))
            .context("opening the embedded store")?;
        return Ok(store);
    }
    let (endpoints, tls) = etcd.endpoints(spec)?;
    let store = match tls {
        Some(tls) => EtcdStore::connect_tls(&endpoints, &tls).await,
        None => EtcdStore::connect(&endpoints).await,
    }
    .context("connecting to etcd")?;
    // One etcd watch per resource, whatever the number of watchers (docs/store.md).
    Ok(WatchCache::new(store, WatchCacheConfig::default()))
}

/// Creates the objects every cluster has, each only when absent (a user's changes stay): the
/// namespaces, the `kubernetes` Service of the apiserver and the default StorageClass
/// `local-path`, whose volumes the node agents provision.
async fn bootstrap(server: &Server, port: u16) -> anyhow::Result<()> {
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        ensure(server, None, ns).await?;
    }
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": server.service_range.first().to_string(), "ports": [{"name": "https", "port": 443, "targetPort": port}]},
    });
    ensure(server, Some("default"), svc).await?;
    kube_dns(server).await;
    let class = json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "local-path", "annotations": {DEFAULT_STORAGE_CLASS: "true"}},
        "provisioner": wasmkube_node::storage::PROVISIONER,
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Delete",
    });
    ensure(server, None, class).await
}

/// The cluster DNS Service: no selector (each node agent publishes its own server as an
/// endpoint), and Local traffic policy keeps a pod's questions on its node. Not fatal: the
/// range may be too small, or a data directory from before may have given the address away.
async fn kube_dns(server: &Server) {
    let Some(dns_ip) = server.service_range.dns() else {
        tracing::warn!("the service range is too small for the kube-dns Service's tenth address");
        return;
    };
    let dns = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {
            "name": wasmkube_node::dns::SERVICE_NAME,
            "labels": {"k8s-app": "kube-dns"},
        },
        "spec": {
            "clusterIP": dns_ip.to_string(),
            "internalTrafficPolicy": "Local",
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            ],
        },
    });
    if let Err(e) = ensure(server, Some(wasmkube_node::dns::SERVICE_NAMESPACE), dns).await {
        tracing::warn!(error = %e, "creating the kube-dns Service");
    }
}

/// Creates `object` in `ns` unless an object of its kind and name is there already.
async fn ensure(
    server: &Server,
    ns: Option<&str>,
    object: serde_json::Value,
) -> anyhow::Result<()> {
    let registry = server.registry();
    let text = |field: &str| object[field].as_str().unwrap_or_default();
    let info = registry
        .by_kind(text("apiVersion"), text("kind"))
        .with_context(|| format!("{} is served", text("kind")))?;
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    if server.objects.get(info, ns, name).await?.is_none() {
        create_object(
            server,
            info,
            ns,
            object,
            WriteOptions::INTERNAL,
            &mut Vec::new(),
        )
        .await?;
    }
    Ok(())
}

/// A control plane that is set up and ready to serve.
pub struct Started {
    /// The API's URL, as the kubeconfig names it.
    pub url: String,
    /// The admin kubeconfig, an absolute path.
    pub kubeconfig: PathBuf,
    /// The cluster CA, which the node agent of `wasmkube up` pins.
    pub ca_pem: String,
    /// The plugins installed at start: built-in and `--plugin` ones.
    pub plugins: Vec<String>,
    /// The control plane, for in-process callers.
    pub server: Arc<Server>,
    serving: futures::future::BoxFuture<'static, anyhow::Result<()>>,
    election: Election,
}

impl Started {
    /// The one-screen summary printed when the cluster is ready.
    pub fn summary(&self, node: Option<&str>) -> String {
        let mut text = format!(
            "wasmkube is serving on {}\n  kubeconfig: {}\n",
            self.url,
            self.kubeconfig.display()
        );
        if let Some(node) = node {
            text += &format!("  node:       {node} (Ready)\n");
        }
        text += &format!("  plugins:    {}\n", self.plugins.join(", "));
        text += &format!(
            "\n  export KUBECONFIG={}\n  kubectl get nodes,plugins\n",
            self.kubeconfig.display()
        );
        text
    }

    /// Serves the API until the process ends.
    pub async fn serve(self) -> anyhow::Result<()> {
        let Started {
            serving, election, ..
        } = self;
        let result = serving.await;
        drop(election);
        result
    }

    /// Serves the API until SIGTERM or SIGINT, then stops the elected parts and releases the
    /// lease, so that another host leads at once.
    async fn serve_until_terminated(self) -> anyhow::Result<()> {
        let Started {
            serving, election, ..
        } = self;
        tokio::select! {
            result = serving => result,
            signal = terminated() => {
                election.release().await;
                signal
            }
        }
    }
}

/// Waits for SIGTERM or SIGINT.
async fn terminated() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

/// Opens the store, installs the built-in objects and plugins, joins the leader election (the
/// controllers, the scheduler and the compactor run while this host leads), and writes the
/// kubeconfig; [`Started::serve`] then serves the API.
pub async fn start(args: ServerArgs) -> anyhow::Result<Started> {
    wasmkube_apiserver::tls::create_private_dir(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let store = open_store(&args.store, &args.etcd, &args.data_dir).await?;
    let pki = args.data_dir.join("pki");
    let identity = Identity::load_or_create(&pki, &args.names()?)?;
    let cluster = args.cluster(&identity, &pki)?;
    let server = Server::with_config(store.clone(), Some(identity.token.clone()), cluster).await?;
    let listener = tokio::net::TcpListener::bind((args.bind_address, args.port))
        .await
        .with_context(|| format!("binding {}:{}", args.bind_address, args.port))?;
    let port = listener.local_addr()?.port();
    let url = format!("https://{}", args.reachable(port));
    bootstrap(&server, port).await?;
    wasmkube_apiserver::auth::bootstrap::reconcile(&server).await?;
    let advertised = advertise::address(args.advertise_address, args.bind_address);
    advertise::reconcile(&server, advertised, port).await?;
    let (runtime, installed) = install_plugins(&server, &args).await?;
    // The embedded store is opened by one process: no other host can lead.
    let sole = args.store == "embedded";
    let election = Election::start(&server, store, runtime, args.timing()?, sole).await?;
    wasmkube_apiserver::auth::cluster_info::publish(&server, &url, &identity.ca_pem).await?;
    let kubeconfig = args.data_dir.join("kubeconfig");
    wasmkube_apiserver::tls::write_private(
        &kubeconfig,
        identity.admin_kubeconfig(&url)?.as_bytes(),
    )
    .with_context(|| format!("writing {}", kubeconfig.display()))?;
    let kubeconfig = std::fs::canonicalize(&kubeconfig)?;
    tracing::info!(port, store = %args.store, "serving the Kubernetes API");
    let tls = identity.server_config()?;
    let api = app(server.clone());
    let serving = Box::pin(async move {
        serve_tls(listener, tls, api).await?;
        anyhow::Ok(())
    });
    Ok(Started {
        url,
        kubeconfig,
        ca_pem: identity.ca_pem.clone(),
        plugins: installed,
        server,
        serving,
        election,
    })
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let started = start(args).await?;
    println!("{}", started.summary(None));
    started.serve_until_terminated().await
}

#[cfg(test)]
mod tests {
    use super::BUILTINS;
    use wasmkube_controller::module::digest;

    /// The digest recorded at build time is the digest of the bytes embedded: a start that finds
    /// a Plugin at that digest skips storing chunks, so a mismatch leaves every built-in without
    /// its module ("module chunk … is missing").
    #[test]
    fn every_builtin_carries_the_digest_of_its_bytes() {
        assert!(!BUILTINS.is_empty());
        for b in BUILTINS {
            let module = b.module().expect("the built-in inflates");
            assert_eq!(b.digest, digest(&module), "{}", b.name);
        }
    }
}
