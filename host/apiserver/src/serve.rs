//! Serving the router over TLS (HTTP/1.1 and HTTP/2, with upgrades) on a TCP listener, with
//! bounds that idle or hostile clients cannot exhaust: handshake and header timeouts, and a
//! cap on connections past which the oldest connection still in its handshake makes room.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;
use tokio_rustls::TlsAcceptor;

/// A client has this long to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// An HTTP/1 client has this long to send a request's headers (Go's `ReadHeaderTimeout` as
/// kube-apiserver sets it is 32 s).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(32);
/// The most connections served at once, whatever the open-file limit allows.
pub const MAX_CONNECTIONS: usize = 32_768;
/// File descriptors kept for everything but connections (store, plugins, logs).
const RESERVED_FDS: u64 = 1024;
/// How long to wait before accepting again after `accept` failed (say, out of descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Raises the open-file limit to its hard limit (as Go programs such as kube-apiserver do),
/// and returns the number of connections it leaves room for.
fn connection_cap() -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.maximum != limit.current {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
    let files = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    usize::try_from(files.saturating_sub(RESERVED_FDS))
        .unwrap_or(usize::MAX)
        .clamp(64, MAX_CONNECTIONS)
}

/// Connections that have not finished their TLS handshake, oldest first: the first to go
/// when the cap is reached (a client that has finished its handshake is not idle).
#[derive(Default)]
struct Handshakes(Mutex<VecDeque<(AbortHandle, Arc<AtomicBool>)>>);

impl Handshakes {
    fn push(&self, task: AbortHandle, pending: Arc<AtomicBool>, cap: usize) {
        let mut queue = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if queue.len() >= cap {
            queue.retain(|(_, pending)| pending.load(Ordering::Relaxed));
        }
        queue.push_back((task, pending));
    }

    /// Ends the oldest connection still in its handshake; whether there was one.
    fn evict_oldest(&self) -> bool {
        let mut queue = self.0.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((task, pending)) = queue.pop_front() {
            if pending.load(Ordering::Relaxed) {
                task.abort();
                return true;
            }
        }
        false
    }
}

/// Accepts connections for ever; each connection is served on its own task. An `accept`
/// error (out of descriptors, a reset) is logged and retried, never the end of serving.
pub async fn serve_tls(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    app: Router,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(config);
    let cap = connection_cap();
    let slots = Arc::new(Semaphore::new(cap));
    let handshakes = Arc::new(Handshakes::default());
    tracing::debug!(cap, "serving connections");
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) if handshakes.evict_oldest() => match slots.clone().acquire_owned().await {
                Ok(permit) => permit,
                Err(_) => continue,
            },
            Err(_) => {
                tracing::debug!(%peer, cap, "too many connections: closing a new one");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let pending = Arc::new(AtomicBool::new(true));
        let task = tokio::spawn(connection(
            acceptor.clone(),
            tcp,
            peer,
            app.clone(),
            pending.clone(),
            permit,
        ));
        handshakes.push(task.abort_handle(), pending, cap);
    }
}

/// Serves one connection: its handshake within [`HANDSHAKE_TIMEOUT`], then its requests.
async fn connection(
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    app: Router,
    pending: Arc<AtomicBool>,
    _slot: OwnedSemaphorePermit,
) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    pending.store(false, Ordering::Relaxed);
    // The certificate was verified against the cluster CA in the handshake.
    let certificate = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| crate::auth::CertificateUser::from_der(leaf));
    let app = tower::ServiceExt::map_request(
        app,
        move |mut request: http::Request<hyper::body::Incoming>| {
            if let Some(user) = &certificate {
                request.extensions_mut().insert(user.clone());
            }
            request
        },
    );
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let service = TowerToHyperService::new(app);
    if let Err(e) = builder
        .serve_connection_with_upgrades(TokioIo::new(tls), service)
        .await
    {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
