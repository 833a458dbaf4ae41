//! A throwaway single-member etcd for tests and benchmarks, not for production: it runs the
//! `etcd` binary from `PATH` (install it with `scripts/etcd.sh`) in a temporary directory on free
//! loopback ports, and kills it when dropped. [`EtcdServer::start_tls`] serves clients over TLS
//! and asks them for certificates, as a production etcd does.

use std::fs::File;
use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use tokio::time::{Instant, sleep};

use super::EtcdTls;

/// How long etcd may take to answer after being started.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts with fresh ports, in case a port was taken between choosing and binding it.
const ATTEMPTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum EtcdServerError {
    #[error(
        "the `etcd` binary is not on PATH; install it with scripts/etcd.sh (apt package etcd-server)"
    )]
    NotInstalled,
    #[error("etcd server: {0}")]
    Io(#[from] std::io::Error),
    #[error("etcd did not become healthy: {0}")]
    Unhealthy(String),
}

/// The files etcd serves clients over TLS with: its certificate and key, and the CA it
/// verifies clients' certificates against (`--client-cert-auth`); and what the health check
/// connects with.
#[derive(Debug)]
pub struct ServingTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: PathBuf,
    pub client: EtcdTls,
}

/// A running etcd; killed (and its data removed) on drop.
#[derive(Debug)]
pub struct EtcdServer {
    child: Child,
    endpoint: String,
    _dir: TempDir,
}

impl EtcdServer {
    /// Starts etcd and waits until it serves requests. Values up to 32 MiB are accepted.
    pub async fn start() -> Result<Self, EtcdServerError> {
        Self::start_with(None).await
    }

    /// Starts etcd serving clients over TLS (`https://` endpoints), accepting only clients with
    /// a certificate of `tls.client_ca_file`.
    pub async fn start_tls(tls: &ServingTls) -> Result<Self, EtcdServerError> {
        Self::start_with(Some(tls)).await
    }

    async fn start_with(tls: Option<&ServingTls>) -> Result<Self, EtcdServerError> {
        let binary = find_etcd().ok_or(EtcdServerError::NotInstalled)?;
        let mut last = None;
        for _ in 0..ATTEMPTS {
            match Self::try_start(&binary, tls).await {
                Ok(server) => return Ok(server),
                Err(err) => {
                    tracing::warn!(error = %err, "etcd failed to start, retrying");
                    last = Some(err);
                }
            }
        }
        Err(last.unwrap_or_else(|| EtcdServerError::Unhealthy("no attempt made".into())))
    }

    /// The client URL, e.g. `http://127.0.0.1:41234` (`https://` for [`EtcdServer::start_tls`]).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The client URLs, as [`EtcdStore::connect`](super::EtcdStore::connect) takes them.
    pub fn endpoints(&self) -> Vec<String> {
        vec![self.endpoint.clone()]
    }

    async fn try_start(
        binary: &PathBuf,
        tls: Option<&ServingTls>,
    ) -> Result<Self, EtcdServerError> {
        let dir = tempfile::Builder::new().prefix("etcd-").tempdir()?;
        let (client_port, peer_port) = free_ports()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoint = format!("{scheme}://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log_path = dir.path().join("etcd.log");
        let mut command = Command::new(binary);
        if let Some(tls) = tls {
            command
                .arg(format!("--cert-file={}", tls.cert_file.display()))
                .arg(format!("--key-file={}", tls.key_file.display()))
                .arg(format!(
                    "--trusted-ca-file={}",
                    tls.client_ca_file.display()
                ))
                .arg("--client-cert-auth");
        }
        let child = command
            .arg("--name=test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .arg("--max-request-bytes=33554432")
            .arg("--quota-backend-bytes=8589934592")
            .arg("--max-txn-ops=10000")
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log_path)?)
            .spawn()?;
        let mut server = Self {
            child,
            endpoint,
            _dir: dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = server.child.try_wait()? {
                return Err(EtcdServerError::Unhealthy(format!(
                    "etcd exited with {status}: {}",
                    log_tail(&log_path)
                )));
            }
            let options =
                tls.map(|tls| etcd_client::ConnectOptions::new().with_tls(tls.client.options()));
            match etcd_client::Client::connect([server.endpoint.as_str()], options).await {
                Ok(mut client) => match client.status().await {
                    Ok(_) => return Ok(server),
                    Err(err) if Instant::now() > deadline => {
                        return Err(EtcdServerError::Unhealthy(format!(
                            "{err}; log: {}",
                            log_tail(&log_path)
                        )));
                    }
                    Err(_) => {}
                },
                Err(err) if Instant::now() > deadline => {
                    return Err(EtcdServerError::Unhealthy(err.to_string()));
                }
                Err(_) => {}
            }
            sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_etcd() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
}

/// Two distinct free loopback ports (both held until both are chosen).
fn free_ports() -> std::io::Result<(u16, u16)> {
    let a = TcpListener::bind("127.0.0.1:0")?;
    let b = TcpListener::bind("127.0.0.1:0")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

/// The end of etcd's log, for error messages.
fn log_tail(path: &std::path::Path) -> String {
    let mut log = String::new();
    if let Ok(mut file) = File::open(path) {
        let _ = file.read_to_string(&mut log);
    }
    let start = log.len().saturating_sub(2000);
    let start = (start..log.len())
        .find(|&i| log.is_char_boundary(i))
        .unwrap_or(log.len());
    log[start..].to_owned()
}
