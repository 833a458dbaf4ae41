//! `wasmkube token create`: a bootstrap token (a Secret in kube-system, as kubeadm's) and the `wasmkube join` line a new node runs with it; with `--upload-certs`, the control-plane material a new control-plane host needs, encrypted.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use wasmkube_apiserver::auth::bootstrap::DEFAULT_NODE_TOKEN_GROUP;
use wasmkube_apiserver::auth::bootstrap_token;
use wasmkube_apiserver::config;
use wasmkube_model::resource::RBAC_GROUP;

use crate::client::{Api, Cluster};
use crate::cluster_certs::{self, CertificateKey, Material};

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
    /// Also upload this control-plane host's CA, ServiceAccount key and admin token (from
    /// `DATA_DIR/pki`) encrypted into the Secret kube-system/wasmkube-certs for two hours, as
    /// kubeadm's `init phase upload-certs`, and print the key and the `wasmkube join
    /// --control-plane` line that uses it. The key is shown once and kept nowhere.
    #[arg(long)]
    upload_certs: bool,
    /// The key (64 hexadecimal digits) to encrypt with, as kubeadm's `--certificate-key`;
    /// a new random one by default.
    #[arg(long, requires = "upload_certs", value_name = "KEY")]
    certificate_key: Option<String>,
    /// This control-plane host's data directory (`wasmkube server --data-dir`), read with
    /// `--upload-certs`.
    #[arg(long, default_value = ".data")]
    data_dir: PathBuf,
}

pub async fn run(command: TokenCommand) -> anyhow::Result<()> {
    let TokenCommand::Create(args) = command;
    let api = Api::connect(&args.cluster)?;
    let ca = api
        .ca_pem
        .as_deref()
        .context("the kubeconfig has no certificate-authority-data to pin")?;
    let pin = wasmkube_apiserver::certificates::ca_pin(ca)?;
    // Read (and the key checked) before anything is written.
    let upload = if args.upload_certs {
        let key = match &args.certificate_key {
            Some(hex) => CertificateKey::parse(hex)?,
            None => CertificateKey::generate()?,
        };
        let material = Material::read(&args.data_dir.join("pki"))?;
        if material.ca_pem().trim() != ca.trim() {
            bail!(
                "{}: its CA is not the cluster's of the kubeconfig",
                args.data_dir.join("pki").display()
            );
        }
        Some((key, material))
    } else {
        None
    };
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
    let join = format!(
        "wasmkube join {} --token {token} --discovery-token-ca-cert-hash {pin}",
        api.server
    );
    println!("{token}");
    match upload {
        None => println!("{join}"),
        Some((key, material)) => {
            upload_certs(&api, &material, &key, &body).await?;
            println!("{join} --control-plane --certificate-key {}", key.hex());
        }
    }
    Ok(())
}

/// Stores `material` sealed with `key` in the Secret kube-system/wasmkube-certs (replacing
/// one uploaded before), owned by the token's Secret `token`, and lets bootstrap tokens get
/// it (kubeadm's `kubeadm:kubeadm-certs` Role and RoleBinding).
async fn upload_certs(
    api: &Api,
    material: &Material,
    key: &CertificateKey,
    token: &Value,
) -> anyhow::Result<()> {
    let owner = json!({
        "apiVersion": "v1", "kind": "Secret",
        "name": token["metadata"]["name"], "uid": token["metadata"]["uid"],
    });
    let expires = chrono::Utc::now() + cluster_certs::TTL;
    let mut secret = material.secret(key, expires, Some(owner))?;
    let secrets = format!(
        "{}/api/v1/namespaces/{}/secrets",
        api.server,
        cluster_certs::NAMESPACE
    );
    let named = format!("{secrets}/{}", cluster_certs::SECRET_NAME);
    let (code, current) = api.send(api.client.get(&named)).await?;
    let (code, body) = match code {
        404 => api.send(api.client.post(&secrets).json(&secret)).await?,
        200 => {
            secret["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
            api.send(api.client.put(&named).json(&secret)).await?
        }
        _ => bail!("reading {named}: {code}: {}", current["message"]),
    };
    if !matches!(code, 200 | 201) {
        bail!(
            "storing the certificates' Secret: {code}: {}",
            body["message"]
        );
    }
    let rbac = format!(
        "{}/apis/{RBAC_GROUP}/v1/namespaces/{}",
        api.server,
        cluster_certs::NAMESPACE
    );
    let role = json!({
        "apiVersion": format!("{RBAC_GROUP}/v1"), "kind": "Role",
        "metadata": {"name": cluster_certs::ROLE, "namespace": cluster_certs::NAMESPACE},
        "rules": [{"apiGroups": [""], "resources": ["secrets"],
                   "resourceNames": [cluster_certs::SECRET_NAME], "verbs": ["get"]}],
    });
    let binding = json!({
        "apiVersion": format!("{RBAC_GROUP}/v1"), "kind": "RoleBinding",
        "metadata": {"name": cluster_certs::ROLE, "namespace": cluster_certs::NAMESPACE},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": cluster_certs::ROLE},
        "subjects": [{"apiGroup": RBAC_GROUP, "kind": "Group", "name": DEFAULT_NODE_TOKEN_GROUP}],
    });
    for (plural, object) in [("roles", role), ("rolebindings", binding)] {
        let (code, body) = api
            .send(api.client.post(format!("{rbac}/{plural}")).json(&object))
            .await?;
        if !matches!(code, 201 | 409) {
            bail!(
                "creating the {plural} {}: {code}: {}",
                cluster_certs::ROLE,
                body["message"]
            );
        }
    }
    Ok(())
}
