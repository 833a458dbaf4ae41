//! The bench's HTTPS client of the apiserver: trusts its CA and sends its bearer token or a user's client certificate.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{RequestBuilder, Response};
use serde_json::{Value, json};
use tokio::time::timeout;
use wasmkube_apiserver::tls::Identity;

/// The longest one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of payload per ConfigMap.
const PAYLOAD: usize = 1024;

pub fn collection(namespace: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/configmaps")
}

pub fn name(i: usize) -> String {
    format!("cm-{i:07}")
}

/// A ConfigMap of about [`PAYLOAD`] bytes carrying its send time in microseconds.
fn config_map(i: usize, sent: u64, version: Option<&str>) -> Value {
    let mut metadata = json!({"name": name(i)});
    if let Some(version) = version {
        metadata["resourceVersion"] = json!(version);
    }
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": {"sent": sent.to_string(), "payload": "x".repeat(PAYLOAD)},
    })
}

/// A client of the bench's apiserver: HTTPS trusting its CA, as the admin or as a user.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    base: Arc<str>,
}

impl Api {
    /// As the admin token's user.
    pub fn new(port: u16, identity: &Identity) -> anyhow::Result<Api> {
        let mut headers = HeaderMap::new();
        let mut token = HeaderValue::from_str(&format!("Bearer {}", identity.token))?;
        token.set_sensitive(true);
        headers.insert(AUTHORIZATION, token);
        Api::build(
            port,
            identity,
            reqwest::Client::builder().default_headers(headers),
        )
    }

    /// As `user` (no group), with a client certificate the cluster CA issues.
    pub fn as_user(port: u16, identity: &Identity, user: &str) -> anyhow::Result<Api> {
        let (cert, key) = identity.issue_client(user, None)?;
        let id = reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes())?;
        Api::build(port, identity, reqwest::Client::builder().identity(id))
    }

    fn build(
        port: u16,
        identity: &Identity,
        builder: reqwest::ClientBuilder,
    ) -> anyhow::Result<Api> {
        let client = builder
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(identity.ca_pem.as_bytes())?)
            .build()
            .context("building the HTTPS client")?;
        Ok(Api {
            client,
            base: format!("https://127.0.0.1:{port}").into(),
        })
    }

    /// Sends with a timeout; a non-2xx status is an error carrying the response body.
    async fn send(&self, request: RequestBuilder) -> anyhow::Result<Response> {
        let response = request.timeout(REQUEST_TIMEOUT).send().await?;
        let status = response.status();
        if !status.is_success() {
            bail!("{status}: {}", response.text().await.unwrap_or_default());
        }
        Ok(response)
    }

    pub async fn create_namespace(&self, namespace: &str) -> anyhow::Result<()> {
        let body =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
        self.post("/api/v1/namespaces", &body).await
    }

    /// POSTs `body` to the collection at `path`.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<()> {
        let url = format!("{}{path}", self.base);
        self.send(self.client.post(url).json(body))
            .await?
            .bytes()
            .await?;
        Ok(())
    }

    /// Creates ConfigMap `i`, returning its resourceVersion.
    pub async fn create(&self, namespace: &str, i: usize, sent: u64) -> anyhow::Result<String> {
        let url = format!("{}{}", self.base, collection(namespace));
        let request = self.client.post(url).json(&config_map(i, sent, None));
        let created: Value = self.send(request).await?.json().await?;
        let version = created.pointer("/metadata/resourceVersion");
        Ok(version
            .and_then(Value::as_str)
            .context("no resourceVersion")?
            .to_owned())
    }

    /// GETs `path`, reading the whole body.
    pub async fn get(&self, path: &str) -> anyhow::Result<()> {
        let url = format!("{}{path}", self.base);
        self.send(self.client.get(url)).await?.bytes().await?;
        Ok(())
    }

    /// Lists ConfigMaps, returning how many came and the continue token.
    pub async fn list(
        &self,
        namespace: &str,
        limit: Option<usize>,
        token: Option<&str>,
    ) -> anyhow::Result<(usize, Option<String>)> {
        let mut query = Vec::new();
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        if let Some(token) = token {
            query.push(("continue", token.to_owned()));
        }
        let url = format!("{}{}", self.base, collection(namespace));
        let list: Value = self
            .send(self.client.get(url).query(&query))
            .await?
            .json()
            .await?;
        let items = list["items"].as_array().map_or(0, Vec::len);
        let token = list.pointer("/metadata/continue").and_then(Value::as_str);
        Ok((items, token.filter(|t| !t.is_empty()).map(str::to_owned)))
    }

    /// Replaces ConfigMap `i` if it is still at `version`.
    pub async fn update(&self, namespace: &str, i: usize, version: &str) -> anyhow::Result<()> {
        let url = format!("{}{}/{}", self.base, collection(namespace), name(i));
        let request = self.client.put(url).json(&config_map(i, 1, Some(version)));
        self.send(request).await?.bytes().await?;
        Ok(())
    }

    pub async fn delete(&self, namespace: &str, i: usize) -> anyhow::Result<()> {
        let url = format!("{}{}/{}", self.base, collection(namespace), name(i));
        self.send(self.client.delete(url)).await?.bytes().await?;
        Ok(())
    }

    /// Starts a watch of the namespace's ConfigMaps; the server ends it after `limit`.
    pub async fn watch(&self, namespace: &str, limit: Duration) -> anyhow::Result<Response> {
        let url = format!("{}{}", self.base, collection(namespace));
        let query = [
            ("watch", "true".to_owned()),
            ("timeoutSeconds", limit.as_secs().to_string()),
        ];
        let request = self.client.get(url).query(&query).send();
        let response = timeout(REQUEST_TIMEOUT, request)
            .await
            .context("the watch did not start")??;
        let status = response.status();
        if !status.is_success() {
            bail!("{status}: {}", response.text().await.unwrap_or_default());
        }
        Ok(response)
    }
}
