//! Ordinal pods and their claims: `<set>-<ordinal>` with hostname, subdomain and PVCs.

use std::collections::BTreeMap;

use wasmkube_sdk::k8s_openapi::api::apps::v1::StatefulSet;
use wasmkube_sdk::k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use wasmkube_sdk::owner::controller_ref;
use wasmkube_sdk::pod::{is_pod_ready, phase};
use wasmkube_sdk::revision::REVISION_HASH_LABEL;
use wasmkube_sdk::{Context, Error};

/// The ordinal of a pod of the set named `set` (`<set>-<ordinal>`).
pub fn ordinal(set: &str, pod: &Pod) -> Option<usize> {
    let name = pod.metadata.name.as_deref()?;
    let suffix = name.strip_prefix(set)?.strip_prefix('-')?;
    if suffix.starts_with('0') && suffix.len() > 1 {
        return None;
    }
    suffix.parse().ok()
}

/// The revision a pod was made from.
pub fn revision(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(REVISION_HASH_LABEL)
        .map(String::as_str)
}

/// Running and Ready, which is what OrderedReady waits for.
pub fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && is_pod_ready(pod)
}

/// The claim names of the set's volumeClaimTemplates for an ordinal: `<template>-<set>-<ordinal>`.
fn claim_name(template: &str, set: &str, ordinal: usize) -> String {
    format!("{template}-{set}-{ordinal}")
}

/// Creates the ordinal's missing PVCs. They carry no owner reference, so they outlive the pod
/// and scale-down (Kubernetes' default `Retain` policy).
pub fn ensure_claims(ctx: &Context<'_>, set: &StatefulSet, ordinal: usize) -> Result<(), Error> {
    let namespace = set.metadata.namespace.clone().unwrap_or_default();
    let name = set.metadata.name.as_deref().unwrap_or_default();
    let spec = set.spec.clone().unwrap_or_default();
    for template in spec.volume_claim_templates.unwrap_or_default() {
        let template_name = template.metadata.name.clone().unwrap_or_default();
        let claim = claim_name(&template_name, name, ordinal);
        if ctx
            .get::<PersistentVolumeClaim>(&namespace, &claim)?
            .is_some()
        {
            continue;
        }
        let mut labels = template.metadata.labels.clone().unwrap_or_default();
        labels.extend(spec.selector.match_labels.clone().unwrap_or_default());
        let pvc = PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(claim),
                namespace: Some(namespace.clone()),
                labels: Some(labels),
                annotations: template.metadata.annotations.clone(),
                ..ObjectMeta::default()
            },
            spec: template.spec.clone(),
            status: None,
        };
        match ctx.create(&pvc) {
            Err(e) if !e.is_already_exists() => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// The pod for `ordinal` from `template` (of revision `revision`): name `<set>-<ordinal>`,
/// hostname and subdomain (`serviceName`), the claims as volumes, a controller reference.
pub fn pod_for_ordinal(
    set: &StatefulSet,
    template: &PodTemplateSpec,
    revision: &str,
    ordinal: usize,
) -> Result<Pod, Error> {
    let name = set.metadata.name.as_deref().unwrap_or_default();
    let pod_name = format!("{name}-{ordinal}");
    let spec = set.spec.clone().unwrap_or_default();
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels: BTreeMap<String, String> = meta.labels.unwrap_or_default();
    labels.insert(REVISION_HASH_LABEL.to_string(), revision.to_string());
    labels.insert(
        "statefulset.kubernetes.io/pod-name".to_string(),
        pod_name.clone(),
    );
    labels.insert(
        "apps.kubernetes.io/pod-index".to_string(),
        ordinal.to_string(),
    );
    let mut pod_spec = template.spec.clone().unwrap_or_default();
    pod_spec.hostname = Some(pod_name.clone());
    pod_spec.subdomain = Some(spec.service_name.clone()).filter(|s| !s.is_empty());
    let mut volumes = pod_spec.volumes.take().unwrap_or_default();
    for claim in spec.volume_claim_templates.unwrap_or_default() {
        let volume = claim.metadata.name.clone().unwrap_or_default();
        volumes.retain(|v| v.name != volume);
        volumes.push(Volume {
            name: volume.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(&volume, name, ordinal),
                read_only: None,
            }),
            ..Volume::default()
        });
    }
    pod_spec.volumes = Some(volumes).filter(|v| !v.is_empty());
    Ok(Pod {
        metadata: ObjectMeta {
            name: Some(pod_name),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref(set)?]),
            ..ObjectMeta::default()
        },
        spec: Some(pod_spec),
        status: None,
    })
}
