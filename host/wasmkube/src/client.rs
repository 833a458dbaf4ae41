//! A client of a running cluster for the CLI's commands, from a kubeconfig: its current
//! context's server, CA and user (a bearer token or a client certificate).

use std::path::PathBuf;

use anyhow::Context;
use base64::Engine as _;
use serde_json::Value;

#[derive(clap::Args)]
pub struct Cluster {
    /// The kubeconfig to use (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
}

/// An HTTPS client for the cluster of a kubeconfig's current context.
pub struct Api {
    pub client: reqwest::Client,
    /// `https://HOST:PORT`, no trailing slash.
    pub server: String,
    /// The cluster's CA (PEM), if the kubeconfig names one.
    pub ca_pem: Option<String>,
}

impl Api {
    /// A client with the cluster's CA and the user's credentials: a bearer token, or a client
    /// certificate and key.
    pub fn connect(cluster: &Cluster) -> anyhow::Result<Api> {
        let path = cluster
            .kubeconfig
            .clone()
            .or_else(|| std::env::var_os("KUBECONFIG").map(PathBuf::from))
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube/config")))
            .context("no kubeconfig: pass --kubeconfig or set KUBECONFIG")?;
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let config: Value =
            serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let current = config["current-context"].as_str().unwrap_or_default();
        let named = |list: &str, name: &str| {
            config[list]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["name"] == name)
                .cloned()
        };
        let context = named("contexts", current)
            .or_else(|| config["contexts"][0].clone().into())
            .unwrap_or_default();
        let cluster = named(
            "clusters",
            context["context"]["cluster"].as_str().unwrap_or_default(),
        )
        .context("the kubeconfig has no cluster for its context")?;
        let user = named(
            "users",
            context["context"]["user"].as_str().unwrap_or_default(),
        )
        .unwrap_or_default();
        let mut builder = reqwest::Client::builder();
        let mut ca_pem = None;
        if let Some(ca) = cluster["cluster"]["certificate-authority-data"].as_str() {
            let pem = base64::engine::general_purpose::STANDARD
                .decode(ca)
                .context("certificate-authority-data is not base64")?;
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
            ca_pem = Some(String::from_utf8(pem).context("the CA is not PEM text")?);
        }
        let pem = |field: &str| -> anyhow::Result<Option<Vec<u8>>> {
            user["user"][field]
                .as_str()
                .map(|data| base64::engine::general_purpose::STANDARD.decode(data))
                .transpose()
                .with_context(|| format!("{field} is not base64"))
        };
        if let (Some(mut certificate), Some(key)) =
            (pem("client-certificate-data")?, pem("client-key-data")?)
        {
            certificate.extend(key);
            builder = builder.identity(reqwest::Identity::from_pem(&certificate)?);
        }
        if let Some(token) = user["user"]["token"].as_str() {
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {token}").parse()?,
            );
            builder = builder.default_headers(headers);
        }
        let server = cluster["cluster"]["server"]
            .as_str()
            .context("the cluster has no server")?
            .trim_end_matches('/')
            .to_string();
        Ok(Api {
            client: builder.build()?,
            server,
            ca_pem,
        })
    }

    /// Sends `request`; the status code and the JSON body (null when it is not JSON).
    pub async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<(u16, Value)> {
        let response = request.send().await?;
        let code = response.status().as_u16();
        Ok((code, response.json().await.unwrap_or(Value::Null)))
    }
}
