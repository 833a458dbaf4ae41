//! Kubernetes' `sync.go`: the new and old ReplicaSets, revisions, scaling, and history cleanup.

use wasmkube_sdk::hash::pod_template_hash;
use wasmkube_sdk::k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use wasmkube_sdk::owner::{controller_of, controller_ref};
use wasmkube_sdk::{Error, EventType, Propagation};

use crate::annotations;
use crate::progress::{FAILED_RS_CREATE, FOUND_NEW_RS, NEW_RS_CREATED, PROGRESSING};
use crate::replicasets::{
    self, by_creation, by_revision, by_size_newer, by_size_older, equal_ignore_hash, name,
    replicas, selector_with_hash, template_with_hash,
};
use crate::rollout::Rollout;

impl Rollout<'_, '_> {
    /// Kubernetes' `getAllReplicaSetsAndSyncRevision` without creating: the ReplicaSet whose
    /// template is the Deployment's (its revision raised above the old ones') and the others.
    pub fn new_and_old(
        &mut self,
        mut rs_list: Vec<ReplicaSet>,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), Error> {
        rs_list.sort_by(by_creation);
        let found = rs_list.iter().position(|rs| {
            replicasets::template(rs).is_some_and(|t| equal_ignore_hash(t, &self.spec.template))
        });
        let new_rs = found.map(|i| rs_list.remove(i));
        let new_rs = match new_rs {
            Some(rs) => Some(self.sync_existing_new(rs, &rs_list)?),
            None => None,
        };
        Ok((new_rs, rs_list))
    }

    /// The existing new ReplicaSet gets the newest revision and the Deployment's annotations
    /// and minReadySeconds; the Deployment takes its revision.
    fn sync_existing_new(
        &mut self,
        mut rs: ReplicaSet,
        old_rss: &[ReplicaSet],
    ) -> Result<ReplicaSet, Error> {
        let new_revision = annotations::max_revision(old_rss) + 1;
        let changed = annotations::set_new_rs_annotations(
            &self.d.metadata,
            &mut rs.metadata,
            new_revision,
            None,
        );
        let spec = rs.spec.get_or_insert_with(ReplicaSetSpec::default);
        let min_ready_changed = spec.min_ready_seconds != self.spec.min_ready_seconds;
        if changed || min_ready_changed {
            spec.min_ready_seconds = self.spec.min_ready_seconds;
            rs = self.ctx.update(&rs)?;
        }
        self.set_revision(annotations::revision(&rs.metadata))?;
        let has_progressing = self
            .status_mut()
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == PROGRESSING);
        if self.has_progress_deadline() && !has_progressing {
            let message = format!("Found new replica set {:?}", name(&rs));
            self.set_progressing("True", FOUND_NEW_RS, message);
        }
        Ok(rs)
    }

    /// Kubernetes' `getNewReplicaSet` when none exists: creates `<deployment>-<hash>` with the
    /// `pod-template-hash` label, scaled as the strategy allows. A name taken by another
    /// template bumps `status.collisionCount` and fails, so that the retry hashes differently.
    pub fn create_new_rs(&mut self, old_rss: &[ReplicaSet]) -> Result<ReplicaSet, Error> {
        let collision_count = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = pod_template_hash(&self.spec.template, collision_count)?;
        let template = template_with_hash(&self.spec.template, &hash);
        let labels = template.metadata.as_ref().and_then(|m| m.labels.clone());
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("{}-{hash}", self.name())),
                namespace: Some(self.namespace().to_string()),
                owner_references: Some(vec![controller_ref(&self.d)?]),
                labels,
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: self.spec.min_ready_seconds,
                selector: selector_with_hash(&self.spec.selector, &hash),
                template: Some(template),
            }),
            status: None,
        };
        let new_replicas = self.new_rs_new_replicas(old_rss, &rs);
        if let Some(spec) = rs.spec.as_mut() {
            spec.replicas = Some(new_replicas);
        }
        let new_revision = annotations::max_revision(old_rss) + 1;
        let sizes = Some((self.replicas(), self.replicas() + self.strategy().max_surge));
        annotations::set_new_rs_annotations(
            &self.d.metadata,
            &mut rs.metadata,
            new_revision,
            sizes,
        );
        let created = match self.ctx.create(&rs) {
            Ok(created) => created,
            Err(e) if e.is_already_exists() => return self.existing_or_collision(name(&rs), e),
            Err(e) => {
                let message = format!("Failed to create new replica set {:?}: {e}", name(&rs));
                if self.has_progress_deadline() {
                    self.set_progressing("False", FAILED_RS_CREATE, message.clone());
                    let status = self.status();
                    self.write_status(status)?;
                }
                self.event(EventType::Warning, FAILED_RS_CREATE, &message)?;
                return Err(e);
            }
        };
        if new_replicas > 0 {
            let message = format!(
                "Scaled up replica set {} to {new_replicas} from 0",
                name(&created)
            );
            self.event(EventType::Normal, "ScalingReplicaSet", &message)?;
        }
        self.set_revision(new_revision)?;
        if self.has_progress_deadline() {
            let message = format!("Created new replica set {:?}", name(&created));
            self.set_progressing("True", NEW_RS_CREATED, message);
        }
        Ok(created)
    }

    /// After AlreadyExists: our own ReplicaSet for this template (created by an earlier sync
    /// the cache did not show yet), or a hash collision.
    fn existing_or_collision(&mut self, rs_name: &str, e: Error) -> Result<ReplicaSet, Error> {
        let Some(existing) = self.ctx.get::<ReplicaSet>(self.namespace(), rs_name)? else {
            return Err(e);
        };
        let ours =
            controller_of(&existing.metadata).map(|r| &r.uid) == self.d.metadata.uid.as_ref();
        let same = replicasets::template(&existing)
            .is_some_and(|t| equal_ignore_hash(t, &self.spec.template));
        if ours && same {
            return Ok(existing);
        }
        let status = self.status_mut();
        status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
        let status = self.status();
        self.write_status(status)?;
        Err(e)
    }

    /// Kubernetes' `NewRSNewReplicas`: how far the new ReplicaSet may grow now.
    pub fn new_rs_new_replicas(&self, all_but_new: &[ReplicaSet], new_rs: &ReplicaSet) -> i32 {
        if !self.strategy().rolling {
            return self.replicas();
        }
        let current = replicasets::sum(all_but_new.iter().chain([new_rs]), replicas);
        let max_total = self.replicas() + self.strategy().max_surge;
        if current >= max_total {
            return replicas(new_rs);
        }
        let up = (max_total - current).min(self.replicas() - replicas(new_rs));
        replicas(new_rs) + up
    }

    /// Kubernetes' `sync`: only scaling, for paused Deployments and scaling events.
    pub fn sync(
        &mut self,
        new_rs: Option<ReplicaSet>,
        old_rss: Vec<ReplicaSet>,
    ) -> Result<(), Error> {
        let (new_rs, old_rss) = self.scale(new_rs, old_rss)?;
        if self.paused() {
            self.cleanup(&old_rss)?;
        }
        self.sync_deployment_status(new_rs.as_ref(), &old_rss)
    }

    /// Kubernetes' `isScalingEvent`: an active ReplicaSet was sized for other `spec.replicas`.
    pub fn is_scaling_event(&self, new_rs: Option<&ReplicaSet>, old_rss: &[ReplicaSet]) -> bool {
        old_rss
            .iter()
            .chain(new_rs)
            .filter(|rs| replicas(rs) > 0)
            .any(|rs| {
                annotations::int(&rs.metadata, annotations::DESIRED_REPLICAS)
                    .is_some_and(|desired| desired != self.replicas())
            })
    }

    /// Kubernetes' `scale`: the only active (or the newest) ReplicaSet takes all replicas; with
    /// a saturated new one, old ones go to zero; otherwise all active ones grow or shrink in
    /// proportion. Returns the ReplicaSets as written.
    fn scale(
        &mut self,
        new_rs: Option<ReplicaSet>,
        mut old_rss: Vec<ReplicaSet>,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), Error> {
        old_rss.sort_by(|a, b| by_creation(b, a));
        let mut all: Vec<ReplicaSet> = old_rss.into_iter().chain(new_rs.clone()).collect();
        let new_index = new_rs.as_ref().map(|_| all.len() - 1);
        let active: Vec<usize> = (0..all.len()).filter(|&i| replicas(&all[i]) > 0).collect();
        let target = match active.as_slice() {
            [] if !all.is_empty() => Some(new_index.unwrap_or(0)),
            [only] => Some(*only),
            _ => None,
        };
        if let Some(i) = target {
            let (_, rs) = self.scale_rs_and_record(all[i].clone(), self.replicas())?;
            all[i] = rs;
        } else if new_index.is_some_and(|i| self.is_saturated(&all[i])) {
            for i in active.into_iter().filter(|&i| Some(i) != new_index) {
                let (_, rs) = self.scale_rs_and_record(all[i].clone(), 0)?;
                all[i] = rs;
            }
        } else if self.strategy().rolling {
            self.scale_proportionally(&mut all, active)?;
        }
        let new_rs = new_index.map(|i| all.remove(i));
        Ok((new_rs, all))
    }

    /// The proportional part of Kubernetes' `scale`, over the active ReplicaSets of `all`.
    fn scale_proportionally(
        &mut self,
        all: &mut [ReplicaSet],
        mut active: Vec<usize>,
    ) -> Result<(), Error> {
        let current = active.iter().map(|&i| replicas(&all[i])).sum::<i32>();
        let allowed = if self.replicas() > 0 {
            self.replicas() + self.strategy().max_surge
        } else {
            0
        };
        let to_add = allowed - current;
        let operation = if to_add > 0 {
            active.sort_by(|&a, &b| by_size_newer(&all[a], &all[b]));
            "up"
        } else {
            active.sort_by(|&a, &b| by_size_older(&all[a], &all[b]));
            "down"
        };
        let mut added = 0;
        let mut sizes = Vec::with_capacity(active.len());
        for &i in &active {
            let proportion = self.proportion(&all[i], to_add, added);
            sizes.push(replicas(&all[i]) + proportion);
            added += proportion;
        }
        if let Some(first) = sizes.first_mut()
            && to_add != 0
        {
            *first = (*first + to_add - added).max(0);
        }
        for (&i, size) in active.iter().zip(sizes) {
            all[i] = self.scale_rs(all[i].clone(), size, operation)?.1;
        }
        Ok(())
    }

    /// Kubernetes' `GetProportion`: `rs`'s share of `to_add`, bounded by what is left.
    fn proportion(&self, rs: &ReplicaSet, to_add: i32, added: i32) -> i32 {
        if replicas(rs) == 0 || to_add == 0 || to_add == added {
            return 0;
        }
        let fraction = self.fraction(rs);
        let allowed = to_add - added;
        if to_add > 0 {
            fraction.min(allowed)
        } else {
            fraction.max(allowed)
        }
    }

    /// Kubernetes' `getReplicaSetFraction`: how much `rs` grows or shrinks when the Deployment
    /// goes from its max-replicas annotation to the new `replicas + maxSurge`.
    fn fraction(&self, rs: &ReplicaSet) -> i32 {
        if self.replicas() == 0 {
            return -replicas(rs);
        }
        let deployment_replicas = f64::from(self.replicas() + self.strategy().max_surge);
        let annotated = annotations::int(&rs.metadata, annotations::MAX_REPLICAS)
            .unwrap_or_else(|| self.status().replicas.unwrap_or(0));
        if annotated <= 0 {
            return 0;
        }
        let size = f64::from(replicas(rs)) * deployment_replicas / f64::from(annotated);
        // Rounded and within i32: the size is at most replicas * (replicas + surge).
        #[allow(clippy::cast_possible_truncation)]
        let size = size.round() as i32;
        size - replicas(rs)
    }

    /// Kubernetes' `IsSaturated`: the new ReplicaSet has all replicas, all available.
    fn is_saturated(&self, rs: &ReplicaSet) -> bool {
        let desired = annotations::int(&rs.metadata, annotations::DESIRED_REPLICAS);
        desired == Some(self.replicas())
            && replicas(rs) == self.replicas()
            && replicasets::available(rs) == self.replicas()
    }

    /// Kubernetes' `scaleReplicaSetAndRecordEvent`: scales `rs` to `size` unless it is there.
    pub fn scale_rs_and_record(
        &mut self,
        rs: ReplicaSet,
        size: i32,
    ) -> Result<(bool, ReplicaSet), Error> {
        if replicas(&rs) == size {
            return Ok((false, rs));
        }
        let operation = if replicas(&rs) < size { "up" } else { "down" };
        self.scale_rs(rs, size, operation)
    }

    /// Kubernetes' `scaleReplicaSet`: writes the size and the replicas annotations, with a
    /// ScalingReplicaSet Event when the size changed. Returns whether it did, and the result.
    fn scale_rs(
        &mut self,
        mut rs: ReplicaSet,
        size: i32,
        operation: &str,
    ) -> Result<(bool, ReplicaSet), Error> {
        let old = replicas(&rs);
        let (desired, max) = (self.replicas(), self.replicas() + self.strategy().max_surge);
        if old == size && !annotations::replicas_need_update(&rs.metadata, desired, max) {
            return Ok((false, rs));
        }
        rs.spec.get_or_insert_with(ReplicaSetSpec::default).replicas = Some(size);
        annotations::set_replicas(&mut rs.metadata, desired, max);
        let rs = self.ctx.update(&rs)?;
        if old != size {
            let message = format!(
                "Scaled {operation} replica set {} to {size} from {old}",
                name(&rs)
            );
            self.event(EventType::Normal, "ScalingReplicaSet", &message)?;
        }
        Ok((old != size, rs))
    }

    /// Kubernetes' `cleanupDeployment`: deletes the oldest revisions beyond
    /// `revisionHistoryLimit`, only those scaled to and at zero.
    pub fn cleanup(&mut self, old_rss: &[ReplicaSet]) -> Result<(), Error> {
        let Some(limit) = self.spec.revision_history_limit else {
            return Ok(());
        };
        let mut cleanable: Vec<&ReplicaSet> = old_rss
            .iter()
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        let excess =
            usize::try_from(i64::try_from(cleanable.len()).unwrap_or(i64::MAX) - i64::from(limit))
                .unwrap_or(0);
        cleanable.sort_by(|a, b| by_revision(a, b));
        for rs in cleanable.into_iter().take(excess) {
            let observed = rs.status.as_ref().and_then(|s| s.observed_generation);
            if replicasets::actual(rs) != 0
                || replicas(rs) != 0
                || rs.metadata.generation > observed
            {
                continue;
            }
            match self
                .ctx
                .delete::<ReplicaSet>(self.namespace(), name(rs), Propagation::Background)
            {
                Err(e) if !e.is_not_found() => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}
