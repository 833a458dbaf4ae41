//! `wasmkube kubeconfig`: prints a kubeconfig with a new client certificate for a user, signed by the data directory's CA.

use std::path::PathBuf;

use anyhow::Context as _;
use wasmkube_apiserver::tls::Identity;

#[derive(clap::Args)]
pub struct KubeconfigArgs {
    /// The user (the certificate's CN), e.g. alice.
    #[arg(long)]
    user: String,
    /// The user's group (the certificate's O), e.g. system:masters.
    #[arg(long)]
    group: Option<String>,
    /// The server's data directory (its `pki/` holds the CA key).
    #[arg(long, default_value = "/var/lib/wasmkube")]
    data_dir: PathBuf,
    /// The API server's URL (default: the one of the data directory's admin kubeconfig).
    #[arg(long)]
    server: Option<String>,
}

pub fn run(args: KubeconfigArgs) -> anyhow::Result<()> {
    let identity = Identity::load(&args.data_dir.join("pki"))
        .with_context(|| format!("reading the CA in {}", args.data_dir.display()))?;
    let server = match args.server {
        Some(server) => server,
        None => admin_server(&args.data_dir)?,
    };
    print!(
        "{}",
        identity.client_kubeconfig(&server, &args.user, args.group.as_deref())?
    );
    Ok(())
}

/// The server URL of the admin kubeconfig the server wrote.
fn admin_server(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = data_dir.join("kubeconfig");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let config: serde_yaml::Value =
        serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    config["clusters"][0]["cluster"]["server"]
        .as_str()
        .map(String::from)
        .with_context(|| format!("{} names no server: pass --server", path.display()))
}
