//! A pod worker: one task per pod on this node that starts its containers in order, restarts
//! them by its restart policy, stops them when the pod is deleted, and reports its status.

pub mod etc;
pub mod event;
mod health;
mod hook;
mod launch;
mod probe;
mod pull;
mod refresh;
pub mod slot;
mod sources;
pub mod status;
mod teardown;
pub mod tokens;
pub mod volumes;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::api::Api;
use crate::cni::{Network, PortMapping};
use crate::console::{Console, Consoles, Stdin};
use crate::container::{Allocatable, Sources};
use crate::logs;
use crate::runtime::{Exit, Found, Launch, Runtime};
use event::Subject;
use slot::{RestartPolicy, Slot, State};
pub use teardown::kill_and_remove;
use teardown::remove_container;

/// Labels on every container wasmkube creates, so a restarted agent finds its pods again.
pub const LABEL_NODE: &str = "io.wasmkube.node";
pub const LABEL_POD_UID: &str = "io.wasmkube.pod.uid";
pub const LABEL_POD_NAME: &str = "io.wasmkube.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.wasmkube.pod.namespace";
pub const LABEL_CONTAINER: &str = "io.wasmkube.container.name";
pub const LABEL_ATTEMPT: &str = "io.wasmkube.container.attempt";

/// What every pod worker on the node shares.
pub struct Context {
    pub api: Api,
    pub runtime: Arc<dyn Runtime>,
    pub node_name: String,
    pub host_ip: String,
    /// Each pod's own directory (volumes, /etc files) is `<pods_dir>/<uid>`.
    pub pods_dir: PathBuf,
    /// Container logs, laid out as the kubelet's `/var/log/pods`.
    pub log_dir: PathBuf,
    pub fifo_dir: PathBuf,
    pub allocatable: Allocatable,
    /// What the pods' `/etc/resolv.conf` and `/etc/hosts` derive from.
    pub dns: etc::NodeDns,
    /// The most processes each container may hold (`--pod-max-pids`).
    pub pids_limit: Option<i64>,
    /// How many pod networks and containers are being made at once: a burst of pods queues
    /// here rather than all slowing each other down on a small machine.
    pub starting: tokio::sync::Semaphore,
    pub events: event::Recorder,
    /// The running containers' consoles, which `kubectl attach` reaches.
    pub consoles: Arc<Consoles>,
}

/// A container that ended: its id and how.
type Ended = (String, Exit);

/// What a worker is told: the pod as it is now, or that it is gone from the API.
pub type Desired = Option<Pod>;

fn pod_path(pod: &Pod) -> String {
    format!(
        "/api/v1/namespaces/{}/pods/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

fn host_ports(pod: &Pod) -> Vec<PortMapping> {
    pod.spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let host_port = u16::try_from(p.host_port?).ok().filter(|p| *p > 0)?;
            Some(PortMapping {
                host_port,
                container_port: u16::try_from(p.container_port).unwrap_or(0),
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                host_ip: p.host_ip.clone().unwrap_or_default(),
            })
        })
        .collect()
}

/// One pod's worker.
pub struct Worker {
    ctx: Arc<Context>,
    uid: String,
    desired: watch::Receiver<Desired>,
    slots: Vec<Slot>,
    ip: Option<String>,
    start_time: DateTime<Utc>,
    reported: Value,
    exits: (mpsc::Sender<Ended>, mpsc::Receiver<Ended>),
    /// Tells each running container's log copier that its process ended.
    log_done: HashMap<String, watch::Sender<bool>>,
    /// The pod's ConfigMaps, Secrets and claims as last read, and when to read them again.
    sources: Option<Sources>,
    refresh: refresh::Refresh,
    /// The volumes were made once: a new read of the sources updates their files.
    volumes_made: bool,
    /// The network and volumes were given back (the pod ended).
    released: bool,
    verdicts: (mpsc::Sender<probe::Verdict>, mpsc::Receiver<probe::Verdict>),
    /// The probing task of each running container that has probes.
    probes: HashMap<String, tokio::task::JoinHandle<()>>,
}

impl Worker {
    /// A worker for `pod`, adopting the containers of it that the runtime already runs.
    pub fn new(ctx: Arc<Context>, desired: watch::Receiver<Desired>, found: Vec<Found>) -> Worker {
        let pod = desired.borrow().clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let slots = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| Slot::new(&c.name, c.image.as_deref().unwrap_or_default(), true))
            .chain(
                spec.containers
                    .iter()
                    .map(|c| Slot::new(&c.name, c.image.as_deref().unwrap_or_default(), false)),
            )
            .collect();
        let start_time = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0)
            .unwrap_or_else(Utc::now);
        let mut worker = Worker {
            ip: ctx.runtime.address(&uid),
            refresh: refresh::Refresh::new(&uid),
            volumes_made: false,
            ctx,
            uid,
            desired,
            slots,
            start_time,
            reported: pod
                .status
                .as_ref()
                .and_then(|s| serde_json::to_value(s).ok())
                .unwrap_or(Value::Null),
            exits: mpsc::channel(16),
            log_done: HashMap::new(),
            sources: None,
            released: false,
            verdicts: mpsc::channel(16),
            probes: HashMap::new(),
        };
        worker.adopt(&pod, found);
        worker
    }

    /// Takes over the containers a previous agent started: the newest run of each container
    /// is its current one (watched again), older ones are removed.
    fn adopt(&mut self, pod: &Pod, mut found: Vec<Found>) {
        let attempt = |f: &Found| {
            f.labels
                .get(LABEL_ATTEMPT)
                .and_then(|a| a.parse::<u32>().ok())
                .unwrap_or(0)
        };
        found.sort_by_key(|f| std::cmp::Reverse(attempt(f)));
        let policy =
            RestartPolicy::parse(pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()));
        let now = Instant::now();
        let mut stale = Vec::new();
        for container in found {
            let name = container
                .labels
                .get(LABEL_CONTAINER)
                .cloned()
                .unwrap_or_default();
            let Some(slot) = self.slots.iter_mut().find(|s| s.name == name) else {
                stale.push(container.id);
                continue;
            };
            if !matches!(slot.state, State::Waiting { until: None, .. }) || slot.restarts > 0 {
                stale.push(container.id);
                continue;
            }
            slot.restarts = attempt(&container);
            slot.started(container.id.clone(), container.created);
            match container.exit {
                None => {
                    let restarts = slot.restarts;
                    self.watch_container(pod, &name, container.id.clone(), restarts);
                    self.start_probes(pod, &name, &container.id);
                }
                Some(exit) => {
                    slot.ended(exit, policy, &pod_label(pod), now);
                    stale.push(container.id);
                }
            }
        }
        for id in stale {
            let ctx = self.ctx.clone();
            tokio::spawn(async move { kill_and_remove(&ctx, &id).await });
        }
        // Their volumes were made by the agent before: the next read of the sources updates them.
        self.volumes_made = self.slots.iter().any(|s| s.running().is_some());
    }

    /// Copies the container's output into its log file and waits for its process to end.
    fn watch_container(&mut self, pod: &Pod, name: &str, id: String, attempt: u32) {
        self.copy_logs(pod, name, &id, attempt);
        self.watch_exit(id);
    }

    /// Copies the container's output into its log file until its process ends, and opens its
    /// console to attaches (with its stdin, if its spec asks for one).
    fn copy_logs(&mut self, pod: &Pod, name: &str, id: &str, attempt: u32) {
        let (out, err) = logs::fifos(&self.ctx.fifo_dir, id);
        let log = logs::log_path(
            &self.ctx.log_dir,
            pod.metadata.namespace.as_deref().unwrap_or("default"),
            pod.metadata.name.as_deref().unwrap_or_default(),
            &self.uid,
            name,
            attempt,
        );
        let spec = pod
            .spec
            .iter()
            .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers));
        let container = spec.into_iter().find(|c| c.name == name);
        let stdin = container.filter(|c| c.stdin == Some(true)).and_then(|c| {
            let path = logs::stdin_fifo(&self.ctx.fifo_dir, id);
            Stdin::open(&path, c.stdin_once == Some(true))
                .inspect_err(|e| tracing::warn!(container = %id, error = %e, "opening stdin"))
                .ok()
        });
        let tty = container.is_some_and(|c| c.tty == Some(true));
        let console = Arc::new(Console::new(stdin, tty));
        let tap = console.output.clone();
        self.ctx.consoles.insert(id, console);
        let (done_tx, done_rx) = watch::channel(false);
        self.log_done.insert(id.to_string(), done_tx);
        tokio::spawn(async move {
            if let Err(e) = logs::copy(out, err, log, done_rx, tap).await {
                tracing::warn!(error = %e, "copying container output");
            }
        });
    }

    /// The container's process ended (or never started): its output is read to the end and
    /// its console closed.
    fn close_output(&mut self, id: &str) {
        if let Some(done) = self.log_done.remove(id) {
            let _ = done.send(true);
        }
        self.ctx.consoles.remove(id);
    }

    /// Waits for the container's process to end and tells the worker.
    fn watch_exit(&self, id: String) {
        let runtime = self.ctx.runtime.clone();
        let exits = self.exits.0.clone();
        tokio::spawn(async move {
            loop {
                match runtime.wait(&id).await {
                    Ok(exit) => {
                        let _ = exits.send((id, exit)).await;
                        return;
                    }
                    // Removed meanwhile (a stop that gave up waiting, the housekeeping).
                    Err(e) if e.is_not_found() => return,
                    Err(e) => {
                        tracing::warn!(container = %id, error = %e, "waiting for a container");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                }
            }
        });
    }

    /// Runs the pod until it is gone: steps on every change, exit and due restart.
    pub async fn run(mut self) {
        loop {
            let desired = self.desired.borrow_and_update().clone();
            let Some(pod) = desired else {
                self.stop(Duration::ZERO).await;
                self.release().await;
                return;
            };
            if pod.metadata.deletion_timestamp.is_some() {
                // deletionTimestamp is when the grace period ends (even across agent restarts).
                let grace = pod
                    .metadata
                    .deletion_timestamp
                    .as_ref()
                    .and_then(|end| (end.0 - Utc::now()).to_std().ok())
                    .unwrap_or_default();
                self.stop(grace).await;
                self.release().await;
                if let Err(e) = self.ctx.api.delete(&pod_path(&pod), 0).await {
                    tracing::warn!(pod = %pod_label(&pod), error = %e, "finishing the deletion");
                }
                return;
            }
            let wake = self.step(&pod).await;
            self.report(&pod).await;
            let sleep = tokio::time::sleep_until(
                wake.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
            );
            tokio::select! {
                changed = self.desired.changed() => {
                    if changed.is_err() {
                        self.stop(Duration::ZERO).await;
                        self.release().await;
                        return;
                    }
                }
                Some((id, exit)) = self.exits.1.recv() => self.ended(&pod, &id, exit).await,
                Some(verdict) = self.verdicts.1.recv() => self.judged(&pod, verdict).await,
                () = sleep => {}
            }
        }
    }

    /// A container's process ended: record it, remove the container.
    async fn ended(&mut self, pod: &Pod, id: &str, exit: Exit) {
        let policy =
            RestartPolicy::parse(pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()));
        let label = pod_label(pod);
        if let Some(slot) = self.slots.iter_mut().find(|s| s.running() == Some(id)) {
            slot.ready = false;
            slot.ended(exit, policy, &label, Instant::now());
            if matches!(&slot.state, State::Waiting { reason, .. } if reason == "CrashLoopBackOff")
            {
                let message = format!(
                    "Back-off restarting failed container {} in pod {label}",
                    slot.name
                );
                let subject = Subject::container(pod, &slot.name);
                self.ctx.events.warning(&subject, "BackOff", &message);
            }
        }
        self.close_output(id);
        if let Some(probes) = self.probes.remove(id) {
            probes.abort();
        }
        remove_container(&self.ctx, id).await;
    }

    /// Does what the pod needs next; returns when to look again (a back-off ending).
    async fn step(&mut self, pod: &Pod) -> Option<Instant> {
        let now = Instant::now();
        let phase = status::phase(&self.slots, policy(pod));
        if phase == "Succeeded" || phase == "Failed" {
            self.release().await;
            return None;
        }
        if self.ip.is_none() {
            let _permit = self.ctx.starting.acquire().await;
            let network = if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
                Network::Host(self.ctx.host_ip.clone())
            } else {
                Network::Pod(host_ports(pod))
            };
            match self.ctx.runtime.attach(&self.uid, &network).await {
                Ok(ip) => {
                    // The pod's processes together; each container keeps its own cap too, so a
                    // failure here leaves the pod limited all the same.
                    if let Some(max) = self.ctx.pids_limit
                        && let Err(e) = crate::cgroups::limit_pod_pids(&self.uid, max)
                    {
                        tracing::warn!(pod = %pod_label(pod), error = %e, "limiting the pod's processes");
                    }
                    self.ip = Some(ip);
                }
                Err(e) => {
                    tracing::warn!(pod = %pod_label(pod), error = %e, "attaching the pod network");
                    let message = format!("Failed to create pod sandbox: {e}");
                    let subject = Subject::pod(pod);
                    self.ctx
                        .events
                        .warning(&subject, "FailedCreatePodSandBox", &message);
                    return Some(now + Duration::from_secs(2));
                }
            }
        }
        if self.refresh.due(now) {
            self.read_sources(pod, now).await;
        }
        if self.sources.is_none() {
            return self.refresh.next();
        }
        let wake = self.start_due(pod, now).await;
        earliest(wake, self.refresh.next())
    }

    /// Reads the pod's ConfigMaps, Secrets and claims again; once its volumes are made, their
    /// files are brought up to date (a failure is an Event, the files stay as they were).
    async fn read_sources(&mut self, pod: &Pod, now: Instant) {
        match sources::fetch(&self.ctx.api, pod, self.sources.as_ref()).await {
            Ok(sources) => {
                self.refresh.read(now);
                if self.volumes_made {
                    let pod_dir = self.ctx.pods_dir.join(&self.uid);
                    if let Err(e) = volumes::update(pod, &pod_dir, &sources).await {
                        let subject = Subject::pod(pod);
                        self.ctx
                            .events
                            .warning(&subject, "FailedMount", &e.to_string());
                    }
                }
                self.sources = Some(sources);
            }
            Err(e) => {
                tracing::warn!(pod = %pod_label(pod), error = %e, "reading configmaps and secrets");
                self.refresh.retry(now);
                if self.sources.is_none() {
                    let message = format!("Unable to attach or mount volumes: {e}");
                    let subject = Subject::pod(pod);
                    self.ctx.events.warning(&subject, "FailedMount", &message);
                }
            }
        }
    }

    /// Starts the containers that are due (init containers one at a time, each to success
    /// before the next); returns when one is due next.
    async fn start_due(&mut self, pod: &Pod, now: Instant) -> Option<Instant> {
        let spec = pod.spec.clone().unwrap_or_default();
        let containers: Vec<Container> = spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .cloned()
            .collect();
        let mut wake: Option<Instant> = None;
        for (index, container) in containers.iter().enumerate() {
            let slot = &self.slots[index];
            if slot.init && (slot.running().is_some() || !slot.succeeded()) {
                // Init containers run one at a time, each to success before the next.
                if slot.startable(now) {
                    self.start(pod, container, index).await;
                }
                wake = earliest(wake, until(&self.slots[index]));
                return wake;
            }
            if !slot.init && slot.startable(now) {
                self.start(pod, container, index).await;
            }
            wake = earliest(wake, until(&self.slots[index]));
        }
        wake
    }

    /// Starts the container of slot `index`, or records why it cannot start.
    async fn start(&mut self, pod: &Pod, container: &Container, index: usize) {
        let now = Instant::now();
        let Some(image) = pull::image(&self.ctx, pod, container, &mut self.slots[index]).await
        else {
            return;
        };
        // After the pull: a slow registry holds up only its own pod.
        let ctx = self.ctx.clone();
        let permit = ctx.starting.acquire().await;
        let sources = self.sources.clone().unwrap_or_default();
        let pod_dir = self.ctx.pods_dir.join(&self.uid);
        if let Err(e) = volumes::prepare(pod, &pod_dir, &sources).await {
            // The pod waits for its volumes: an Event on the pod, the container still
            // creating, the sources read again and the start tried again soon.
            let message = e.to_string();
            tracing::warn!(pod = %pod_label(pod), %message, "preparing volumes");
            let subject = Subject::pod(pod);
            self.ctx.events.warning(&subject, "FailedMount", &message);
            let until = self.refresh.retry(now);
            self.slots[index].wait("ContainerCreating", message, until);
            return;
        }
        self.volumes_made = true;
        let attempt = self.slots[index].restarts;
        let id = format!("{}-{}-{attempt}", self.uid, container.name);
        let accounts = match self.ctx.runtime.accounts(&image).await {
            Ok(accounts) => accounts,
            Err(e) => {
                self.refuse(pod, index, "CreateContainerError", e.to_string(), now);
                return;
            }
        };
        let inputs = launch::Inputs {
            image: &image,
            accounts: &accounts,
            sources: &sources,
            allocatable: &self.ctx.allocatable,
            pod_dir: &pod_dir,
            pod_ip: self.ip.as_deref().unwrap_or_default(),
            dns: &self.ctx.dns,
            cgroups_path: crate::cgroups::container_path(&self.uid, &id),
            pids_limit: self.ctx.pids_limit,
        };
        let mut process = match launch::process(pod, container, &inputs) {
            Ok(process) => process,
            Err(refusal) => {
                self.refuse(pod, index, refusal.reason, refusal.message, now);
                return;
            }
        };
        if let Err(e) =
            volumes::pin_sub_paths(pod, &pod_dir, container, &sources, &mut process.binds)
        {
            let reason = "CreateContainerConfigError";
            self.refuse(pod, index, reason, e.to_string(), now);
            return;
        }
        let fifos = async {
            let (stdout, stderr) = logs::make_fifos(&self.ctx.fifo_dir, &id).await?;
            let stdin = match container.stdin {
                Some(true) => Some(logs::make_stdin_fifo(&self.ctx.fifo_dir, &id)?),
                _ => None,
            };
            Ok::<_, logs::LogError>((stdout, stderr, stdin))
        };
        let (stdout, stderr, stdin) = match fifos.await {
            Ok(paths) => paths,
            Err(e) => {
                self.refuse(pod, index, "RunContainerError", e.to_string(), now);
                return;
            }
        };
        let labels = HashMap::from([
            (LABEL_NODE.to_string(), self.ctx.node_name.clone()),
            (LABEL_POD_UID.to_string(), self.uid.clone()),
            (
                LABEL_POD_NAME.to_string(),
                pod.metadata.name.clone().unwrap_or_default(),
            ),
            (
                LABEL_POD_NAMESPACE.to_string(),
                pod.metadata.namespace.clone().unwrap_or_default(),
            ),
            (LABEL_CONTAINER.to_string(), container.name.clone()),
            (LABEL_ATTEMPT.to_string(), attempt.to_string()),
        ]);
        self.copy_logs(pod, &container.name, &id, attempt);
        let launch = Launch {
            id: id.clone(),
            image,
            spec: crate::spec::runtime_spec(&process),
            labels,
            stdout,
            stderr,
            stdin,
            terminal: container.tty == Some(true),
        };
        match self.ctx.runtime.start(launch).await {
            Ok(()) => {
                drop(permit);
                self.refresh.settled();
                let subject = Subject::container(pod, &container.name);
                let name = &container.name;
                self.ctx
                    .events
                    .normal(&subject, "Created", &format!("Created container: {name}"));
                self.ctx
                    .events
                    .normal(&subject, "Started", &format!("Started container {name}"));
                self.slots[index].started(id.clone(), Utc::now());
                self.watch_exit(id.clone());
                self.post_start(pod, container, &id).await;
                self.start_probes(pod, &container.name, &id);
            }
            Err(e) => {
                self.close_output(&id);
                // What the failed start left (a snapshot, a container) would be in the way.
                let _ = self.ctx.runtime.remove(&id).await;
                self.refuse(pod, index, "RunContainerError", e.to_string(), now);
            }
        }
    }
}

impl Worker {
    /// Records why the container of slot `index` could not start (a `Failed` Event, as the
    /// kubelet's); it is tried again after its back-off, or, for a configuration the pod's
    /// sources may yet fix (`CreateContainerConfigError`: a ConfigMap or Secret missing), with
    /// the sources read again after the shorter retry, as the kubelet retries it.
    fn refuse(&mut self, pod: &Pod, index: usize, reason: &str, message: String, now: Instant) {
        let name = &self.slots[index].name;
        tracing::warn!(pod = %pod_label(pod), container = %name, %reason, %message, "the container did not start");
        let subject = Subject::container(pod, name);
        self.ctx
            .events
            .warning(&subject, "Failed", &format!("Error: {message}"));
        if reason == launch::CONFIG_ERROR {
            let until = self.refresh.retry(now);
            self.slots[index].wait(reason, message, until);
        } else {
            self.slots[index].failed_to_start(reason, message, now);
        }
    }

    /// Writes the pod's status when it differs from what was last written.
    async fn report(&mut self, pod: &Pod) {
        let status = status::compute(&status::Facts {
            pod,
            slots: &self.slots,
            pod_ip: self.ip.as_deref(),
            host_ip: &self.ctx.host_ip,
            start_time: self.start_time,
            policy: policy(pod),
        });
        if status == self.reported {
            return;
        }
        let patch = json!({"status": status});
        match self
            .ctx
            .api
            .merge_patch(&format!("{}/status", pod_path(pod)), &patch)
            .await
        {
            Ok(_) => self.reported = status,
            Err(e) => tracing::warn!(pod = %pod_label(pod), error = %e, "writing the pod status"),
        }
    }
}

fn policy(pod: &Pod) -> RestartPolicy {
    RestartPolicy::parse(pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()))
}

fn until(slot: &Slot) -> Option<Instant> {
    match &slot.state {
        State::Waiting { until, .. } => *until,
        _ => None,
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `name_namespace(uid)`, how the kubelet names a pod in messages.
pub fn pod_label(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}
