//! The worker's probes and lifecycle hooks: probing running containers, acting on the
//! verdicts, postStart after a start and preStop before a stop.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use tokio::time::Instant;

use super::event::Subject;
use super::{Worker, hook, pod_label, probe};

/// The longest a postStart hook may run (the kubelet sets none; a hung hook would hold the
/// pod's worker forever).
const HOOK_LIMIT: Duration = Duration::from_secs(120);

impl Worker {
    /// Starts probing a container that has probes; one without is ready as soon as it runs.
    pub(super) fn start_probes(&mut self, pod: &Pod, name: &str, id: &str) {
        let spec = pod.spec.clone().unwrap_or_default();
        let Some(container) = spec.containers.iter().find(|c| c.name == name).cloned() else {
            // Init containers are not probed.
            return;
        };
        let probed = container.startup_probe.is_some()
            || container.liveness_probe.is_some()
            || container.readiness_probe.is_some();
        if let Some(slot) = self.slots.iter_mut().find(|s| s.running() == Some(id)) {
            slot.ready = container.readiness_probe.is_none() && container.startup_probe.is_none();
        }
        if !probed {
            return;
        }
        let events = probe::Events {
            recorder: self.ctx.events.clone(),
            subject: Subject::container(pod, name),
        };
        let target = self.target(id, container);
        let task = tokio::spawn(probe::run(
            self.ctx.runtime.clone(),
            target,
            self.verdicts.0.clone(),
            events,
        ));
        self.probes.insert(id.to_string(), task);
    }

    /// What probes and hooks of the running container `id` reach.
    pub(super) fn target(&self, id: &str, container: Container) -> probe::Target {
        probe::Target {
            id: id.to_string(),
            pod_ip: self.ip.clone().unwrap_or_default(),
            container,
        }
    }

    /// Runs the container's postStart hook, if any, before anything else starts (as the
    /// kubelet does); a failed hook kills the container, which then restarts by policy.
    pub(super) async fn post_start(&mut self, pod: &Pod, container: &Container, id: &str) {
        let Some(handler) = container
            .lifecycle
            .as_ref()
            .and_then(|l| l.post_start.as_ref())
        else {
            return;
        };
        let target = self.target(id, container.clone());
        if let Err(why) = hook::run(&self.ctx.runtime, &target, handler, HOOK_LIMIT).await {
            let message = format!("PostStartHook failed: {why}");
            tracing::info!(pod = %pod_label(pod), container = %container.name, %message);
            let subject = Subject::container(pod, &container.name);
            self.ctx
                .events
                .warning(&subject, "FailedPostStartHook", &message);
            let _ = self.ctx.runtime.signal(id, 9).await;
        }
    }

    /// Runs the preStop hooks of the running containers at once, within `grace`; returns how
    /// much of it is left for SIGTERM (at least 2 s after a hook, as the kubelet gives).
    pub(super) async fn pre_stop(&self, pod: &Pod, grace: Duration) -> Duration {
        let began = Instant::now();
        let spec = pod.spec.clone().unwrap_or_default();
        let hooks: Vec<_> = self
            .slots
            .iter()
            .filter_map(|slot| {
                let id = slot.running()?;
                let container = spec.containers.iter().find(|c| c.name == slot.name)?;
                let handler = container.lifecycle.as_ref()?.pre_stop.clone()?;
                Some((self.target(id, container.clone()), handler))
            })
            .collect();
        if hooks.is_empty() || grace.is_zero() {
            return grace;
        }
        let runs = hooks.iter().map(|(target, handler)| async move {
            if let Err(why) = hook::run(&self.ctx.runtime, target, handler, grace).await {
                let message = format!("PreStopHook failed: {why}");
                let subject = Subject::container(pod, &target.container.name);
                self.ctx
                    .events
                    .warning(&subject, "FailedPreStopHook", &message);
            }
        });
        let _ = tokio::time::timeout(grace, futures::future::join_all(runs)).await;
        grace
            .saturating_sub(began.elapsed())
            .max(Duration::from_secs(2))
    }

    /// Acts on a probe's verdict: readiness, or a restart of an unhealthy container.
    pub(super) async fn judged(&mut self, pod: &Pod, verdict: probe::Verdict) {
        let container = pod.spec.as_ref().and_then(|s| {
            let id = match &verdict {
                probe::Verdict::Ready(id, _)
                | probe::Verdict::Started(id)
                | probe::Verdict::Unhealthy(id, _) => id,
            };
            let slot = self
                .slots
                .iter()
                .find(|s| s.running() == Some(id.as_str()))?;
            s.containers.iter().find(|c| c.name == slot.name).cloned()
        });
        let Some(container) = container else { return };
        match verdict {
            probe::Verdict::Ready(id, ready) => {
                if let Some(slot) = self
                    .slots
                    .iter_mut()
                    .find(|s| s.running() == Some(id.as_str()))
                {
                    slot.ready = ready;
                }
            }
            probe::Verdict::Started(id) => {
                if let Some(slot) = self
                    .slots
                    .iter_mut()
                    .find(|s| s.running() == Some(id.as_str()))
                {
                    slot.ready = container.readiness_probe.is_none();
                }
            }
            probe::Verdict::Unhealthy(id, probe) => {
                tracing::info!(pod = %pod_label(pod), container = %container.name, %probe, "restarting an unhealthy container");
                let message = format!(
                    "Container {} failed {probe} probe, will be restarted",
                    container.name
                );
                let subject = Subject::container(pod, &container.name);
                self.ctx.events.normal(&subject, "Killing", &message);
                let grace = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
                    .and_then(|g| u64::try_from(g).ok())
                    .unwrap_or(30);
                let runtime = self.ctx.runtime.clone();
                tokio::spawn(async move {
                    let _ = runtime.signal(&id, 15).await;
                    tokio::time::sleep(Duration::from_secs(grace)).await;
                    let _ = runtime.signal(&id, 9).await;
                });
            }
        }
    }
}
