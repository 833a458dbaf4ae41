//! `wasmkube token create`: a bootstrap token (a Secret in kube-system, as kubeadm's) and the `wasmkube join` line a new node runs with it.

use std::time::Duration;

use anyhow::{Context as _, bail};
use wasmkube_apiserver::auth::bootstrap::DEFAULT_NODE_TOKEN_GROUP;
use wasmkube_apiserver::auth::bootstrap_token;
use wasmkube_apiserver::config;

use crate::client::{Api, Cluster};

#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Create a bootstrap token and print it, then the `wasmkube join` command that uses it.
    Create(CreateArgs),
}

#[derive(clap::Args)]
pub struct CreateArgs {
    #[command(flatten)]
    cluster: Cluster,
    /// How long the token authenticates (0: forever), as kubeadm's `--ttl`.
    #[arg(long, default_value = "24h", value_parser = config::parse_duration)]
    ttl: Duration,
}

pub async fn run(command: TokenCommand) -> anyhow::Result<()> {
    let TokenCommand::Create(args) = command;
    let api = Api::connect(&args.cluster)?;
    let ca = api
        .ca_pem
        .as_deref()
        .context("the kubeconfig has no certificate-authority-data to pin")?;
    let pin = wasmkube_apiserver::certificates::ca_pin(ca)?;
    let token = bootstrap_token::generate();
    let expires = (!args.ttl.is_zero())
        .then(|| chrono::Duration::from_std(args.ttl))
        .transpose()?
        .map(|ttl| chrono::Utc::now() + ttl);
    let secret = bootstrap_token::secret(&token, expires, &[DEFAULT_NODE_TOKEN_GROUP])
        .context("a generated token is malformed")?;
    let url = format!(
        "{}/api/v1/namespaces/{}/secrets",
        api.server,
        bootstrap_token::NAMESPACE
    );
    let (code, body) = api.send(api.client.post(url).json(&secret)).await?;
    if code != 201 {
        bail!("creating the token's Secret: {code}: {}", body["message"]);
    }
    println!("{token}");
    println!(
        "wasmkube join {} --token {token} --discovery-token-ca-cert-hash {pin}",
        api.server
    );
    Ok(())
}
