//! Example custom controller: every `StaticSite` (`wasmkube.dev/v1`, see
//! `manifests/demo/staticsite-crd.yaml`) is served by a ConfigMap `<name>-content`, a busybox
//! httpd Deployment `<name>` and a Service `<name>`, all controlled by the site (so deleting it
//! garbage-collects them). The status reports `observedGeneration`, `url`, `availableReplicas`
//! and a `Ready` condition.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use wasmkube_sdk::conditions::set_condition;
use wasmkube_sdk::hash::fnv32a;
use wasmkube_sdk::k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use wasmkube_sdk::k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, PodSpec, PodTemplateSpec, Service,
    ServicePort, ServiceSpec, Volume, VolumeMount,
};
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    Condition, LabelSelector, ObjectMeta, OwnerReference, Time,
};
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use wasmkube_sdk::k8s_openapi::{Metadata, Resource};
use wasmkube_sdk::owner::controller_of;
use wasmkube_sdk::serde_json::{self, Value, json};
use wasmkube_sdk::{Context, Controller, Error, EventType, Gvr, ObjectKey, Outcome, Registration};

/// The controller's version, written into the Deployment's `wasmkube.dev/controller-version`
/// label; bump it when the generated objects change.
pub const VERSION: &str = "1";
/// The label carrying [`VERSION`].
pub const VERSION_LABEL: &str = "wasmkube.dev/controller-version";
/// The pod template annotation holding a hash of the content: a change rolls the pods.
pub const CONTENT_HASH: &str = "wasmkube.dev/content-hash";
/// A hash of what this controller wants an object to be; it updates only when it differs.
const SPEC_HASH: &str = "wasmkube.dev/spec-hash";

/// The StaticSite resource.
pub fn staticsites() -> Gvr {
    Gvr::new("wasmkube.dev", "v1", "staticsites")
}

/// The StaticSite controller.
pub struct StaticSiteController;

wasmkube_sdk::export_controller!(StaticSiteController);

impl Controller for StaticSiteController {
    fn registration() -> Registration {
        Registration::for_resource("staticsite-controller", staticsites())
            .owns::<ConfigMap>()
            .owns::<Deployment>()
            .owns::<Service>()
    }

    fn reconcile(ctx: &Context<'_>, key: ObjectKey) -> Result<Outcome, Error> {
        let Some(site) = ctx.get_dynamic(&staticsites(), &key.namespace, &key.name)? else {
            return Ok(Outcome::Done); // deleted: the garbage collector removes the children
        };
        if !site["metadata"]["deletionTimestamp"].is_null() {
            return Ok(Outcome::Done);
        }
        let owner = OwnerReference {
            api_version: staticsites().api_version(),
            kind: "StaticSite".into(),
            name: key.name.clone(),
            uid: site["metadata"]["uid"].as_str().unwrap_or_default().into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        let content = site["spec"]["content"].as_str().unwrap_or_default();
        let replicas = site["spec"]["replicas"].as_i64().unwrap_or(1);
        let replicas = i32::try_from(replicas).unwrap_or(i32::MAX);
        let meta = |name: &str| ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(key.namespace.clone()),
            labels: Some(labels(&key.name)),
            owner_references: Some(vec![owner.clone()]),
            ..ObjectMeta::default()
        };
        let content_name = format!("{}-content", key.name);
        let config_map = ConfigMap {
            metadata: meta(&content_name),
            data: Some(BTreeMap::from([("index.html".into(), content.into())])),
            ..ConfigMap::default()
        };
        let mut deployment = Deployment {
            metadata: meta(&key.name),
            spec: Some(deployment_spec(&key.name, &content_name, content, replicas)),
            ..Deployment::default()
        };
        deployment
            .metadata
            .labels
            .get_or_insert_default()
            .insert(VERSION_LABEL.into(), VERSION.into());
        let service = Service {
            metadata: meta(&key.name),
            spec: Some(ServiceSpec {
                selector: Some(labels(&key.name)),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    target_port: Some(IntOrString::Int(8080)),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        };

        let cm = ensure(ctx, &site, &owner, config_map, |cm, want| {
            cm.data = want.data
        })?;
        let running = ensure(ctx, &site, &owner, deployment, |d, want| d.spec = want.spec)?;
        let svc = ensure(ctx, &site, &owner, service, |svc, want| {
            let (spec, want) = (
                svc.spec.get_or_insert_default(),
                want.spec.unwrap_or_default(),
            );
            (spec.selector, spec.ports) = (want.selector, want.ports); // keeps the clusterIP
        })?;
        let conflicts: Vec<String> = [cm.err(), running.as_ref().err().cloned(), svc.err()]
            .into_iter()
            .flatten()
            .collect();

        let available = running
            .as_ref()
            .ok()
            .and_then(|d| d.status.as_ref())
            .and_then(|s| s.available_replicas)
            .unwrap_or(0);
        let (status, reason, message) = if let Some(conflict) = conflicts.first() {
            ("False", "Conflict", conflict.clone())
        } else if available >= replicas {
            (
                "True",
                "Available",
                format!("{available}/{replicas} replicas available"),
            )
        } else {
            (
                "False",
                "Progressing",
                format!("{available}/{replicas} replicas available"),
            )
        };
        update_status(ctx, site, available, status, reason, message)?;
        Ok(Outcome::Done)
    }
}

fn labels(site: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("wasmkube.dev/staticsite".into(), site.to_string())])
}

fn deployment_spec(site: &str, config_map: &str, content: &str, replicas: i32) -> DeploymentSpec {
    let hash = format!("{:08x}", fnv32a(content.as_bytes()));
    DeploymentSpec {
        replicas: Some(replicas),
        selector: LabelSelector {
            match_labels: Some(labels(site)),
            ..LabelSelector::default()
        },
        template: PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels(site)),
                annotations: Some(BTreeMap::from([(CONTENT_HASH.into(), hash)])),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "httpd".into(),
                    image: Some("busybox:latest".into()),
                    image_pull_policy: Some("IfNotPresent".into()),
                    command: Some(
                        ["httpd", "-f", "-p", "8080", "-h", "/www"]
                            .map(Into::into)
                            .to_vec(),
                    ),
                    ports: Some(vec![ContainerPort {
                        name: Some("http".into()),
                        container_port: 8080,
                        ..ContainerPort::default()
                    }]),
                    volume_mounts: Some(vec![VolumeMount {
                        name: "content".into(),
                        mount_path: "/www".into(),
                        read_only: Some(true),
                        ..VolumeMount::default()
                    }]),
                    ..Container::default()
                }],
                volumes: Some(vec![Volume {
                    name: "content".into(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: config_map.to_string(),
                        ..ConfigMapVolumeSource::default()
                    }),
                    ..Volume::default()
                }]),
                ..PodSpec::default()
            }),
        },
        ..DeploymentSpec::default()
    }
}

/// Creates `want`, or updates the existing object with `apply` when the wanted state (hashed
/// into the `spec-hash` annotation) changed. Returns the object as stored, `None` with a message
/// (and a Warning Event) when an object of that name belongs to someone else.
fn ensure<K>(
    ctx: &Context<'_>,
    site: &Value,
    owner: &OwnerReference,
    mut want: K,
    apply: impl FnOnce(&mut K, K),
) -> Result<Result<K, String>, Error>
where
    K: Resource + Metadata<Ty = ObjectMeta> + serde::Serialize + serde::de::DeserializeOwned,
{
    let bytes = serde_json::to_vec(&want).map_err(|source| Error::Encode {
        what: K::KIND.to_string(),
        source,
    })?;
    let hash = format!("{:08x}", fnv32a(&bytes));
    let meta = want.metadata_mut();
    meta.annotations
        .get_or_insert_default()
        .insert(SPEC_HASH.into(), hash.clone());
    let (namespace, name) = (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    );
    match ctx.get::<K>(&namespace, &name)? {
        None => Ok(Ok(ctx.create(&want)?)),
        Some(existing)
            if controller_of(existing.metadata()).map(|r| &r.uid) != Some(&owner.uid) =>
        {
            let message = format!(
                "{} {name} exists and is not controlled by this StaticSite",
                K::KIND
            );
            ctx.event_dynamic(site, EventType::Warning, "Conflict", &message);
            Ok(Err(message))
        }
        Some(existing)
            if existing
                .metadata()
                .annotations
                .as_ref()
                .and_then(|a| a.get(SPEC_HASH))
                == Some(&hash) =>
        {
            Ok(Ok(existing))
        }
        Some(mut existing) => {
            let (labels, annotations) = (
                want.metadata().labels.clone(),
                want.metadata().annotations.clone(),
            );
            existing
                .metadata_mut()
                .labels
                .get_or_insert_default()
                .extend(labels.into_iter().flatten());
            existing
                .metadata_mut()
                .annotations
                .get_or_insert_default()
                .extend(annotations.into_iter().flatten());
            apply(&mut existing, want);
            ctx.event_dynamic(
                site,
                EventType::Normal,
                "Updated",
                &format!("Updated {} {name}", K::KIND),
            );
            Ok(Ok(ctx.update(&existing)?))
        }
    }
}

/// Writes the status when it changed.
fn update_status(
    ctx: &Context<'_>,
    mut site: Value,
    available: i32,
    status: &str,
    reason: &str,
    message: String,
) -> Result<(), Error> {
    let old = site["status"].clone();
    let mut conditions: Vec<Condition> =
        serde_json::from_value(old["conditions"].clone()).unwrap_or_default();
    let ready = Condition {
        type_: "Ready".into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: site["metadata"]["generation"].as_i64(),
        last_transition_time: Time(ctx.now()?),
    };
    set_condition(&mut conditions, ready, ctx.now()?);
    let (name, namespace) = (&site["metadata"]["name"], &site["metadata"]["namespace"]);
    let new = json!({
        "observedGeneration": site["metadata"]["generation"],
        "url": format!("http://{}.{}.svc", name.as_str().unwrap_or_default(), namespace.as_str().unwrap_or_default()),
        "availableReplicas": available,
        "conditions": conditions,
    });
    if new != old {
        site["status"] = new;
        ctx.update_status_dynamic(&staticsites(), &site)?;
    }
    Ok(())
}
