//! Plugins as API objects: each `Plugin` is loaded and run; a new module is swapped in while running, rolled back if it keeps trapping, and reported in the Plugin's status.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use wasmkube_apiserver::Server;
use wasmkube_apiserver::metrics::{Collector, write_histogram};
use wasmkube_apiserver::registry::{events, replace_status};
use wasmkube_model::event::EventType;
use wasmkube_model::meta::ResourceExt;
use wasmkube_model::resource::{PLUGIN_GROUP, ResourceInfo};
use wasmkube_runtime::{Limits, Module, Registration, Runtime, World};

use crate::Manager;
use crate::module::ModuleError;
use crate::plugin::{self, PluginError, Prepared, RunningPlugin};
use crate::wasm::Health;

/// A new module that traps this often soon after it took over is rolled back.
const TRAPS_TO_ROLL_BACK: u64 = 3;
/// How long a new module is watched for that.
const PROBATION: Duration = Duration::from_secs(60);
/// How often statuses are refreshed (counters move without object changes).
const STATUS_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error(transparent)]
    Module(#[from] ModuleError),
    #[error("{0}")]
    Compile(String),
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

/// What runs for one Plugin.
struct Slot {
    plugin: RunningPlugin,
    active: Arc<Module>,
    /// The module before the last swap, kept for a rollback while on probation.
    previous: Option<Arc<Module>>,
    swapped_at: Option<Instant>,
    /// A digest that failed to load, or was rolled back, and why.
    failed: Option<(String, String)>,
    /// Traps already reported in an Event.
    reported_traps: u64,
}

impl Slot {
    /// A snapshot of the running version's health.
    fn health(&self) -> Health {
        self.plugin
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Runs every Plugin object's module.
pub struct Supervisor {
    server: Arc<Server>,
    manager: Arc<Manager>,
    runtime: Arc<Runtime>,
    info: Arc<ResourceInfo>,
    slots: HashMap<String, Slot>,
    /// Plugins that could not start because they name a resource not served yet (say, before
    /// their CRD is created): retried on every status tick.
    waiting: HashMap<String, String>,
    /// Each running plugin's health, as `/metrics` reads it.
    published: Published,
}

/// The health of the running plugins, shared with the metrics collector.
type Published = Arc<std::sync::Mutex<BTreeMap<String, Arc<std::sync::Mutex<Health>>>>>;

/// Writes every running plugin's counters and reconcile latency.
fn collector(published: Published) -> Collector {
    Box::new(move |out: &mut String| {
        let plugins = published.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for (metric, help) in [
            ("reconciles", "reconcile calls"),
            ("failures", "reconciles the plugin failed"),
            (
                "traps",
                "instances lost to traps, deadlines or memory limits",
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP wasmkube_plugin_{metric}_total Wasm controller {help}.\n# TYPE wasmkube_plugin_{metric}_total counter"
            );
            for (name, health) in &plugins {
                let h = health.lock().unwrap_or_else(|p| p.into_inner());
                let value = match metric {
                    "reconciles" => h.reconciles,
                    "failures" => h.failures,
                    _ => h.traps,
                };
                let _ = writeln!(
                    out,
                    "wasmkube_plugin_{metric}_total{{plugin=\"{name}\"}} {value}"
                );
            }
        }
        out.push_str("# TYPE wasmkube_plugin_reconcile_duration_seconds histogram\n");
        for (name, health) in &plugins {
            let latency = health
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .latency
                .clone();
            write_histogram(
                out,
                "wasmkube_plugin_reconcile_duration_seconds",
                &format!("plugin=\"{name}\""),
                &latency,
            );
        }
    })
}

/// The limits a Plugin's `spec.limits` sets: 64 MiB and 1 s per call unless given.
pub fn limits(spec: &Value) -> Limits {
    let defaults = Limits::default();
    Limits {
        memory_bytes: spec
            .pointer("/limits/memoryBytes")
            .and_then(Value::as_u64)
            .map_or(defaults.memory_bytes, |b| b as usize),
        call_timeout: spec
            .pointer("/limits/callTimeoutMillis")
            .and_then(Value::as_u64)
            .map_or(defaults.call_timeout, Duration::from_millis),
    }
}

/// Starts the supervisor: it follows Plugin objects until the task is dropped.
pub fn spawn(
    server: Arc<Server>,
    manager: Arc<Manager>,
    runtime: Arc<Runtime>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(info) = server
            .registry()
            .get(PLUGIN_GROUP, "v1alpha1", "plugins")
            .cloned()
        else {
            return;
        };
        let informer = manager.informer(&info);
        informer.wait_synced().await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        informer.add_handler(Arc::new(move |change: &crate::informer::Change| {
            let _ = tx.send(change.object.name().to_string());
        }));
        let mut supervisor = Supervisor {
            server,
            manager,
            runtime,
            info,
            slots: HashMap::new(),
            waiting: HashMap::new(),
            published: Published::default(),
        };
        supervisor
            .server
            .metrics
            .add_collector(collector(supervisor.published.clone()));
        let mut tick = tokio::time::interval(STATUS_EVERY);
        loop {
            tokio::select! {
                Some(name) = rx.recv() => supervisor.sync(&name, informer.get(None, &name).as_deref()).await,
                _ = tick.tick() => supervisor.check_all().await,
            }
            supervisor.publish();
        }
    })
}

/// Whether two versions reconcile and watch the same resources (then one can take over the
/// other's queue).
fn same_resources(a: &Registration, b: &Registration) -> bool {
    a.primary == b.primary && a.owns == b.owns && a.reads == b.reads && a.triggers == b.triggers
}

impl Supervisor {
    /// Shows the running plugins' health to the metrics collector.
    fn publish(&self) {
        let current = self
            .slots
            .iter()
            .map(|(name, slot)| (name.clone(), slot.plugin.health.clone()))
            .collect();
        *self.published.lock().unwrap_or_else(|p| p.into_inner()) = current;
    }

    async fn event(&self, plugin: &Value, kind: EventType, reason: &str, message: &str) {
        // A Plugin is cluster-scoped: the Event lives in `default`, its involvedObject has no
        // namespace, which is what `kubectl describe plugin` looks for.
        if let Err(e) = events::record(
            &self.server,
            "wasmkube-plugins",
            plugin,
            kind,
            reason,
            message,
        )
        .await
        {
            tracing::warn!(error = %e, "could not record a plugin event");
        }
    }

    async fn load(&self, spec: &Value, digest: &str) -> Result<Prepared, LoadError> {
        let module = crate::module::load(&self.server, &self.runtime, spec, digest).await?;
        if module.world() != World::Controller {
            return Err(LoadError::Compile(format!(
                "the module is a {}, not a controller-plugin",
                module.world()
            )));
        }
        let workers = spec.get("workers").and_then(Value::as_u64).unwrap_or(2) as usize;
        let permissions = spec
            .get("permissions")
            .filter(|p| p.is_array())
            .map(plugin::declared_grants);
        Ok(plugin::prepare(
            &self.server,
            &self.manager,
            module,
            limits(spec),
            workers,
            permissions,
        )
        .await?)
    }

    /// Brings what runs for Plugin `name` in line with its object (`None`: deleted).
    async fn sync(&mut self, name: &str, object: Option<&Value>) {
        let retry = self.waiting.remove(name);
        // Scheduling policies are the scheduler's.
        let Some(object) = object.filter(|o| o["spec"]["kind"] == "Controller") else {
            self.slots.remove(name);
            return;
        };
        let spec = &object["spec"];
        let digest = spec
            .pointer("/module/digest")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let slot = self.slots.get(name);
        let current = slot.map(|s| s.active.digest().to_string());
        let known_bad = slot
            .and_then(|s| s.failed.as_ref())
            .is_some_and(|(d, _)| *d == digest);
        if current.as_deref() == Some(digest.strip_prefix("sha256:").unwrap_or(&digest))
            || known_bad
        {
            return self.write_status(name, object).await;
        }
        match self.load(spec, &digest).await {
            Ok(prepared) => self.take_over(name, object, prepared).await,
            Err(e) => {
                let reason = e.to_string();
                // A retry that fails the same way was already reported.
                if retry.as_deref() != Some(digest.as_str()) {
                    tracing::warn!(plugin = %name, %digest, error = %reason, "plugin module failed to load");
                    let message = format!("module {digest}: {reason}");
                    self.event(object, EventType::Warning, "LoadFailed", &message)
                        .await;
                }
                match self.slots.get_mut(name) {
                    Some(slot) => slot.failed = Some((digest, reason)),
                    None => {
                        if matches!(e, LoadError::Plugin(PluginError::UnknownResource { .. })) {
                            self.waiting.insert(name.to_string(), digest.clone());
                        }
                        self.write_failed(name, &digest, &reason).await;
                        return;
                    }
                }
            }
        }
        self.write_status(name, object).await;
    }

    /// Starts the prepared module, or swaps it in for the running one: when both reconcile the
    /// same resources, reconciles in flight finish on the old module and every queued key goes to
    /// the new one; otherwise the old one stops and the new one starts afresh. The old module is
    /// kept for a rollback either way.
    async fn take_over(&mut self, name: &str, object: &Value, prepared: Prepared) {
        let module = prepared.reconciler.module().clone();
        let previous = self.replace(name, prepared).await;
        if let Some(slot) = self.slots.get_mut(name) {
            slot.active = module;
            slot.swapped_at = previous.is_some().then(Instant::now);
            slot.previous = previous;
            slot.failed = None;
        }
        let message = format!("module {} is running", object["spec"]["module"]["digest"]);
        self.event(object, EventType::Normal, "Started", &message)
            .await;
    }

    /// Puts a prepared module in the slot of `name`; returns the module it replaced.
    async fn replace(&mut self, name: &str, prepared: Prepared) -> Option<Arc<Module>> {
        let module = prepared.reconciler.module().clone();
        if let Some(slot) = self
            .slots
            .get_mut(name)
            .filter(|s| same_resources(&s.plugin.registration, &prepared.registration))
        {
            slot.plugin.health = prepared.reconciler.health();
            slot.reported_traps = 0;
            slot.plugin.registration = prepared.registration.clone();
            slot.plugin.running.swap(Box::new(prepared.reconciler));
            return Some(std::mem::replace(&mut slot.active, module));
        }
        let old = self.slots.remove(name);
        let plugin = plugin::run(&self.manager, prepared).await;
        self.slots.insert(
            name.to_string(),
            Slot {
                plugin,
                active: module,
                previous: None,
                swapped_at: None,
                failed: None,
                reported_traps: 0,
            },
        );
        old.map(|slot| slot.active)
    }

    /// Rolls back modules that keep trapping on probation, and refreshes every status.
    async fn check_all(&mut self) {
        for name in self.waiting.keys().cloned().collect::<Vec<_>>() {
            if let Ok(Some(stored)) = self.server.objects.get(&self.info, None, &name).await {
                self.sync(&name, Some(&stored.object)).await;
            }
        }
        let names: Vec<String> = self.slots.keys().cloned().collect();
        for name in names {
            let Ok(Some(stored)) = self.server.objects.get(&self.info, None, &name).await else {
                continue;
            };
            let object = stored.object;
            let rollback = self.slots.get(&name).and_then(|slot| {
                let on_probation = slot.swapped_at.is_some_and(|t| t.elapsed() < PROBATION);
                let health = slot.health();
                (on_probation && health.traps >= TRAPS_TO_ROLL_BACK)
                    .then(|| (slot.previous.clone(), health))
            });
            self.report_traps(&name, &object).await;
            if let Some((Some(previous), health)) = rollback {
                let spec = &object["spec"];
                let workers = spec.get("workers").and_then(Value::as_u64).unwrap_or(2) as usize;
                let permissions = spec
                    .get("permissions")
                    .filter(|p| p.is_array())
                    .map(plugin::declared_grants);
                if let Ok(prepared) = plugin::prepare(
                    &self.server,
                    &self.manager,
                    previous,
                    limits(spec),
                    workers,
                    permissions,
                )
                .await
                {
                    let bad = self.replace(&name, prepared).await;
                    let reason = format!(
                        "rolled back: {} traps since it took over (last: {})",
                        health.traps,
                        health.last_trap.unwrap_or_default()
                    );
                    if let Some(slot) = self.slots.get_mut(&name) {
                        slot.previous = None;
                        slot.swapped_at = None;
                        slot.failed =
                            bad.map(|m| (format!("sha256:{}", m.digest()), reason.clone()));
                    }
                    self.event(&object, EventType::Warning, "RolledBack", &reason)
                        .await;
                }
            }
            self.write_status(&name, &object).await;
        }
    }

    /// One Warning Event for the traps since the last report (each cost an instance).
    async fn report_traps(&mut self, name: &str, object: &Value) {
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        let health = slot.health();
        if health.traps <= slot.reported_traps {
            return;
        }
        let new = health.traps - slot.reported_traps;
        slot.reported_traps = health.traps;
        let message = format!(
            "{new} instance(s) trapped and were replaced; last: {}",
            health.last_trap.unwrap_or_default()
        );
        self.event(object, EventType::Warning, "Trapped", &message)
            .await;
    }

    async fn write_failed(&self, name: &str, digest: &str, reason: &str) {
        let status = json!({"phase": "Failed", "message": format!("module {digest} failed to load: {reason}"),
            "conditions": [{"type": "Ready", "status": "False", "reason": "LoadFailed", "message": reason}]});
        self.patch_status(name, status).await;
    }

    async fn write_status(&self, name: &str, object: &Value) {
        let Some(slot) = self.slots.get(name) else {
            return;
        };
        let health = slot.health();
        let active = format!("sha256:{}", slot.active.digest());
        let wanted = object
            .pointer("/spec/module/digest")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let (phase, message, ready) = match &slot.failed {
            Some((digest, reason)) if digest == wanted => (
                "RolledBack",
                format!("{digest} is not running: {reason}; {active} still is"),
                "False",
            ),
            _ if active == wanted => ("Running", String::new(), "True"),
            _ => (
                "Pending",
                format!("{wanted} is not loaded yet; {active} is running"),
                "False",
            ),
        };
        let mut status = json!({
            "phase": phase,
            "activeDigest": active,
            "controller": slot.plugin.registration.name,
            "reconciles": health.reconciles,
            "failures": health.failures,
            "traps": health.traps,
            "conditions": [{"type": "Ready", "status": ready, "reason": phase, "message": message}],
        });
        if !message.is_empty() {
            status["message"] = json!(message);
        }
        if let Some(previous) = &slot.previous {
            status["previousDigest"] = json!(format!("sha256:{}", previous.digest()));
        }
        if let Some(trap) = health.last_trap {
            status["lastTrap"] = json!(trap);
        }
        self.patch_status(name, status).await;
    }

    async fn patch_status(&self, name: &str, status: Value) {
        if let Err(e) = replace_status(&self.server, &self.info, name, &status).await {
            tracing::debug!(plugin = %name, error = %e, "plugin status not written");
        }
    }
}
