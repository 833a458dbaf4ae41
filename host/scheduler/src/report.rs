//! What the scheduler reports: counters and latency for /metrics, and per profile its phase,
//! policies and shadow comparison, written to the SchedulerProfile's status.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};
use wasmkube_apiserver::metrics::{Histogram, write_histogram};

/// Disagreements kept in a profile's status.
const RECENT: usize = 10;

/// A profile's state as its status shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfileReport {
    pub scheduler_name: String,
    /// `Running`, `Pending`, `Failed` (the new configuration did not load; the old one stays in
    /// force) or `RolledBack` (a policy trapped; the previous one is back).
    pub phase: String,
    pub message: String,
    /// `plugin@version` of each running stage.
    pub policies: Vec<String>,
    pub shadow: Option<ShadowReport>,
}

/// How a candidate policy compares with the active one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShadowReport {
    pub policies: Vec<String>,
    pub pods: u64,
    pub disagreements: u64,
    /// The latest disagreements: (pod, the active policy's node, the candidate's).
    pub recent: VecDeque<(String, String, String)>,
    /// Pods not compared because the candidate was too far behind.
    pub skipped: u64,
    pub errors: u64,
    pub last_error: String,
}

impl ShadowReport {
    /// One pod compared: `active` and `candidate` are the nodes each would choose (`None`:
    /// unschedulable); they agree when the candidate ranks the active choice among its best.
    pub fn record(
        &mut self,
        pod: &str,
        active: Option<&str>,
        candidate: Option<&str>,
        agree: bool,
    ) {
        self.pods += 1;
        if agree {
            return;
        }
        self.disagreements += 1;
        let none = || "<unschedulable>".to_string();
        self.recent.push_front((
            pod.to_string(),
            active.map_or_else(none, String::from),
            candidate.map_or_else(none, String::from),
        ));
        self.recent.truncate(RECENT);
    }
}

impl ProfileReport {
    /// The status object.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "schedulerName": self.scheduler_name,
            "phase": self.phase,
            "message": self.message,
            "policies": self.policies.join(","),
        });
        if let Some(shadow) = &self.shadow {
            let agreement = if shadow.pods == 0 {
                100.0
            } else {
                100.0 * (shadow.pods - shadow.disagreements) as f64 / shadow.pods as f64
            };
            status["shadow"] = json!({
                "policies": shadow.policies.join(","),
                "pods": shadow.pods,
                "disagreements": shadow.disagreements,
                "agreementPercent": (agreement * 10.0).round() / 10.0,
                "recentDisagreements": shadow.recent.iter().map(|(pod, active, candidate)| json!({
                    "pod": pod, "active": active, "shadow": candidate})).collect::<Vec<_>>(),
                "skipped": shadow.skipped,
                "errors": shadow.errors,
                "lastError": shadow.last_error,
            });
        }
        status
    }
}

/// Counters since start.
#[derive(Debug, Default)]
pub struct Stats {
    pub scheduled: u64,
    pub unschedulable: u64,
    pub errors: u64,
    /// Queue (first entry) to binding, for bound pods.
    pub latency: Histogram,
    /// Every bound pod's queue-to-bind latency, while a benchmark asks for them.
    pub latencies: Option<Vec<Duration>>,
    pub profiles: BTreeMap<String, ProfileReport>,
}

impl Stats {
    pub fn bound(&mut self, latency: Duration) {
        self.scheduled += 1;
        self.latency.observe(latency.as_secs_f64());
        if let Some(all) = &mut self.latencies {
            all.push(latency);
        }
    }

    /// The Prometheus text of the counters.
    pub fn render(&self, out: &mut String) {
        out.push_str("# TYPE wasmkube_scheduler_schedule_attempts_total counter\n");
        for (result, n) in [
            ("scheduled", self.scheduled),
            ("unschedulable", self.unschedulable),
            ("error", self.errors),
        ] {
            let _ = writeln!(
                out,
                "wasmkube_scheduler_schedule_attempts_total{{result=\"{result}\"}} {n}"
            );
        }
        out.push_str("# TYPE wasmkube_scheduler_e2e_scheduling_duration_seconds histogram\n");
        write_histogram(
            out,
            "wasmkube_scheduler_e2e_scheduling_duration_seconds",
            "scheduler=\"wasmkube\"",
            &self.latency,
        );
        out.push_str("# TYPE wasmkube_scheduler_shadow_pods_total counter\n");
        out.push_str("# TYPE wasmkube_scheduler_shadow_disagreements_total counter\n");
        for (name, report) in &self.profiles {
            if let Some(shadow) = &report.shadow {
                let _ = writeln!(
                    out,
                    "wasmkube_scheduler_shadow_pods_total{{profile=\"{name}\"}} {}",
                    shadow.pods
                );
                let _ = writeln!(
                    out,
                    "wasmkube_scheduler_shadow_disagreements_total{{profile=\"{name}\"}} {}",
                    shadow.disagreements
                );
            }
        }
    }
}
