//! A Job's pods: building them from the template, choosing which to delete, failure backoff.

use std::cmp::Reverse;

use wasmkube_sdk::chrono::{DateTime, TimeDelta, Utc};
use wasmkube_sdk::k8s_openapi::api::batch::v1::Job;
use wasmkube_sdk::k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, ObjectFieldSelector, Pod,
};
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use wasmkube_sdk::owner::controller_ref;
use wasmkube_sdk::pod::{is_pod_ready, is_scheduled, phase};
use wasmkube_sdk::{Error, conditions};

use crate::indexes::INDEX_KEY;

/// The first delay after a pod failure, as Kubernetes' `DefaultJobPodFailureBackOff`.
const FAILURE_BACKOFF: TimeDelta = TimeDelta::seconds(10);
/// The longest delay, as Kubernetes' `MaxJobPodFailureBackOff`.
const MAX_FAILURE_BACKOFF: TimeDelta = TimeDelta::minutes(10);
/// Generated names get a 5-character suffix within 63 characters.
const MAX_GENERATED_NAME: usize = 58;

/// A pod from the Job's template: `generateName: <job>-` (`<job>-<index>-` when Indexed), a
/// controller reference, and for an index its annotation, label, hostname and
/// `JOB_COMPLETION_INDEX` variable, as Kubernetes' Job controller builds them.
pub fn from_template(job: &Job, index: Option<i32>) -> Result<Pod, Error> {
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut meta = template.metadata.unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    let name = job.metadata.name.as_deref().unwrap_or_default();
    let generate_name = match index {
        Some(index) => {
            let suffix = format!("-{index}-");
            let room = MAX_GENERATED_NAME.saturating_sub(suffix.len());
            let base: String = name.chars().take(room).collect();
            meta.annotations
                .get_or_insert_default()
                .insert(INDEX_KEY.into(), index.to_string());
            meta.labels
                .get_or_insert_default()
                .insert(INDEX_KEY.into(), index.to_string());
            spec.hostname = Some(format!("{name}-{index}"));
            for container in spec
                .containers
                .iter_mut()
                .chain(spec.init_containers.iter_mut().flatten())
            {
                add_index_env(container);
            }
            format!("{base}{suffix}")
        }
        None if name.len() < 253 => format!("{name}-"),
        None => name.to_string(),
    };
    Ok(Pod {
        metadata: ObjectMeta {
            namespace: job.metadata.namespace.clone(),
            generate_name: Some(generate_name),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref(job)?]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    })
}

fn add_index_env(container: &mut Container) {
    let env = container.env.get_or_insert_default();
    if env.iter().any(|e| e.name == "JOB_COMPLETION_INDEX") {
        return;
    }
    env.push(EnvVar {
        name: "JOB_COMPLETION_INDEX".into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: format!("metadata.annotations['{INDEX_KEY}']"),
            }),
            ..EnvVarSource::default()
        }),
    });
}

/// The `count` active pods to delete first, as Kubernetes' `ActivePods` ranking: unscheduled,
/// then pending, then not ready, then most restarted, then newest.
pub fn to_delete(pods: Vec<Pod>, count: usize) -> Vec<Pod> {
    let mut pods = pods;
    pods.sort_by_key(|pod| {
        let phase_rank = match phase(pod) {
            "Pending" => 0,
            "Running" => 2,
            _ => 1,
        };
        (
            is_scheduled(pod),
            phase_rank,
            is_pod_ready(pod),
            Reverse(restarts(pod)),
            Reverse(pod.metadata.creation_timestamp.clone()),
        )
    });
    pods.truncate(count);
    pods
}

/// Container restarts of a pod, init containers included.
pub fn restarts(pod: &Pod) -> i32 {
    let Some(status) = &pod.status else {
        return 0;
    };
    status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .map(|c| c.restart_count)
        .sum()
}

/// When a finished pod finished, as Kubernetes' `getFinishedTime`: its Ready=False transition,
/// else its containers' last termination, else its deletion, else its creation.
fn finished_at(pod: &Pod) -> Option<DateTime<Utc>> {
    let status = pod.status.as_ref();
    let not_ready = status
        .and_then(|s| s.conditions.as_deref())
        .and_then(|c| conditions::get_condition(c, "Ready"))
        .filter(|c| c.status == "False")
        .and_then(|c| c.last_transition_time.as_ref());
    let terminated = status
        .into_iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    not_ready
        .map(|t| t.0)
        .or(terminated)
        .or(pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
        .or(pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Until when new pods wait after failures, as Kubernetes' pod failure backoff: 10 s after the
/// last failure, doubling with each failure since the last success, at most 10 minutes.
pub fn backoff_until(succeeded: &[&Pod], failed: &[&Pod]) -> Option<DateTime<Utc>> {
    let last_success = succeeded.iter().filter_map(|p| finished_at(p)).max();
    let failures: Vec<DateTime<Utc>> = failed
        .iter()
        .filter_map(|p| finished_at(p))
        .filter(|t| last_success.is_none_or(|s| *t > s))
        .collect();
    let last_failure = failures.iter().max()?;
    let mut delay = FAILURE_BACKOFF;
    for _ in 1..failures.len() {
        delay = (delay * 2).min(MAX_FAILURE_BACKOFF);
        if delay == MAX_FAILURE_BACKOFF {
            break;
        }
    }
    Some(*last_failure + delay)
}
