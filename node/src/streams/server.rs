//! Serving the agent's API over HTTPS (HTTP/1.1 with upgrades), with a certificate the agent
//! makes for itself at start; the apiserver does not verify it, as kube-apiserver does not
//! verify kubelets' by default. The bearer token is what authenticates.

use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::{Streams, router};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("listening on port {port} for the agent API: {source}")]
    Bind { port: u16, source: std::io::Error },
    #[error("making the agent's serving certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("the agent's TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// Listens on `port` on every address; 0, or a port already taken (another agent on this
/// machine), gets a free one: the Node publishes whichever it is.
pub async fn bind(port: u16) -> Result<TcpListener, ServeError> {
    match TcpListener::bind(("0.0.0.0", port)).await {
        Err(e) if port != 0 && e.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::warn!(
                port,
                "the agent API's port is taken; listening on a free one"
            );
            TcpListener::bind(("0.0.0.0", 0))
                .await
                .map_err(|source| ServeError::Bind { port: 0, source })
        }
        bound => bound.map_err(|source| ServeError::Bind { port, source }),
    }
}

/// A self-signed certificate for the node's names, served as HTTP/1.1 only (upgrades).
fn tls_config(names: Vec<String>) -> Result<Arc<rustls::ServerConfig>, ServeError> {
    let certified = rcgen::generate_simple_self_signed(names)?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves the API on `listener` until it fails; `names` go into the certificate.
pub async fn serve(
    listener: TcpListener,
    streams: Arc<Streams>,
    names: Vec<String>,
) -> Result<(), ServeError> {
    let acceptor = TlsAcceptor::from(tls_config(names)?);
    let app = router(streams);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accepting an agent API connection");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "agent API TLS handshake failed");
                    return;
                }
            };
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "agent API connection ended with an error");
            }
        });
    }
}
