//! Taking a pod down: its containers stopped within the grace period and removed, then its
//! network, namespaces, cgroup and volumes given back.

use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::core::v1::Pod;
use tokio::time::Instant;

use super::event::Subject;
use super::slot::Slot;
use super::{Context, Worker, host_ports, volumes};
use crate::logs;
use crate::runtime::Exit;

/// How many times removing a container or detaching a network is tried before giving up.
const REMOVE_ATTEMPTS: u32 = 4;

impl Worker {
    /// Stops every running container: SIGTERM, then SIGKILL once `grace` has passed.
    pub(super) async fn stop(&mut self, grace: Duration) {
        let pod = self.desired.borrow().clone().unwrap_or_default();
        let running: Vec<String> = self
            .slots
            .iter()
            .filter_map(|s| s.running().map(str::to_string))
            .collect();
        if running.is_empty() {
            return;
        }
        for slot in self.slots.iter().filter(|s| s.running().is_some()) {
            let subject = Subject::container(&pod, &slot.name);
            let message = format!("Stopping container {}", slot.name);
            self.ctx.events.normal(&subject, "Killing", &message);
        }
        let grace = self.pre_stop(&pod, grace).await;
        let first = if grace.is_zero() { 9 } else { 15 };
        for id in &running {
            if let Err(e) = self.ctx.runtime.signal(id, first).await {
                tracing::warn!(container = %id, error = %e, "signalling a container");
            }
        }
        let mut deadline = Instant::now() + grace;
        let mut killed = grace.is_zero();
        while self.slots.iter().any(|s| s.running().is_some()) {
            match tokio::time::timeout_at(deadline, self.exits.1.recv()).await {
                Ok(Some((id, exit))) => {
                    // Stopped for good: whatever the restart policy says.
                    self.ended(&pod_never_restarts(&pod), &id, exit).await;
                }
                Ok(None) => return,
                Err(_) if killed => {
                    // No exit came through the wait: the process is dead or the wait broke.
                    // Take what is left down by hand so that nothing stays behind.
                    let left: Vec<String> = self
                        .slots
                        .iter()
                        .filter_map(|s| s.running().map(str::to_string))
                        .collect();
                    for id in left {
                        tracing::warn!(container = %id, "no exit seen after SIGKILL; removing it");
                        let exit = Exit {
                            code: 137,
                            at: Utc::now(),
                            oom_killed: false,
                        };
                        self.ended(&pod_never_restarts(&pod), &id, exit).await;
                    }
                    return;
                }
                Err(_) => {
                    for id in self.slots.iter().filter_map(Slot::running) {
                        let _ = self.ctx.runtime.signal(id, 9).await;
                    }
                    killed = true;
                    deadline = Instant::now() + Duration::from_secs(10);
                }
            }
        }
    }

    /// Gives back what the pod held on the node: its network, volumes and directory.
    pub(super) async fn release(&mut self) {
        if std::mem::replace(&mut self.released, true) {
            return;
        }
        let pod = self.desired.borrow().clone().unwrap_or_default();
        if self.ip.is_some() || self.ctx.runtime.attached().contains(&self.uid) {
            for attempt in 1..=REMOVE_ATTEMPTS {
                match self.ctx.runtime.detach(&self.uid, &host_ports(&pod)).await {
                    Ok(()) => break,
                    Err(e) if attempt == REMOVE_ATTEMPTS => {
                        tracing::warn!(pod = %self.uid, error = %e, "detaching the pod network");
                    }
                    Err(e) => {
                        tracing::debug!(pod = %self.uid, error = %e, "detaching the pod network; again");
                        tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
                    }
                }
            }
        }
        volumes::clean(&self.ctx.pods_dir.join(&self.uid)).await;
    }
}

/// Kills a container that is not wanted any more and removes it once its process is gone.
pub async fn kill_and_remove(ctx: &Context, id: &str) {
    let _ = ctx.runtime.signal(id, 9).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), ctx.runtime.wait(id)).await;
    remove_container(ctx, id).await;
}

/// Removes a container whose process ended, and its FIFOs; containerd refusing (busy, or
/// restarting) is retried a few times before the agent's housekeeping is left to it.
pub(super) async fn remove_container(ctx: &Context, id: &str) {
    for attempt in 1..=REMOVE_ATTEMPTS {
        match ctx.runtime.remove(id).await {
            Ok(()) => break,
            Err(e) if attempt == REMOVE_ATTEMPTS => {
                tracing::warn!(container = %id, error = %e, "removing an ended container");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await,
        }
    }
    logs::remove_fifos(&ctx.fifo_dir, id);
}

/// The pod with restartPolicy Never, for containers being stopped for good.
fn pod_never_restarts(pod: &Pod) -> Pod {
    let mut pod = pod.clone();
    if let Some(spec) = pod.spec.as_mut() {
        spec.restart_policy = Some("Never".into());
    }
    pod
}
