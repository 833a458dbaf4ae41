//! Plugins as API objects: each `Plugin` is run by a task of its own, so that one stuck plugin holds up no other; a new module is swapped in while running and rolled back if it keeps trapping; a change of limits, workers or permissions takes effect without a new module; a candidate module in `spec.shadow` runs beside the active one (see [`crate::shadow`]); all of it is reported in the Plugin's status.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use wasmkube_apiserver::Server;
use wasmkube_apiserver::metrics::{Collector, write_histogram};
use wasmkube_apiserver::plugin_logs::Kind;
use wasmkube_apiserver::registry::{events, replace_status};
use wasmkube_model::event::EventType;
use wasmkube_model::meta::ResourceExt;
use wasmkube_model::resource::{PLUGIN_GROUP, ResourceInfo};
use wasmkube_runtime::{Module, Registration, Runtime, World};

use crate::Manager;
use crate::informer::Change;
use crate::module::ModuleError;
use crate::plugin::{self, Config, PluginError, Prepared, RunningPlugin};
use crate::shadow::{Report, Shadow, ShadowReconciler};
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
    /// The limits, workers and permissions it runs with.
    config: Config,
    /// The module before the last swap and the configuration it ran with (a new module may
    /// come with other permissions), kept for a rollback while on probation.
    previous: Option<(Arc<Module>, Config)>,
    swapped_at: Option<Instant>,
    /// A digest that failed to load, or was rolled back, and why.
    failed: Option<(String, String)>,
    /// Traps already reported in an Event.
    reported_traps: u64,
    /// The candidate `spec.shadow` names, run beside the active version; dropped whenever the
    /// active version is replaced (and then started again beside the new one).
    shadow: Option<Shadow>,
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
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

/// What the metrics collector reads of one running plugin: its health and its shadow's report.
#[derive(Clone)]
struct Counters {
    health: Arc<std::sync::Mutex<Health>>,
    shadow: Option<Arc<std::sync::Mutex<Report>>>,
}

/// The counters of the running plugins, shared with the metrics collector.
type Published = Arc<std::sync::Mutex<BTreeMap<String, Counters>>>;

/// Writes one counter family `wasmkube_plugin_{name}_total`: its help and type, and the value
/// `value` gives each plugin (none: no sample for it).
fn write_counter(
    out: &mut String,
    plugins: &BTreeMap<String, Counters>,
    name: &str,
    help: &str,
    value: impl Fn(&Counters) -> Option<u64>,
) {
    let _ = writeln!(
        out,
        "# HELP wasmkube_plugin_{name}_total {help}.\n# TYPE wasmkube_plugin_{name}_total counter"
    );
    for (plugin, counters) in plugins {
        if let Some(v) = value(counters) {
            let _ = writeln!(
                out,
                "wasmkube_plugin_{name}_total{{plugin=\"{plugin}\"}} {v}"
            );
        }
    }
}

/// A counter family: its name, its help, and its value from `T`.
type Counter<T> = (&'static str, &'static str, fn(&T) -> u64);

/// The plugins' counters.
const HEALTH: [Counter<Health>; 3] = [
    ("reconciles", "Wasm controller reconcile calls", |h| {
        h.reconciles
    }),
    (
        "failures",
        "Wasm controller reconciles the plugin failed",
        |h| h.failures,
    ),
    (
        "traps",
        "Wasm controller instances lost to traps, deadlines or memory limits",
        |h| h.traps,
    ),
];
/// The shadows' counters.
const SHADOW: [Counter<Report>; 3] = [
    (
        "shadow_reconciles",
        "Shadow controller reconciles compared with the active version's",
        |r| r.reconciles,
    ),
    (
        "shadow_agreements",
        "Shadow controller reconciles whose writes agreed with the active version's",
        |r| r.agreements,
    ),
    (
        "shadow_divergences",
        "Shadow controller reconciles whose writes diverged from the active version's",
        |r| r.divergences,
    ),
];

/// Writes every running plugin's counters and reconcile latency, and its shadow's tally.
fn collector(published: Published) -> Collector {
    Box::new(move |out: &mut String| {
        let plugins = lock(&published).clone();
        for (name, help, value) in HEALTH {
            write_counter(out, &plugins, name, help, |c| Some(value(&lock(&c.health))));
        }
        out.push_str("# TYPE wasmkube_plugin_reconcile_duration_seconds histogram\n");
        for (name, counters) in &plugins {
            let latency = lock(&counters.health).latency.clone();
            write_histogram(
                out,
                "wasmkube_plugin_reconcile_duration_seconds",
                &format!("plugin=\"{name}\""),
                &latency,
            );
        }
        for (name, help, value) in SHADOW {
            write_counter(out, &plugins, name, help, |c| {
                c.shadow.as_ref().map(|r| value(&lock(r)))
            });
        }
    })
}

/// What every plugin's task shares.
struct Shared {
    server: Arc<Server>,
    manager: Arc<Manager>,
    runtime: Arc<Runtime>,
    info: Arc<ResourceInfo>,
    /// Each running plugin's health, as `/metrics` reads it.
    published: Published,
}

/// The task running one Plugin, and the bell that tells it its object changed. Dropping it stops
/// the task and the plugin with it.
struct Worker {
    wake: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Worker {
    fn start(shared: Arc<Shared>, name: String) -> Worker {
        let wake = Arc::new(Notify::new());
        let task = PluginTask {
            shared,
            name,
            slot: None,
            waiting: None,
        };
        Worker {
            task: tokio::spawn(task.run(wake.clone())),
            wake,
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the supervisor: it follows Plugin objects until the task is dropped, each Plugin on a
/// task of its own.
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
        informer.add_handler(Arc::new(move |change: &Change| {
            let _ = tx.send((change.object.name().to_string(), change.deleted));
        }));
        let shared = Arc::new(Shared {
            server,
            manager,
            runtime,
            info,
            published: Published::default(),
        });
        shared
            .server
            .metrics
            .set_collector("plugins", collector(shared.published.clone()));
        let mut workers: HashMap<String, Worker> = HashMap::new();
        while let Some((name, deleted)) = rx.recv().await {
            if deleted {
                workers.remove(&name);
                // Here, not when its task is dropped (later, after an abort): a Plugin made
                // again under the name at once starts a log of its own.
                shared.server.plugin_logs.remove(&name);
                continue;
            }
            match workers.get(&name) {
                Some(worker) if !worker.task.is_finished() => worker.wake.notify_one(),
                _ => {
                    let worker = Worker::start(shared.clone(), name.clone());
                    workers.insert(name, worker);
                }
            }
        }
    })
}

/// Whether two versions reconcile and watch the same resources (then one can take over the
/// other's queue).
fn same_resources(a: &Registration, b: &Registration) -> bool {
    a.primary == b.primary && a.owns == b.owns && a.reads == b.reads && a.triggers == b.triggers
}

/// One Plugin, as its task keeps it.
struct PluginTask {
    shared: Arc<Shared>,
    name: String,
    slot: Option<Slot>,
    /// The digest of a module that could not start because it names a resource not served yet
    /// (say, before its CRD is created): retried on every status tick.
    waiting: Option<String>,
}

impl Drop for PluginTask {
    fn drop(&mut self) {
        self.shared
            .published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.name);
    }
}

impl PluginTask {
    /// Brings the plugin in line with its object at once and on every `wake`; checks its health
    /// and refreshes its status every [`STATUS_EVERY`].
    async fn run(mut self, wake: Arc<Notify>) {
        let mut tick = tokio::time::interval(STATUS_EVERY);
        tick.tick().await;
        self.changed().await;
        loop {
            self.publish();
            tokio::select! {
                () = wake.notified() => self.changed().await,
                _ = tick.tick() => self.check().await,
            }
        }
    }

    /// Shows the running plugin's health to the metrics collector.
    fn publish(&self) {
        let mut published = self
            .shared
            .published
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match &self.slot {
            Some(slot) => {
                let shadow = slot.shadow.as_ref().and_then(Shadow::report);
                let health = slot.plugin.health.clone();
                published.insert(self.name.clone(), Counters { health, shadow })
            }
            None => published.remove(&self.name),
        };
    }

    async fn changed(&mut self) {
        let informer = self.shared.manager.informer(&self.shared.info);
        let object = informer.get(None, &self.name);
        self.sync(object.as_deref()).await;
    }

    async fn event(&self, plugin: &Value, kind: EventType, reason: &str, message: &str) {
        // A Plugin is cluster-scoped: the Event lives in `default`, its involvedObject has no
        // namespace, which is what `kubectl describe plugin` looks for.
        if let Err(e) = events::record(
            &self.shared.server,
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

    /// The controller module with `digest` that `at` (`spec`, or `spec.shadow`) names.
    async fn module(&self, at: &Value, digest: &str) -> Result<Arc<Module>, LoadError> {
        let shared = &self.shared;
        let module = crate::module::load(&shared.server, &shared.runtime, at, digest).await?;
        if module.world() != World::Controller {
            return Err(LoadError::Compile(format!(
                "the module is a {}, not a controller-plugin",
                module.world()
            )));
        }
        Ok(module)
    }

    async fn load(
        &self,
        object: &Value,
        digest: &str,
        config: &Config,
    ) -> Result<Prepared, LoadError> {
        let (server, manager) = (&self.shared.server, &self.shared.manager);
        let module = self.module(&object["spec"], digest).await?;
        Ok(plugin::prepare(server, manager, object, module, config).await?)
    }

    /// Brings what runs in line with the Plugin `object` (`None`: deleted).
    async fn sync(&mut self, object: Option<&Value>) {
        let retry = self.waiting.take();
        // Scheduling policies are the scheduler's.
        let Some(object) = object.filter(|o| o["spec"]["kind"] == "Controller") else {
            self.slot = None;
            return;
        };
        let spec = &object["spec"];
        let digest = spec
            .pointer("/module/digest")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let config = Config::of(spec);
        if let Some(slot) = &self.slot {
            let running = slot.active.digest() == digest.strip_prefix("sha256:").unwrap_or(&digest);
            let known_bad = slot.failed.as_ref().is_some_and(|(d, _)| *d == digest);
            // The spec's limits, workers and permissions are its module's: a version that
            // failed or was rolled back leaves the running one with its own.
            if running && slot.config != config {
                self.reconfigure(object, config).await;
                return self.settle(object).await;
            }
            if running || known_bad {
                return self.settle(object).await;
            }
        }
        match self.load(object, &digest, &config).await {
            Ok(prepared) => self.take_over(object, prepared, config).await,
            Err(e) => {
                let reason = e.to_string();
                // A retry that fails the same way was already reported.
                if retry.as_deref() != Some(digest.as_str()) {
                    tracing::warn!(plugin = %self.name, %digest, error = %reason, "plugin module failed to load");
                    let message = format!("module {digest}: {reason}");
                    self.event(object, EventType::Warning, "LoadFailed", &message)
                        .await;
                }
                match &mut self.slot {
                    Some(slot) => slot.failed = Some((digest, reason)),
                    None => {
                        if matches!(e, LoadError::Plugin(PluginError::UnknownResource { .. })) {
                            self.waiting = Some(digest.clone());
                        }
                        self.write_failed(&digest, &reason).await;
                        return;
                    }
                }
            }
        }
        self.settle(object).await;
    }

    /// Brings the shadow in line with `spec.shadow`, then writes the status.
    async fn settle(&mut self, object: &Value) {
        self.sync_shadow(object).await;
        self.write_status(object).await;
    }

    /// Starts the candidate `spec.shadow` names beside the active version, or another one in
    /// its place, or stops it when it is gone (discarded, or promoted: then it is the active
    /// version).
    async fn sync_shadow(&mut self, object: &Value) {
        let Some(slot) = &mut self.slot else {
            return;
        };
        let active = format!("sha256:{}", slot.active.digest());
        let wanted = object
            .pointer("/spec/shadow/module/digest")
            .and_then(Value::as_str)
            .filter(|d| *d != active);
        match (wanted, &slot.shadow) {
            (None, None) => {}
            (None, Some(_)) => {
                slot.shadow = None;
                slot.plugin
                    .running
                    .swap(Box::new(slot.plugin.reconciler.clone()));
            }
            (Some(wanted), Some(shadow)) if shadow.digest() == wanted => {}
            (Some(wanted), _) => {
                let wanted = wanted.to_string();
                let (config, active) = (slot.config.clone(), slot.plugin.registration.clone());
                self.start_shadow(object, wanted, &config, &active).await;
            }
        }
    }

    /// Loads the candidate with `digest` as the shadow of the active version (which runs with
    /// `config` and registered as `active`) and wraps both in a [`ShadowReconciler`]; says so,
    /// or why it could not.
    async fn start_shadow(
        &mut self,
        object: &Value,
        digest: String,
        config: &Config,
        active: &Registration,
    ) {
        let (server, manager) = (&self.shared.server, &self.shared.manager);
        let prepared = match self.module(&object["spec"]["shadow"], &digest).await {
            Ok(module) => plugin::prepare_shadow(server, manager, object, module, config, active)
                .await
                .map_err(LoadError::from),
            Err(e) => Err(e),
        };
        let shadow = match prepared {
            Ok(prepared) => {
                let Some(slot) = &mut self.slot else {
                    return;
                };
                let reconciler =
                    ShadowReconciler::new(slot.plugin.reconciler.clone(), prepared.reconciler);
                let line = format!("running as the shadow of sha256:{}", slot.active.digest());
                prepared.host.plugin_log().write(Kind::Started, &line);
                let shadow = Shadow::Running {
                    digest: digest.clone(),
                    report: reconciler.report(),
                    health: reconciler.candidate_health(),
                };
                slot.plugin.running.swap(Box::new(reconciler));
                let message = format!("module {digest} runs as a shadow of the active version");
                self.event(object, EventType::Normal, "ShadowStarted", &message)
                    .await;
                shadow
            }
            Err(e) => {
                let message = format!("shadow module {digest} failed to load: {e}");
                tracing::warn!(plugin = %self.name, %digest, error = %e, "shadow module failed to load");
                self.event(object, EventType::Warning, "ShadowLoadFailed", &message)
                    .await;
                Shadow::Failed { digest, message }
            }
        };
        if let Some(slot) = &mut self.slot {
            // A running candidate replaced by one that failed goes with its wrapper.
            if matches!(shadow, Shadow::Failed { .. })
                && matches!(slot.shadow, Some(Shadow::Running { .. }))
            {
                slot.plugin
                    .running
                    .swap(Box::new(slot.plugin.reconciler.clone()));
            }
            slot.shadow = Some(shadow);
        }
    }

    /// Starts the prepared module, or swaps it in for the running one (see [`Self::replace`]).
    /// The old module is kept for a rollback.
    async fn take_over(&mut self, object: &Value, prepared: Prepared, config: Config) {
        let previous = self.replace(prepared, config).await;
        if let Some(slot) = &mut self.slot {
            let (kind, line) = match &previous {
                Some((old, _)) => (
                    Kind::Swapped,
                    format!("took over from sha256:{}", old.digest()),
                ),
                None => (Kind::Started, "running".to_string()),
            };
            slot.plugin.host.plugin_log().write(kind, &line);
            slot.swapped_at = previous.is_some().then(Instant::now);
            slot.previous = previous;
            slot.failed = None;
        }
        let message = format!("module {} is running", object["spec"]["module"]["digest"]);
        self.event(object, EventType::Normal, "Started", &message)
            .await;
    }

    /// Runs the active module with a new `config` (limits, workers or permissions changed). When
    /// it cannot run with it (the new permissions no longer let it get, list or watch what it
    /// reconciles), it stops.
    async fn reconfigure(&mut self, object: &Value, config: Config) {
        let Some(slot) = &self.slot else {
            return;
        };
        let (module, shared) = (slot.active.clone(), &self.shared);
        match plugin::prepare(&shared.server, &shared.manager, object, module, &config).await {
            Ok(prepared) => {
                self.replace(prepared, config).await;
                let message = "limits, workers or permissions changed: in force";
                self.event(object, EventType::Normal, "Reconfigured", message)
                    .await;
            }
            Err(e) => {
                self.slot = None;
                let digest = object["spec"]["module"]["digest"]
                    .as_str()
                    .unwrap_or_default();
                let reason = format!("stopped: it cannot run with the new configuration: {e}");
                tracing::warn!(plugin = %self.name, error = %reason, "plugin stopped");
                self.event(object, EventType::Warning, "ConfigFailed", &reason)
                    .await;
                self.write_failed(digest, &reason).await;
            }
        }
    }

    /// Puts a prepared module in place; returns the module it replaced and its configuration. The instances still at
    /// work are held to the ClusterRole `prepare` wrote from their next host call on. When both versions reconcile the
    /// same resources with the same configuration, reconciles in flight finish on the old
    /// reconciler and every queued key goes to the new one; otherwise the old one stops, its
    /// calls in flight cut short (a lowered deadline or a revoked grant must not wait for them),
    /// and the new one starts afresh with every key queued.
    async fn replace(
        &mut self,
        prepared: Prepared,
        config: Config,
    ) -> Option<(Arc<Module>, Config)> {
        let module = prepared.reconciler.module().clone();
        if let Some(slot) = self.slot.as_mut().filter(|s| {
            same_resources(&s.plugin.registration, &prepared.registration) && s.config == config
        }) {
            let reconciler = Arc::new(prepared.reconciler);
            slot.plugin.health = reconciler.health();
            slot.plugin.host = prepared.host;
            slot.reported_traps = 0;
            slot.plugin.registration = prepared.registration;
            slot.plugin.running.swap(Box::new(reconciler.clone()));
            slot.plugin.reconciler = reconciler;
            slot.shadow = None;
            let old_config = std::mem::replace(&mut slot.config, config);
            return Some((std::mem::replace(&mut slot.active, module), old_config));
        }
        let old = self.slot.take();
        let plugin = plugin::run(&self.shared.manager, prepared).await;
        self.slot = Some(Slot {
            plugin,
            active: module,
            config,
            previous: None,
            swapped_at: None,
            failed: None,
            reported_traps: 0,
            shadow: None,
        });
        old.map(|slot| (slot.active, slot.config))
    }

    /// Retries a module waiting for its resources, rolls back a module that keeps trapping on
    /// probation, and refreshes the status.
    async fn check(&mut self) {
        let shared = self.shared.clone();
        let stored = shared
            .server
            .objects
            .get(&shared.info, None, &self.name)
            .await;
        let Ok(Some(stored)) = stored else {
            return;
        };
        let object = stored.object;
        if self.waiting.is_some() {
            self.sync(Some(&object)).await;
        }
        let Some(slot) = &self.slot else {
            return;
        };
        let on_probation = slot.swapped_at.is_some_and(|t| t.elapsed() < PROBATION);
        let health = slot.health();
        let rollback = (on_probation && health.traps >= TRAPS_TO_ROLL_BACK)
            .then(|| slot.previous.clone())
            .flatten();
        self.report_traps(&object).await;
        if let Some((previous, config)) = rollback {
            let prepared =
                plugin::prepare(&shared.server, &shared.manager, &object, previous, &config).await;
            match prepared {
                Ok(prepared) => self.roll_back(&object, prepared, config, &health).await,
                Err(e) => self.rollback_failed(&object, &e.to_string()).await,
            }
        }
        self.settle(&object).await;
    }

    /// Puts the version before the last swap back in force, with the configuration it ran
    /// with; the one that kept trapping is marked failed.
    async fn roll_back(
        &mut self,
        object: &Value,
        prepared: Prepared,
        config: Config,
        health: &Health,
    ) {
        let bad = self.replace(prepared, config).await;
        let reason = format!(
            "rolled back: {} traps since it took over (last: {})",
            health.traps,
            health.last_trap.clone().unwrap_or_default()
        );
        if let Some(slot) = &mut self.slot {
            // Written by the version back in force, naming the one that went.
            let gone = bad.as_ref().map(|(m, _)| m.digest()).unwrap_or_default();
            let line = format!("sha256:{gone} {reason}");
            slot.plugin.host.plugin_log().write(Kind::RolledBack, &line);
            slot.previous = None;
            slot.swapped_at = None;
            slot.failed = bad.map(|(m, _)| (format!("sha256:{}", m.digest()), reason.clone()));
        }
        self.event(object, EventType::Warning, "RolledBack", &reason)
            .await;
    }

    /// The version before the last swap cannot run again (its resources are gone, say): the
    /// trapping one stays, and that is said once.
    async fn rollback_failed(&mut self, object: &Value, error: &str) {
        let reason = format!("cannot roll back to the previous version: {error}");
        if let Some(slot) = &mut self.slot {
            slot.previous = None;
            slot.plugin
                .host
                .plugin_log()
                .write(Kind::RollbackFailed, &reason);
        }
        tracing::warn!(plugin = %self.name, error = %reason, "rollback failed");
        self.event(object, EventType::Warning, "RollbackFailed", &reason)
            .await;
    }

    /// One Warning Event for the traps since the last report (each cost an instance).
    async fn report_traps(&mut self, object: &Value) {
        let Some(slot) = &mut self.slot else {
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

    async fn write_failed(&self, digest: &str, reason: &str) {
        let status = json!({"phase": "Failed", "message": format!("module {digest} failed to load: {reason}"),
            "conditions": [{"type": "Ready", "status": "False", "reason": "LoadFailed", "message": reason}]});
        self.patch_status(status).await;
    }

    async fn write_status(&self, object: &Value) {
        let Some(slot) = &self.slot else {
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
        if let Some((previous, _)) = &slot.previous {
            status["previousDigest"] = json!(format!("sha256:{}", previous.digest()));
        }
        if let Some(trap) = health.last_trap {
            status["lastTrap"] = json!(trap);
        }
        if let Some(shadow) = &slot.shadow {
            status["shadow"] = shadow.status();
        }
        self.patch_status(status).await;
    }

    async fn patch_status(&self, status: Value) {
        let (server, info) = (&self.shared.server, &self.shared.info);
        if let Err(e) = replace_status(server, info, &self.name, &status).await {
            tracing::debug!(plugin = %self.name, error = %e, "plugin status not written");
        }
    }
}
