//! The profile task: follows SchedulerProfiles and scheduling-policy Plugins, prepares what a new
//! configuration runs (instances loaded and brought up to date, off the scheduling loop), and
//! hands it to the loop; a configuration that fails to load leaves the old one in force.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use wasmkube_apiserver::plugin_logs::Role;
use wasmkube_apiserver::registry::replace_status;
use wasmkube_model::resource::{PLUGIN_GROUP, ResourceInfo};

use crate::cycle::{Stage, short};
use crate::profile::{self, DEFAULT_SCHEDULER, Profile};
use crate::report::ProfileReport;
use crate::scheduler::{Active, Reuse, Shared, Swap, Trapped};
use crate::shadow::Shadow;
use crate::source::Source;

/// What the loop was last given for one scheduler name: the profile and its plugins' versions.
type Given = BTreeMap<String, (Profile, Vec<Option<String>>)>;

fn resource(shared: &Shared, plural: &str) -> Option<Arc<ResourceInfo>> {
    shared
        .server
        .registry()
        .get(PLUGIN_GROUP, "v1alpha1", plural)
        .cloned()
}

/// The profiles wanted now: every SchedulerProfile, and the built-in default for
/// `default-scheduler` unless one of them names it.
fn wanted(shared: &Shared) -> BTreeMap<String, Profile> {
    let mut profiles: BTreeMap<String, Profile> = BTreeMap::new();
    if let Some(info) = resource(shared, "schedulerprofiles") {
        for obj in shared.manager.informer(&info).list(None) {
            let profile = Profile::from_object(&obj);
            profiles.insert(profile.scheduler_name.clone(), profile);
        }
    }
    profiles
        .entry(DEFAULT_SCHEDULER.into())
        .or_insert_with(Profile::default_profile);
    profiles
}

/// Loads one stage's policy and brings it up to date with the cache.
async fn stage(
    shared: &Shared,
    source: &dyn Source,
    configured: &profile::Stage,
    role: Role,
) -> Result<Stage, String> {
    let mut policy = source.load(&configured.plugin, role).await?;
    let (filters, scores) = configured.plugins(policy.capabilities())?;
    let feed = shared.cache().subscribe();
    policy
        .apply(&feed.drain())
        .await
        .map_err(|e| format!("policy {:?}: {e}", configured.plugin))?;
    Ok(Stage::new(
        configured.plugin.clone(),
        policy,
        feed,
        filters,
        scores,
    ))
}

/// Everything a profile runs, ready. A primary stage whose plugin runs at the same version in
/// `running` (what the loop has now) keeps that instance, which is already up to date; the others
/// are prepared at once, each on its own task (bringing an instance up to date is guest work
/// that the other core can share).
async fn prepare(
    shared: &Arc<Shared>,
    source: &Arc<dyn Source>,
    profile: &Profile,
    running: Option<&(Profile, Vec<Option<String>>)>,
    exclude: Option<&str>,
) -> Result<Active, String> {
    if profile.policies.is_empty() {
        return Err("spec.policies names no policy".into());
    }
    let running_version = |plugin: &str| -> Option<String> {
        let (old, versions) = running?;
        let i = old.policies.iter().position(|s| s.plugin == plugin)?;
        versions.get(i).cloned().flatten()
    };
    let mut reuse = Vec::new();
    let mut tasks = Vec::new();
    for (i, configured) in profile.policies.iter().chain(&profile.shadow).enumerate() {
        let primary = i < profile.policies.len();
        let version = source.version(&configured.plugin);
        let taken = reuse
            .iter()
            .any(|r: &Reuse| r.configured.plugin == configured.plugin);
        let healthy = exclude.is_none_or(|plugin| plugin != configured.plugin);
        if primary
            && healthy
            && !taken
            && version.is_some()
            && running_version(&configured.plugin) == version
        {
            reuse.push(Reuse {
                position: i,
                configured: configured.clone(),
            });
            continue;
        }
        let (shared, source, configured) = (shared.clone(), source.clone(), configured.clone());
        tasks.push((
            primary,
            tokio::spawn(async move {
                let role = if primary { Role::Active } else { Role::Shadow };
                stage(&shared, source.as_ref(), &configured, role).await
            }),
        ));
    }
    let (mut stages, mut shadow) = (Vec::new(), Vec::new());
    for (primary, task) in tasks {
        let stage = task.await.map_err(|e| e.to_string())??;
        if primary {
            stages.push(stage);
        } else {
            shadow.push(stage);
        }
    }
    let shadow =
        (!shadow.is_empty()).then(|| Shadow::start(shared.clone(), profile.object.clone(), shadow));
    Ok(Active {
        profile: profile.clone(),
        stages,
        shadow,
        reuse,
        note: None,
    })
}

/// What the profile task keeps per scheduler name.
#[derive(Default)]
struct Profiles {
    /// What the loop was last given.
    given: Given,
    /// What ran before that: the configuration a trap rolls back to.
    good: Given,
    /// Configurations that failed to load or trapped: not tried again until they change.
    failed: Given,
}

/// Runs until the loop is gone: on every change to profiles or policy Plugins (`dirty`) brings
/// the loop's profiles in line with what is wanted, and on a trap rolls the profile back.
pub async fn run(
    shared: Arc<Shared>,
    source: Arc<dyn Source>,
    swaps: mpsc::UnboundedSender<Swap>,
    mut dirty: mpsc::UnboundedReceiver<()>,
    mut trapped: mpsc::UnboundedReceiver<Trapped>,
) {
    let mut state = Profiles::default();
    loop {
        tokio::select! {
            signal = dirty.recv() => if signal.is_none() { return },
            Some(trap) = trapped.recv() => {
                roll_back(&shared, &source, &swaps, &mut state, trap).await;
                continue;
            }
            () = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
        while dirty.try_recv().is_ok() {}
        let wanted = wanted(&shared);
        for (name, profile) in &wanted {
            let versions: Vec<Option<String>> =
                profile.plugins().map(|p| source.version(p)).collect();
            let want = (profile.clone(), versions);
            if state.given.get(name) == Some(&want) || state.failed.get(name) == Some(&want) {
                continue;
            }
            match prepare(&shared, &source, profile, state.given.get(name), None).await {
                Ok(active) => {
                    state.failed.remove(name);
                    if let Some(old) = state.given.insert(name.clone(), want) {
                        state.good.insert(name.clone(), old);
                    }
                    if swaps.send(Swap::Install(Box::new(active))).is_err() {
                        return;
                    }
                }
                Err(message) => {
                    tracing::warn!(scheduler = %name, %message, "profile did not load; the previous one stays in force");
                    report(
                        &shared,
                        profile,
                        "Failed",
                        format!("{message}; the previous configuration stays in force"),
                    );
                    state.failed.insert(name.clone(), want);
                }
            }
        }
        let gone: Vec<String> = state
            .given
            .keys()
            .filter(|n| !wanted.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            state.given.remove(&name);
            state.good.remove(&name);
            let _ = swaps.send(Swap::Remove(name));
        }
    }
}

fn report(shared: &Shared, profile: &Profile, phase: &str, message: String) {
    let mut stats = shared.stats();
    let report = stats.profiles.entry(profile.object.clone()).or_default();
    report.scheduler_name = profile.scheduler_name.clone();
    report.phase = phase.into();
    report.message = message;
}

/// A running policy trapped: back to the configuration before it (`RolledBack`), keeping the
/// healthy instances; with none before it, the same configuration with a fresh instance of the
/// trapped policy. The trapped configuration is not tried again until it changes.
async fn roll_back(
    shared: &Arc<Shared>,
    source: &Arc<dyn Source>,
    swaps: &mpsc::UnboundedSender<Swap>,
    state: &mut Profiles,
    trap: Trapped,
) {
    let Some(current) = state.given.get(&trap.scheduler).cloned() else {
        return;
    };
    let earlier = state.good.remove(&trap.scheduler);
    let back = earlier.is_some();
    let target = earlier.unwrap_or_else(|| current.clone());
    // An empty plugin means: start every instance anew.
    let exclude = Some(trap.plugin.as_str()).filter(|p| !p.is_empty());
    let prepared = match exclude {
        Some(plugin) => prepare(shared, source, &target.0, Some(&current), Some(plugin)).await,
        None => prepare(shared, source, &target.0, None, None).await,
    };
    match prepared {
        Ok(mut active) => {
            let names: Vec<String> = target
                .0
                .policies
                .iter()
                .zip(&target.1)
                .map(|(stage, version)| {
                    format!(
                        "{}@{}",
                        stage.plugin,
                        short(version.as_deref().unwrap_or("?"))
                    )
                })
                .collect();
            let versions = names.join(",");
            active.note = Some(if back {
                (
                    "RolledBack".into(),
                    format!("{}; back on the previous configuration", trap.reason),
                )
            } else {
                ("Running".into(), format!("{}; restarted", trap.reason))
            });
            if back {
                // The trapped profile's object says so (what runs now may be another one, or the
                // built-in default).
                let message = format!("{}; back on {versions}", trap.reason);
                report(shared, &current.0, "RolledBack", message);
                if let Some(r) = shared.stats().profiles.get_mut(&current.0.object) {
                    r.policies = names;
                }
                state.failed.insert(trap.scheduler.clone(), current);
            }
            tracing::warn!(scheduler = %trap.scheduler, reason = %trap.reason, policies = %versions, "scheduling policy trapped");
            state.given.insert(trap.scheduler, target);
            let _ = swaps.send(Swap::Install(Box::new(active)));
        }
        Err(message) => {
            report(
                shared,
                &current.0,
                "Failed",
                format!("{}; recovering failed: {message}", trap.reason),
            );
        }
    }
}

/// The status of each Scheduler Plugin the profiles name: `Running` while a profile runs it
/// (else the phase of the profile that tried to), with the schedulers that use it.
fn plugin_statuses(reports: &BTreeMap<String, ProfileReport>) -> BTreeMap<String, Value> {
    let mut users: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for report in reports.values() {
        for label in &report.policies {
            let plugin = label.split('@').next().unwrap_or(label);
            let (phase, schedulers) = users
                .entry(plugin.to_string())
                .or_insert_with(|| (report.phase.clone(), Vec::new()));
            if report.phase == "Running" {
                *phase = report.phase.clone();
            }
            schedulers.push(report.scheduler_name.clone());
        }
    }
    users
        .into_iter()
        .map(|(plugin, (phase, schedulers))| {
            let ready = if phase == "Running" { "True" } else { "False" };
            let message = format!("scheduling policy of {}", schedulers.join(", "));
            let status = json!({
                "phase": phase,
                "message": message,
                "conditions": [{"type": "Ready", "status": ready, "reason": phase, "message": message}],
            });
            (plugin, status)
        })
        .collect()
}

/// Writes `status` to the object `name` of `info` unless `written` says it already has it.
async fn write_one(
    shared: &Shared,
    info: &ResourceInfo,
    name: &str,
    status: Value,
    written: &mut BTreeMap<String, Value>,
) {
    if written.get(name) == Some(&status) {
        return;
    }
    if replace_status(&shared.server, info, name, &status)
        .await
        .is_ok()
    {
        written.insert(name.to_string(), status);
    }
}

/// Writes each SchedulerProfile's status, and that of the Scheduler Plugins they run, when it
/// changed, every second.
pub async fn write_status(shared: Arc<Shared>) {
    let (Some(profiles), Some(plugins)) = (
        resource(&shared, "schedulerprofiles"),
        resource(&shared, "plugins"),
    ) else {
        return;
    };
    let mut written_profiles = BTreeMap::new();
    let mut written_plugins = BTreeMap::new();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let reports = shared.stats().profiles.clone();
        for (object, report) in reports.iter().filter(|(o, _)| !o.is_empty()) {
            write_one(
                &shared,
                &profiles,
                object,
                report.status(),
                &mut written_profiles,
            )
            .await;
        }
        for (plugin, status) in plugin_statuses(&reports) {
            write_one(&shared, &plugins, &plugin, status, &mut written_plugins).await;
        }
    }
}
