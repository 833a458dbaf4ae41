//! The server's part in the leader election: the parts of the control plane that must run once
//! (native controllers, supervisor, scheduler, compactor) run while this host holds the lease.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use wasmkube_apiserver::Server;
use wasmkube_controller::leader::{Elector, ServerLease, Timing};
use wasmkube_controller::{Manager, native, supervisor};
use wasmkube_runtime::Runtime;
use wasmkube_store::{Store, compactor};

/// A task aborted when this is dropped.
struct Aborting(tokio::task::JoinHandle<()>);

impl Drop for Aborting {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What runs on the elected host only: the host's native controllers, the controllers'
/// supervisor (every Wasm controller), the scheduler and the compactor. Dropping it stops them.
struct Elected {
    _native: Aborting,
    _supervisor: Aborting,
    _scheduler: wasmkube_scheduler::Scheduler,
    _compactor: Aborting,
}

/// Starts the elected parts over one informer cache, fresh for each term of leadership.
async fn lead(
    server: Arc<Server>,
    store: Arc<dyn Store>,
    runtime: Arc<Runtime>,
) -> anyhow::Result<Elected> {
    let manager = Manager::new(server.clone());
    let source = Arc::new(wasmkube_scheduler::source::Plugins {
        server: server.clone(),
        manager: manager.clone(),
        runtime: runtime.clone(),
    });
    let scheduler = wasmkube_scheduler::start(server.clone(), manager.clone(), source)
        .await
        .context("starting the scheduler")?;
    Ok(Elected {
        _native: Aborting(native::spawn(server.clone())),
        _supervisor: Aborting(supervisor::spawn(server, manager, runtime)),
        _scheduler: scheduler,
        _compactor: Aborting(compactor::spawn(store, Duration::from_secs(300))),
    })
}

/// This host's part in the election: the elector renewing or seeking the lease, and the task
/// that starts the elected parts while this host leads and drops them when it stops. Dropping
/// it stops both (the lease then expires); [`Election::release`] gives it up at once.
pub struct Election {
    stop: tokio::sync::oneshot::Sender<()>,
    elector: Aborting,
    _follower: Aborting,
}

/// The lease the elected parts run under, named as kube-controller-manager's (whose RBAC role
/// may write it).
const LEASE: &str = "kube-controller-manager";

/// A name unique to this process, as kube-controller-manager's: `HOSTNAME_<uuid>`.
fn identity() -> String {
    format!("{}_{}", crate::server::hostname(), uuid::Uuid::new_v4())
}

impl Election {
    /// Makes a first attempt at the lease at once (a single host leads, its parts started,
    /// before this returns), then keeps at it on a task of its own. The `sole` host of a store
    /// takes the lease whoever held it.
    pub async fn start(
        server: &Arc<Server>,
        store: Arc<dyn Store>,
        runtime: Arc<Runtime>,
        timing: Timing,
        sole: bool,
    ) -> anyhow::Result<Self> {
        let lease = ServerLease::new(server.clone(), LEASE).context("Leases are not served")?;
        let identity = identity();
        let mut elector = Elector::new(lease, identity.clone(), timing);
        if sole {
            elector = elector.sole();
        }
        let leading = elector.step().await;
        let start = {
            let server = server.clone();
            move || lead(server.clone(), store.clone(), runtime.clone())
        };
        let running = match leading {
            true => Some(start().await?),
            false => None,
        };
        tracing::info!(%identity, lease = LEASE, leading, "leader election");
        let (tx, rx) = tokio::sync::watch::channel(leading);
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let elector = tokio::spawn(elector.run(tx, async {
            let _ = stopped.await;
        }));
        let follower = tokio::spawn(follow(rx, running, start, timing.retry_period));
        Ok(Election {
            stop,
            elector: Aborting(elector),
            _follower: Aborting(follower),
        })
    }

    /// Stops the elected parts, then gives the lease up so that another host leads at once.
    pub async fn release(self) {
        let Election {
            stop,
            mut elector,
            _follower,
        } = self;
        drop(_follower);
        let _ = stop.send(());
        if tokio::time::timeout(Duration::from_secs(2), &mut elector.0)
            .await
            .is_err()
        {
            tracing::warn!("the leader lease was not released in time");
        }
    }
}

/// Runs the elected parts while `leading` says this host leads, starting them again (after a
/// retry period) when they fail to start; returns when the elector is gone.
async fn follow<F, Fut>(
    mut leading: tokio::sync::watch::Receiver<bool>,
    mut running: Option<Elected>,
    start: F,
    retry: Duration,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<Elected>>,
{
    loop {
        let now = *leading.borrow_and_update();
        if !now && running.take().is_some() {
            tracing::warn!(
                lease = LEASE,
                "no longer leading: the controllers, scheduler and compactor stopped"
            );
        }
        if now && running.is_none() {
            // Leadership lost while the parts start: they are dropped half-started.
            let started = tokio::select! {
                started = start() => started,
                lost = leading.wait_for(|leading| !*leading) => match lost {
                    Ok(_) => continue,
                    Err(_) => return,
                },
            };
            match started {
                Ok(elected) => {
                    tracing::info!(
                        lease = LEASE,
                        "leading: the controllers, scheduler and compactor started"
                    );
                    running = Some(elected);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "leading, but the elected parts did not start");
                    tokio::time::sleep(retry).await;
                    continue;
                }
            }
        }
        if leading.changed().await.is_err() {
            return;
        }
    }
}
