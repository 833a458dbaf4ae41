//! Shadow policies off the scheduling path: a profile's candidate stages run on a task of their
//! own, handed each pod the active stages placed with the deltas seen up to then; when the
//! candidate lags behind, pods are skipped and counted, never waited for.

use std::sync::Arc;

use tokio::sync::mpsc;
use wasmkube_runtime::Delta;

use crate::cache::{Feed, PodKey};
use crate::cycle::{self, Found, Stage};
use crate::scheduler::Shared;

/// Pods waiting for the shadow task, at most; a pod offered beyond that is skipped.
const BACKLOG: usize = 64;

/// One pod for the candidate, with what the active stages found and chose.
struct Comparison {
    key: PodKey,
    pod: String,
    found: Found,
    chosen: Option<String>,
    to_find: usize,
    /// For each stage, the cluster's changes since the pod before, up to this pod's cycle.
    deltas: Vec<Vec<Delta>>,
}

/// A profile's candidate stages at work on their own task; dropping it stops the task.
pub struct Shadow {
    shared: Arc<Shared>,
    /// The SchedulerProfile object whose status reports the comparison.
    profile: String,
    labels: Vec<String>,
    /// Each stage's feed from the cache, drained when a pod is handed over, so that the candidate
    /// sees the cluster as the active stages did.
    sources: Vec<Arc<Feed>>,
    pods: mpsc::Sender<Comparison>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Shadow {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Shadow {
    /// Starts the candidate `stages` of the profile object `profile` on a task of their own.
    pub fn start(shared: Arc<Shared>, profile: String, mut stages: Vec<Stage>) -> Shadow {
        let labels = cycle::labels(&stages);
        let sources = stages
            .iter_mut()
            .map(|stage| std::mem::take(&mut stage.feed))
            .collect();
        let (pods, rx) = mpsc::channel(BACKLOG);
        let task = tokio::spawn(run(shared.clone(), profile.clone(), stages, rx));
        Shadow {
            shared,
            profile,
            labels,
            sources,
            pods,
            task,
        }
    }

    /// `plugin@version` of each candidate stage.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Hands a pod to the candidate without waiting; one it has no room for is counted as
    /// skipped. Call before the pod is assumed, so that the candidate does not see it placed.
    pub fn offer(
        &self,
        key: PodKey,
        pod: String,
        found: Found,
        chosen: Option<String>,
        to_find: usize,
    ) {
        let Ok(permit) = self.pods.try_reserve() else {
            let mut stats = self.shared.stats();
            if let Some(report) = stats
                .profiles
                .get_mut(&self.profile)
                .and_then(|r| r.shadow.as_mut())
            {
                report.skipped += 1;
            }
            return;
        };
        permit.send(Comparison {
            key,
            pod,
            found,
            chosen,
            to_find,
            deltas: self.sources.iter().map(|feed| feed.drain()).collect(),
        });
    }
}

/// The shadow task: runs the candidate on each pod and records whether it would choose as the
/// active stages did, over the nodes they found feasible (all nodes when they found none).
async fn run(
    shared: Arc<Shared>,
    profile: String,
    mut stages: Vec<Stage>,
    mut pods: mpsc::Receiver<Comparison>,
) {
    while let Some(c) = pods.recv().await {
        for (stage, deltas) in stages.iter_mut().zip(c.deltas) {
            stage.feed.extend(deltas);
        }
        let candidates = c
            .chosen
            .as_ref()
            .map(|_| c.found.feasible.iter().map(|(n, _)| n.clone()).collect());
        let theirs = cycle::run(&mut stages, &c.pod, c.to_find, candidates).await;
        let mut stats = shared.stats();
        let Some(report) = stats
            .profiles
            .get_mut(&profile)
            .and_then(|r| r.shadow.as_mut())
        else {
            continue;
        };
        match theirs {
            Ok(theirs) => {
                let agree = match c.chosen.as_deref() {
                    Some(node) => {
                        theirs.score_of(node).is_some()
                            && theirs.score_of(node) == theirs.best_score()
                    }
                    None => theirs.feasible.is_empty(),
                };
                let pod = format!("{}/{}", c.key.0, c.key.1);
                report.record(&pod, c.chosen.as_deref(), theirs.pick(), agree);
            }
            Err(e) => {
                report.errors += 1;
                report.last_error = e.to_string();
            }
        }
    }
}
