//! `wasmkube join --control-plane`: a further control-plane host fetches the shared `pki/` files the first uploaded (encrypted) with a bootstrap token, writes them, and serves as `wasmkube server` does.

use anyhow::Context as _;

use crate::cluster_certs::{self, CertificateKey, Material};
use crate::node::{self, JoinArgs};
use crate::server;
use wasmkube_node::api::Api;

/// The Secret's path in the API.
fn secret_path() -> String {
    format!(
        "/api/v1/namespaces/{}/secrets/{}",
        cluster_certs::NAMESPACE,
        cluster_certs::SECRET_NAME
    )
}

/// Joins as a control-plane host: unless `DATA_DIR/pki` holds the CA's key already (the host
/// joined before), the cluster CA is discovered and checked against the pin, the Secret
/// kube-system/wasmkube-certs read with the bootstrap token and opened with the certificate key,
/// and its files written into `DATA_DIR/pki`; then this host serves (its own serving
/// certificate and admin kubeconfig are made at start, as for any server) and joins the leader
/// election.
pub async fn join(args: JoinArgs) -> anyhow::Result<()> {
    if args.server.store == "embedded" {
        anyhow::bail!(
            "--control-plane: a further control-plane host shares the first's etcd; give --store etcd://… (or etcds://…)"
        );
    }
    let key = CertificateKey::parse(
        args.certificate_key
            .as_deref()
            .context("--control-plane needs --certificate-key (`wasmkube token create --upload-certs` prints it)")?,
    )?;
    let pki = args.server.data_dir.join("pki");
    if pki.join("ca.key").exists() {
        tracing::info!(pki = %pki.display(), "joined before: serving with the CA kept");
    } else {
        let connection =
            node::token_connection(&args.servers, &args.token, &args.ca_cert_hash).await?;
        let ca_pem = connection.ca_pem.clone().unwrap_or_default();
        let api = Api::new(&connection)?;
        let absent = || {
            format!(
                "no Secret {}/{} this token may read: run `wasmkube token create --upload-certs` on a control-plane host",
                cluster_certs::NAMESPACE,
                cluster_certs::SECRET_NAME
            )
        };
        let secret = match api.get(&secret_path()).await {
            Ok(Some(secret)) => secret,
            Ok(None) => anyhow::bail!(absent()),
            // Without the Role (never uploaded), or for a token of another group.
            Err(e) if e.status() == Some(reqwest::StatusCode::FORBIDDEN) => {
                return Err(anyhow::Error::from(e).context(absent()));
            }
            Err(e) => return Err(e.into()),
        };
        let material = Material::open(&secret, &key, chrono::Utc::now())?;
        if material.ca_pem().trim() != ca_pem.trim() {
            anyhow::bail!(
                "the uploaded certificates are of another CA than the pinned cluster's: refusing them"
            );
        }
        wasmkube_apiserver::tls::create_private_dir(&args.server.data_dir)
            .with_context(|| format!("creating {}", args.server.data_dir.display()))?;
        material.write(&pki)?;
        tracing::info!(pki = %pki.display(), "joined as a control-plane host");
    }
    server::run(args.server).await
}
