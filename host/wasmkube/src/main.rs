//! The `wasmkube` command: `server` runs the control plane, `node` a node agent, `up` both;
//! `plugin` and `image` install things; `kubeconfig` adds users; `token` makes bootstrap
//! tokens for new nodes; `snapshot` backs the store up; `bench` measures.

mod advertise;
mod bench;
mod client;
mod cluster_certs;
mod control_plane;
mod election;
mod etcd_tls;
#[cfg(feature = "heap-profile")]
mod heap_profile;
mod kubeconfig_cli;
mod node;
mod plugin_cli;
mod server;
mod snapshot_cli;
mod token_cli;

use clap::{Parser, Subcommand};

/// jemalloc returns freed memory to the system where glibc's per-thread arenas keep it, with
/// its background threads (see [`main`]) even when the threads that freed it are idle (see
/// docs/benchmarks.md, Memory).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// How long an idle blocking thread (store reads, file I/O) waits for work before it exits;
/// tokio's default is 10 s. Each kept its stack and jemalloc thread cache: a 1 s keep-alive
/// measured 5 MB less, and a thread costs tens of microseconds to start again.
const BLOCKING_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Parser)]
#[command(
    name = "wasmkube",
    version,
    about = "A Kubernetes-compatible orchestrator whose controllers are WebAssembly components"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the apiserver (and the host's native controllers) over a store.
    Server(server::ServerArgs),
    /// Run a node agent: pods bound to this node run in containerd, networked by CNI.
    Node(node::NodeArgs),
    /// Run the control plane and a node agent on this machine in one process.
    Up(Box<node::UpArgs>),
    /// Join a cluster as a node (its own certificate from a bootstrap token, then the agent), or
    /// as a further control-plane host (`--control-plane`).
    Join(Box<node::JoinArgs>),
    /// Import images into this node's containerd.
    #[command(subcommand)]
    Image(node::ImageCommand),
    /// Measure the control plane: the store alone, then the API over HTTPS.
    Bench(bench::BenchArgs),
    /// Print a kubeconfig with a new client certificate for a user (`--user`, `--group`).
    Kubeconfig(kubeconfig_cli::KubeconfigArgs),
    /// Start and build plugin projects; install and list Wasm plugins in a running cluster.
    #[command(subcommand)]
    Plugin(plugin_cli::PluginCommand),
    /// Make bootstrap tokens that let new nodes join (`token create`).
    #[command(subcommand)]
    Token(token_cli::TokenCommand),
    /// Back up a running cluster's store, and restore it into a new data directory.
    #[command(subcommand)]
    Snapshot(snapshot_cli::SnapshotCommand),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,hickory_server=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // Without background threads jemalloc purges an arena's dirty pages only when that arena
    // allocates again: memory freed by a thread that then idles (cranelift's compile heap, a
    // burst of pods) stays resident for good. With them, it goes back within the decay time.
    if let Err(error) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::warn!(%error, "jemalloc background threads not started: freed memory stays longer");
    }
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
        .build()?;
    let result = runtime.block_on(async {
        #[cfg(feature = "heap-profile")]
        heap_profile::spawn();
        match cli.command {
            Command::Server(args) => server::run(args).await,
            Command::Node(args) => node::run_node(args).await,
            Command::Up(args) => node::run_up(*args).await,
            Command::Join(args) => node::run_join(*args).await,
            Command::Image(command) => node::run_image(command).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Plugin(command) => plugin_cli::run(command).await,
            Command::Snapshot(command) => snapshot_cli::run(command).await,
            Command::Kubeconfig(args) => kubeconfig_cli::run(args),
            Command::Token(command) => token_cli::run(command).await,
        }
    });
    // A blocking task still running (a store read) must not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}
