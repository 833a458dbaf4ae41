//! The scheduler: follows pods and nodes into the queue and the cache, runs one cycle at a time
//! with the profile a pod names, binds asynchronously, and takes new profiles and policy
//! versions between cycles.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use wasmkube_apiserver::Server;
use wasmkube_apiserver::registry::{Update, bind_pod, events, update_with};
use wasmkube_controller::Manager;
use wasmkube_controller::informer::Change;
use wasmkube_model::event::EventType;
use wasmkube_model::meta::ResourceExt;
use wasmkube_model::resource::ResourceInfo;
use wasmkube_runtime::CallError;

use crate::cache::{Cache, NodeChange, pod_key, reduce_pod};
use crate::cycle::{self, Stage, StageError};
use crate::profile::{self, DEFAULT_SCHEDULER, Profile};
use crate::queue::{QueuedPod, SchedulingQueue};
use crate::report::{ProfileReport, ShadowReport, Stats};
use crate::shadow::Shadow;

/// A profile ready to run: its stages with policy instances already up to date.
pub struct Active {
    pub profile: Profile,
    pub stages: Vec<Stage>,
    /// The candidate stages, at work on their own task.
    pub shadow: Option<Shadow>,
    /// Stages to take over from the running profile (same plugin, same version) rather than
    /// start anew, by position in `stages`; empty once the loop has put them in.
    pub reuse: Vec<Reuse>,
    /// The phase and message to report when it is not a plain `Running` (a rollback).
    pub note: Option<(String, String)>,
}

/// A stage of a new profile that keeps the running instance of its policy.
pub struct Reuse {
    pub position: usize,
    pub configured: profile::Stage,
}

/// A policy of a running profile trapped (or its instance is poisoned).
#[derive(Debug, Clone)]
pub struct Trapped {
    pub scheduler: String,
    pub plugin: String,
    pub reason: String,
}

/// A change to what runs, made between cycles.
pub enum Swap {
    Install(Box<Active>),
    Remove(String),
}

/// What the scheduler's tasks share.
pub struct Shared {
    pub server: Arc<Server>,
    pub manager: Arc<Manager>,
    pub cache: Mutex<Cache>,
    pub queue: Mutex<SchedulingQueue>,
    pub stats: Mutex<Stats>,
    wake: Notify,
    pods: Arc<ResourceInfo>,
    /// Counts swaps applied by the loop: a new profile or policy is in force from then on.
    pub swaps_applied: watch::Sender<u64>,
    /// Tells the profile task that a running policy trapped: it rolls the profile back.
    pub trapped: mpsc::UnboundedSender<Trapped>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub fn new(
        server: Arc<Server>,
        manager: Arc<Manager>,
        trapped: mpsc::UnboundedSender<Trapped>,
    ) -> Option<Arc<Shared>> {
        let pods = server.registry().by_kind("v1", "Pod")?.clone();
        Some(Arc::new(Shared {
            server,
            manager,
            cache: Mutex::new(Cache::default()),
            queue: Mutex::new(SchedulingQueue::default()),
            stats: Mutex::new(Stats::default()),
            wake: Notify::new(),
            pods,
            swaps_applied: watch::channel(0).0,
            trapped,
        }))
    }

    pub fn cache(&self) -> MutexGuard<'_, Cache> {
        lock(&self.cache)
    }

    pub fn queue(&self) -> MutexGuard<'_, SchedulingQueue> {
        lock(&self.queue)
    }

    pub fn stats(&self) -> MutexGuard<'_, Stats> {
        lock(&self.stats)
    }

    /// Follows a pod from the informer into the queue (pending) or the cache (on a node).
    pub fn on_pod(&self, change: &Change) {
        let pod = &change.object;
        let key = pod_key(pod);
        let phase = pod["status"]["phase"].as_str().unwrap_or_default();
        let now = Instant::now();
        if change.deleted || matches!(phase, "Succeeded" | "Failed") {
            self.queue().remove(&key);
            if self.cache().remove_pod(&key) {
                self.queue().move_unschedulable(now);
                self.wake.notify_one();
            }
            return;
        }
        if pod["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty())
        {
            self.queue().remove(&key);
            self.cache().pod_placed(pod);
            return;
        }
        if pod.is_deleting() {
            self.queue().remove(&key);
            return;
        }
        // Assumed or just bound: the informer has not shown the binding yet.
        if self.cache().is_placed(&key) {
            return;
        }
        let priority = pod["spec"]["priority"]
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .unwrap_or(0);
        self.queue().add(pod.clone(), priority, now);
        self.wake.notify_one();
    }

    /// Follows a node into the cache; a new or changed node retries unschedulable pods.
    pub fn on_node(&self, change: &Change) {
        let name = change.object["metadata"]["name"]
            .as_str()
            .unwrap_or_default();
        if change.deleted {
            self.cache().node_remove(name);
            return;
        }
        if self.cache().node_upsert(&change.object) != NodeChange::None {
            self.queue().move_unschedulable(Instant::now());
            self.wake.notify_one();
        }
    }

    /// Queues again every pending pod the informer holds (a scheduler name appeared: its pods
    /// were dropped from the queue while no profile served them).
    fn requeue_pending(&self) {
        let pods = self.manager.informer(&self.pods).list(None);
        for pod in pods {
            if pod["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty())
            {
                continue;
            }
            self.on_pod(&Change {
                object: pod,
                old: None,
                deleted: false,
            });
        }
    }
}

/// The scheduling loop: owns the running profiles, schedules one pod at a time.
pub async fn run(shared: Arc<Shared>, mut swaps: mpsc::UnboundedReceiver<Swap>) {
    let mut profiles: HashMap<String, Active> = HashMap::new();
    // Schedulers whose trap was reported and whose rollback has not arrived yet.
    let mut trapped: HashSet<String> = HashSet::new();
    loop {
        while let Ok(swap) = swaps.try_recv() {
            apply(&shared, &mut profiles, &mut trapped, swap);
        }
        let (next, due) = {
            let mut queue = shared.queue();
            let due = queue.flush(Instant::now());
            (queue.pop(), due)
        };
        let Some(queued) = next else {
            let wait = due.unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            tokio::select! {
                () = shared.wake.notified() => {}
                swap = swaps.recv() => match swap {
                    Some(swap) => apply(&shared, &mut profiles, &mut trapped, swap),
                    None => return,
                },
                () = tokio::time::sleep_until(wait) => {}
            }
            continue;
        };
        let scheduler = queued.pod["spec"]["schedulerName"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_SCHEDULER)
            .to_string();
        let Some(active) = profiles.get_mut(&scheduler) else {
            shared.queue().remove(&queued.key()); // another scheduler's pod
            continue;
        };
        if let Err(e) = schedule_one(&shared, active, &queued).await {
            shared.queue().backoff(&queued.key(), Instant::now());
            shared.stats().errors += 1;
            tracing::warn!(%scheduler, error = %e, "scheduling policy failed");
            if !matches!(e.error, CallError::Failed(_)) && trapped.insert(scheduler.clone()) {
                let _ = shared.trapped.send(Trapped {
                    scheduler,
                    plugin: e.plugin.clone(),
                    reason: e.to_string(),
                });
            }
        }
    }
}

fn apply(
    shared: &Shared,
    profiles: &mut HashMap<String, Active>,
    trapped: &mut HashSet<String>,
    swap: Swap,
) {
    match swap {
        Swap::Install(mut active) => {
            let name = active.profile.scheduler_name.clone();
            let new_name = !profiles.contains_key(&name);
            if let Err(message) = take_over(&mut active, profiles.get_mut(&name)) {
                tracing::warn!(scheduler = %name, %message, "profile not swapped");
                let mut stats = shared.stats();
                let report = stats
                    .profiles
                    .entry(active.profile.object.clone())
                    .or_default();
                report.phase = "Failed".into();
                report.message = format!("{message}; the previous configuration stays in force");
                drop(stats);
                // Prepared again, starting every instance anew.
                let _ = shared.trapped.send(Trapped {
                    scheduler: name,
                    plugin: String::new(),
                    reason: message,
                });
                return;
            }
            let (phase, message) = active
                .note
                .take()
                .unwrap_or_else(|| ("Running".into(), String::new()));
            let report = ProfileReport {
                scheduler_name: name.clone(),
                phase,
                message,
                policies: cycle::labels(&active.stages),
                shadow: active.shadow.as_ref().map(|shadow| ShadowReport {
                    policies: shadow.labels().to_vec(),
                    ..ShadowReport::default()
                }),
            };
            shared
                .stats()
                .profiles
                .insert(active.profile.object.clone(), report);
            profiles.insert(name.clone(), *active);
            trapped.remove(&name);
            shared.swaps_applied.send_modify(|n| *n += 1);
            if new_name {
                shared.requeue_pending();
            }
            return;
        }
        Swap::Remove(name) => {
            if let Some(old) = profiles.remove(&name) {
                shared.stats().profiles.remove(&old.profile.object);
            }
            trapped.remove(&name);
        }
    }
    shared.swaps_applied.send_modify(|n| *n += 1);
}

/// Moves the stages `active` reuses out of the running profile `old` into it, configured as the
/// new profile says. Nothing moves unless all of them can.
fn take_over(active: &mut Active, old: Option<&mut Active>) -> Result<(), String> {
    if active.reuse.is_empty() {
        return Ok(());
    }
    let old = old.ok_or("the running profile to take instances from is gone")?;
    let mut moves = Vec::new();
    for r in &active.reuse {
        let index = old
            .stages
            .iter()
            .position(|s| s.plugin == r.configured.plugin)
            .ok_or_else(|| format!("no running instance of {:?}", r.configured.plugin))?;
        let (filters, scores) = r
            .configured
            .plugins(old.stages[index].policy.capabilities())?;
        moves.push((r.position, r.configured.plugin.clone(), filters, scores));
    }
    // Every stage was found above; removing one shifts the others, so look each up again.
    for (position, plugin, filters, scores) in moves {
        if let Some(index) = old.stages.iter().position(|s| s.plugin == plugin) {
            let mut stage = old.stages.remove(index);
            stage.config.filters = filters;
            stage.config.scores = scores;
            active.stages.insert(position, stage);
        }
    }
    active.reuse.clear();
    Ok(())
}

/// One cycle for one pod: the profile's stages, then the assumption and an asynchronous binding,
/// or the pod's unschedulable report. The shadow, if any, is handed the pod and never waited for.
async fn schedule_one(
    shared: &Arc<Shared>,
    active: &mut Active,
    queued: &QueuedPod,
) -> Result<(), StageError> {
    let key = queued.key();
    let reduced = reduce_pod(&queued.pod);
    let text = reduced.to_string();
    let nodes = shared.cache().node_count();
    let to_find = active.profile.nodes_to_find(nodes);
    let found = cycle::run(&mut active.stages, &text, to_find, None).await?;
    let chosen = found.pick().map(String::from);
    if let Some(shadow) = &active.shadow {
        shadow.offer(key.clone(), text, found.clone(), chosen.clone(), to_find);
    }
    match chosen {
        Some(node) => {
            shared.cache().assume(reduced, &node);
            tokio::spawn(bind(shared.clone(), queued.clone(), node));
        }
        None => {
            let message = found.message(nodes);
            shared.queue().unschedulable(&key, Instant::now());
            shared.stats().unschedulable += 1;
            tokio::spawn(report_unschedulable(
                shared.clone(),
                queued.pod.clone(),
                message,
            ));
        }
    }
    Ok(())
}

/// Binds the pod to `node`; on failure the assumption is taken back and the pod backs off.
async fn bind(shared: Arc<Shared>, queued: QueuedPod, node: String) {
    let key = queued.key();
    match bind_pod(&shared.server, &shared.pods, Some(&key.0), &key.1, &node).await {
        Ok(_) => {
            shared.stats().bound(queued.enqueued.elapsed());
            shared.queue().remove(&key);
            let message = format!("Successfully assigned {}/{} to {node}", key.0, key.1);
            event(
                &shared,
                &queued.pod,
                EventType::Normal,
                "Scheduled",
                &message,
            )
            .await;
        }
        Err(e) => {
            shared.cache().forget(&key);
            shared.stats().errors += 1;
            let gone = matches!(e.code().as_u16(), 404 | 409);
            if gone {
                shared.queue().remove(&key);
            } else {
                shared.queue().backoff(&key, Instant::now());
                shared.wake.notify_one();
            }
            let message = format!("Binding rejected: {e}");
            event(
                &shared,
                &queued.pod,
                EventType::Warning,
                "FailedScheduling",
                &message,
            )
            .await;
        }
    }
}

async fn event(shared: &Shared, pod: &Value, kind: EventType, reason: &str, message: &str) {
    if let Err(e) = events::record(
        &shared.server,
        DEFAULT_SCHEDULER,
        pod,
        kind,
        reason,
        message,
    )
    .await
    {
        tracing::debug!(error = %e, "could not record a scheduler event");
    }
}

/// A `FailedScheduling` Event and the `PodScheduled=False` condition with the reasons.
async fn report_unschedulable(shared: Arc<Shared>, pod: Arc<Value>, message: String) {
    event(
        &shared,
        &pod,
        EventType::Warning,
        "FailedScheduling",
        &message,
    )
    .await;
    let key = pod_key(&pod);
    let update = Update {
        subresource: Some("status"),
        ..Update::internal(&shared.pods, Some(&key.0), &key.1)
    };
    let condition = json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": message, "lastProbeTime": null,
        "lastTransitionTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)});
    let written = update_with(
        &shared.server,
        &update,
        |cur| {
            let mut new = cur.clone();
            let mut conditions: Vec<Value> = cur["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            match conditions.iter_mut().find(|c| c["type"] == "PodScheduled") {
                Some(c) if c["status"] == "False" && c["message"] == condition["message"] => {}
                Some(c) => *c = condition.clone(),
                None => conditions.push(condition.clone()),
            }
            new["status"]["conditions"] = Value::Array(conditions);
            Ok(new)
        },
        &mut Vec::new(),
    )
    .await;
    if let Err(e) = written {
        tracing::debug!(error = %e, "could not write PodScheduled");
    }
}
