//! Kubernetes' `recreate.go`: scale every old ReplicaSet to zero, wait for their pods, then the new one.

use std::time::Duration;

use wasmkube_sdk::Error;
use wasmkube_sdk::k8s_openapi::api::apps::v1::ReplicaSet;
use wasmkube_sdk::k8s_openapi::api::core::v1::Pod;
use wasmkube_sdk::owner::controller_of;
use wasmkube_sdk::pod::phase;

use crate::replicasets::{self, actual, replicas};
use crate::rollout::Rollout;

/// How often to look again while old pods are still running: pods are only read, so their
/// going away does not enqueue the Deployment.
const OLD_PODS_POLL: Duration = Duration::from_secs(1);

impl Rollout<'_, '_> {
    /// Kubernetes' `rolloutRecreate`.
    pub fn rollout_recreate(
        &mut self,
        new_rs: Option<ReplicaSet>,
        mut old_rss: Vec<ReplicaSet>,
        pods: &[Pod],
    ) -> Result<(), Error> {
        let mut scaled_down = false;
        for rs in old_rss.iter_mut().filter(|rs| replicas(rs) > 0) {
            let (scaled, written) = self.scale_rs_and_record(rs.clone(), 0)?;
            *rs = written;
            scaled_down |= scaled;
        }
        if scaled_down {
            return self.sync_rollout_status(new_rs.as_ref(), &old_rss);
        }
        if old_pods_running(new_rs.as_ref(), &old_rss, pods) {
            self.requeue_within(OLD_PODS_POLL);
            return self.sync_rollout_status(new_rs.as_ref(), &old_rss);
        }
        let new_rs = match new_rs {
            Some(rs) => rs,
            None => self.create_new_rs(&old_rss)?,
        };
        let (_, new_rs) = self.scale_rs_and_record(new_rs, self.replicas())?;
        if self.complete(&self.status()) {
            self.cleanup(&old_rss)?;
        }
        self.sync_rollout_status(Some(&new_rs), &old_rss)
    }
}

/// Kubernetes' `oldPodsRunning`: old ReplicaSets still count pods, or a pod of one of them has
/// not finished.
fn old_pods_running(new_rs: Option<&ReplicaSet>, old_rss: &[ReplicaSet], pods: &[Pod]) -> bool {
    if replicasets::sum(old_rss, actual) > 0 {
        return true;
    }
    let old_uids: Vec<&str> = old_rss
        .iter()
        .filter(|rs| rs.metadata.uid != new_rs.and_then(|n| n.metadata.uid.clone()))
        .filter_map(|rs| rs.metadata.uid.as_deref())
        .collect();
    pods.iter().any(|pod| {
        controller_of(&pod.metadata).is_some_and(|r| old_uids.contains(&r.uid.as_str()))
            && !matches!(phase(pod), "Succeeded" | "Failed")
    })
}
