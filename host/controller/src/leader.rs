//! Leader election over a `coordination.k8s.io/v1` Lease, as client-go's leaderelection: the parts of the control plane that must run once act only on the host holding the lease.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;
use wasmkube_apiserver::Server;
use wasmkube_apiserver::error::ApiError;
use wasmkube_apiserver::registry::{Update, WriteOptions, create_object, update_with};
use wasmkube_model::resource::ResourceInfo;

/// The namespace the control plane's leases live in.
pub const NAMESPACE: &str = "kube-system";

/// How long a lease holds, how long a leader keeps trying to renew before it stops acting, and
/// how often it is tried (kube-controller-manager's `--leader-elect-*` defaults: 15 s, 10 s, 2 s).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl Timing {
    /// Fails unless a leader stops acting before its lease could be taken: the renew deadline
    /// shorter than the lease, the retry period shorter than the renew deadline.
    pub fn check(&self) -> Result<(), String> {
        if self.renew_deadline >= self.lease_duration {
            return Err("the renew deadline must be shorter than the lease duration".into());
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err("the retry period must be above zero and below the renew deadline".into());
        }
        Ok(())
    }
}

/// One lease as the elector reads and writes it: the object, and the resourceVersion a write
/// of it must still find.
#[async_trait]
pub trait Leases: Send + Sync {
    /// The lease and its resourceVersion, `None` when there is none.
    async fn get(&self) -> Result<Option<(Value, i64)>, ApiError>;
    /// Creates the lease (it is given its name); another's creation first is an error.
    async fn create(&self, lease: Value) -> Result<(), ApiError>;
    /// Replaces the lease if it is still at `revision`, else fails with a conflict.
    async fn update(&self, lease: Value, revision: i64) -> Result<(), ApiError>;
}

/// The lease `name` in `kube-system`, read and written through the server's registry.
pub struct ServerLease {
    server: Arc<Server>,
    info: Arc<ResourceInfo>,
    name: String,
}

impl ServerLease {
    /// `None` when the server does not serve Leases.
    pub fn new(server: Arc<Server>, name: &str) -> Option<Self> {
        let info = server
            .registry()
            .by_kind("coordination.k8s.io/v1", "Lease")?
            .clone();
        Some(ServerLease {
            server,
            info,
            name: name.to_string(),
        })
    }
}

#[async_trait]
impl Leases for ServerLease {
    async fn get(&self) -> Result<Option<(Value, i64)>, ApiError> {
        let stored = self
            .server
            .objects
            .get(&self.info, Some(NAMESPACE), &self.name)
            .await?;
        Ok(stored.map(|s| (s.object, s.revision)))
    }

    async fn create(&self, mut lease: Value) -> Result<(), ApiError> {
        lease["metadata"]["name"] = json!(self.name);
        let (server, info) = (&self.server, &self.info);
        let opts = WriteOptions::INTERNAL;
        create_object(server, info, Some(NAMESPACE), lease, opts, &mut Vec::new()).await?;
        Ok(())
    }

    async fn update(&self, mut lease: Value, revision: i64) -> Result<(), ApiError> {
        lease["metadata"]["resourceVersion"] = json!(revision.to_string());
        let update = Update::internal(&self.info, Some(NAMESPACE), &self.name);
        update_with(
            &self.server,
            &update,
            |_| Ok(lease.clone()),
            &mut Vec::new(),
        )
        .await?;
        Ok(())
    }
}

/// Where this host stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Another host leads, or none does yet.
    Follower,
    /// This host leads; `renewed` is when its last successful write of the lease began. It
    /// stops leading at `renewed + renew_deadline`, before anyone may take the lease (at
    /// `renewed + lease_duration` at the earliest, by their own clocks).
    Leader { renewed: Instant },
}

/// The lease's fields the election reads, and when this host last saw them change.
#[derive(Clone, Debug, PartialEq)]
struct Observed {
    holder: String,
    revision: i64,
    duration: Duration,
    at: Instant,
}

/// Elects this host (`identity`) leader over one lease: call [`Elector::step`] every
/// retry period, or hand it to [`Elector::run`].
pub struct Elector<L> {
    leases: L,
    identity: String,
    timing: Timing,
    state: State,
    observed: Option<Observed>,
    /// This host is the only one that can reach the store (the embedded one, which one
    /// process opens): it takes the lease at once, from an earlier process of its own too.
    sole: bool,
}

fn text(lease: &Value, field: &str) -> Option<String> {
    lease["spec"][field].as_str().map(str::to_string)
}

impl<L: Leases> Elector<L> {
    pub fn new(leases: L, identity: String, timing: Timing) -> Self {
        Elector {
            leases,
            identity,
            timing,
            state: State::Follower,
            observed: None,
            sole: false,
        }
    }

    /// An elector for the only host that can reach the store: a lease left by an earlier
    /// process (killed without releasing it) is taken without waiting for it to expire.
    pub fn sole(mut self) -> Self {
        self.sole = true;
        self
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.state, State::Leader { .. })
    }

    /// When a leader stops leading unless it renews first.
    fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Leader { renewed } => Some(renewed + self.timing.renew_deadline),
            State::Follower => None,
        }
    }

    /// One attempt to acquire or renew the lease; returns whether this host leads now. A leader
    /// whose attempts fail (or hang) until the renew deadline stops leading.
    pub async fn step(&mut self) -> bool {
        let started = Instant::now();
        let attempt = match self.deadline() {
            Some(deadline) if deadline <= started => Ok(Ok(false)),
            Some(deadline) => tokio::time::timeout_at(deadline, self.try_acquire()).await,
            // A follower's attempt is bounded too: an answer held up (a partition that heals)
            // would be acted on long after the lease it read had moved on.
            None => {
                let bound = self.timing.renew_deadline;
                tokio::time::timeout(bound, self.try_acquire()).await
            }
        };
        match attempt {
            Ok(Ok(true)) => self.state = State::Leader { renewed: started },
            Ok(Ok(false)) => self.state = State::Follower,
            Ok(Err(e)) => {
                tracing::debug!(identity = %self.identity, error = %e, "leader election: lease not written");
                if self.deadline().is_some_and(|d| d <= Instant::now()) {
                    self.state = State::Follower;
                }
            }
            Err(_elapsed) => self.state = State::Follower,
        }
        self.is_leader()
    }

    /// Reads the lease and takes it if it is free, expired or ours; `Ok(false)` when another
    /// holds it, or wrote it first.
    async fn try_acquire(&mut self) -> Result<bool, ApiError> {
        let duration = self.timing.lease_duration.as_secs().max(1);
        let read = self.leases.get().await?;
        // The lease is as read when the answer came, not when the request was sent: a read
        // held up in the network must not age the lease by the time it was held.
        let now = Instant::now();
        let stamp = now_micro();
        let Some((lease, revision)) = read else {
            let lease = json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"namespace": NAMESPACE},
                "spec": {
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": duration,
                    "acquireTime": stamp, "renewTime": stamp,
                    "leaseTransitions": 0,
                },
            });
            return written(self.leases.create(lease).await);
        };
        let holder = text(&lease, "holderIdentity").unwrap_or_default();
        let seen = Observed {
            holder: holder.clone(),
            revision,
            duration: Duration::from_secs(
                lease["spec"]["leaseDurationSeconds"].as_u64().unwrap_or(0),
            ),
            at: now,
        };
        // The lease's age is measured on this host's clock from when it was seen to change,
        // never from the times written in it (hosts' clocks differ).
        let observed = match self.observed.take() {
            Some(o) if o.holder == seen.holder && o.revision == seen.revision => o,
            _ => seen,
        };
        // A duration past what the clock can add (written by anyone who may write the Lease)
        // never ends.
        let expired = self.sole
            || observed
                .at
                .checked_add(observed.duration)
                .is_some_and(|end| end <= now);
        self.observed = Some(observed);
        let ours = holder == self.identity;
        if !holder.is_empty() && !ours && !expired {
            return Ok(false);
        }
        let mut lease = lease;
        let spec = &mut lease["spec"];
        if !ours {
            spec["acquireTime"] = json!(stamp);
            let transitions = spec["leaseTransitions"].as_i64().unwrap_or(0);
            spec["leaseTransitions"] =
                json!(transitions.saturating_add(1).min(i64::from(i32::MAX)));
        }
        spec["holderIdentity"] = json!(self.identity);
        spec["leaseDurationSeconds"] = json!(duration);
        spec["renewTime"] = json!(stamp);
        written(self.leases.update(lease, revision).await)
    }

    /// Gives the lease up if this host holds it (holder emptied, as client-go's
    /// ReleaseOnCancel), so another host takes it without waiting for it to expire.
    pub async fn release(&mut self) {
        if !self.is_leader() {
            return;
        }
        self.state = State::Follower;
        let result = async {
            let Some((mut lease, revision)) = self.leases.get().await? else {
                return Ok(());
            };
            if text(&lease, "holderIdentity").as_deref() != Some(&self.identity) {
                return Ok(());
            }
            let stamp = now_micro();
            let spec = &mut lease["spec"];
            spec["holderIdentity"] = json!("");
            spec["leaseDurationSeconds"] = json!(1);
            spec["acquireTime"] = json!(stamp);
            spec["renewTime"] = json!(stamp);
            self.leases.update(lease, revision).await
        };
        if let Err(e) = result.await {
            tracing::warn!(identity = %self.identity, error = %e, "releasing the leader lease");
        }
    }

    /// Steps every retry period (and at once when a leader's renew deadline comes), telling
    /// `leading` whether this host leads, until `shutdown` resolves; then releases the lease.
    pub async fn run(mut self, leading: watch::Sender<bool>, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let next = Instant::now() + self.timing.retry_period;
            tokio::select! {
                now = self.step() => {
                    leading.send_if_modified(|l| std::mem::replace(l, now) != now);
                }
                () = &mut shutdown => break,
            }
            let wake = self.deadline().map_or(next, |d| d.min(next));
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                () = &mut shutdown => break,
            }
        }
        leading.send_replace(false);
        self.release().await;
    }
}

/// Now as a Lease's MicroTime fields write it.
fn now_micro() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A conflict or an existing lease means another host wrote first: not acquired.
fn written(result: Result<(), ApiError>) -> Result<bool, ApiError> {
    match result {
        Ok(()) => Ok(true),
        Err(ApiError::Conflict { .. } | ApiError::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "leader_tests.rs"]
mod tests;
