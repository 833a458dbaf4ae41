//! Kubernetes' `rolling.go`: scale the new ReplicaSet up and old ones down within maxSurge/maxUnavailable.

use wasmkube_sdk::Error;
use wasmkube_sdk::k8s_openapi::api::apps::v1::ReplicaSet;

use crate::replicasets::{self, available, by_creation, replicas};
use crate::rollout::Rollout;

impl Rollout<'_, '_> {
    /// Kubernetes' `rolloutRolling`: creates the new ReplicaSet if needed, then one step up or
    /// down, and cleans up history once the rollout is complete.
    pub fn rollout_rolling(
        &mut self,
        new_rs: Option<ReplicaSet>,
        mut old_rss: Vec<ReplicaSet>,
    ) -> Result<(), Error> {
        let mut new_rs = match new_rs {
            Some(rs) => rs,
            None => self.create_new_rs(&old_rss)?,
        };
        let scaled_up = self.reconcile_new_rs(&mut new_rs, &old_rss)?;
        if !scaled_up {
            let scaled_down = self.reconcile_old_rss(&new_rs, &mut old_rss)?;
            if !scaled_down && self.complete(&self.status()) {
                self.cleanup(&old_rss)?;
            }
        }
        self.sync_rollout_status(Some(&new_rs), &old_rss)
    }

    /// Kubernetes' `reconcileNewReplicaSet`: grows the new ReplicaSet as far as maxSurge allows
    /// (or shrinks it to `spec.replicas`). Returns whether it scaled.
    fn reconcile_new_rs(
        &mut self,
        new_rs: &mut ReplicaSet,
        old_rss: &[ReplicaSet],
    ) -> Result<bool, Error> {
        let want = if replicas(new_rs) > self.replicas() {
            self.replicas()
        } else {
            self.new_rs_new_replicas(old_rss, new_rs)
        };
        let (scaled, rs) = self.scale_rs_and_record(new_rs.clone(), want)?;
        *new_rs = rs;
        Ok(scaled)
    }

    /// Kubernetes' `reconcileOldReplicaSets`: shrinks old ReplicaSets while at least
    /// `replicas - maxUnavailable` pods stay available, unhealthy ones first. Returns whether
    /// it scaled.
    fn reconcile_old_rss(
        &mut self,
        new_rs: &ReplicaSet,
        old_rss: &mut [ReplicaSet],
    ) -> Result<bool, Error> {
        let old_count = replicasets::sum(old_rss.iter(), replicas);
        if old_count == 0 {
            return Ok(false);
        }
        let all_count = old_count + replicas(new_rs);
        let min_available = self.replicas() - self.strategy().max_unavailable;
        let new_unavailable = replicas(new_rs) - available(new_rs);
        let max_scaled_down = all_count - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        old_rss.sort_by(by_creation);
        let cleaned = self.cleanup_unhealthy(old_rss, max_scaled_down)?;
        let scaled = self.scale_down_old(new_rs, old_rss)?;
        Ok(cleaned + scaled > 0)
    }

    /// Kubernetes' `cleanupUnhealthyReplicas`: removes old replicas that are not available,
    /// oldest ReplicaSets first, at most `max` of them. Returns how many.
    fn cleanup_unhealthy(&mut self, old_rss: &mut [ReplicaSet], max: i32) -> Result<i32, Error> {
        let mut total = 0;
        for rs in old_rss.iter_mut() {
            if total >= max {
                break;
            }
            let unhealthy = replicas(rs) - available(rs);
            if replicas(rs) == 0 || unhealthy <= 0 {
                continue;
            }
            let count = (max - total).min(unhealthy);
            let size = replicas(rs) - count;
            *rs = self.scale_rs_and_record(rs.clone(), size)?.1;
            total += count;
        }
        Ok(total)
    }

    /// Kubernetes' `scaleDownOldReplicaSetsForRollingUpdate`: removes available old replicas
    /// beyond `replicas - maxUnavailable`, oldest ReplicaSets first. Returns how many.
    fn scale_down_old(
        &mut self,
        new_rs: &ReplicaSet,
        old_rss: &mut [ReplicaSet],
    ) -> Result<i32, Error> {
        let min_available = self.replicas() - self.strategy().max_unavailable;
        let available_count = replicasets::sum(old_rss.iter().chain([new_rs]), available);
        if available_count <= min_available {
            return Ok(0);
        }
        let wanted = available_count - min_available;
        let mut total = 0;
        for rs in old_rss.iter_mut() {
            if total >= wanted {
                break;
            }
            if replicas(rs) == 0 {
                continue;
            }
            let count = replicas(rs).min(wanted - total);
            let size = replicas(rs) - count;
            *rs = self.scale_rs_and_record(rs.clone(), size)?.1;
            total += count;
        }
        Ok(total)
    }
}
