#![allow(clippy::unwrap_used)]

use wasmkube_sdk::k8s_openapi::api::apps::v1::DeploymentStatus;
use wasmkube_sdk::testing::FakeHost;

use super::*;

fn site(fake: &FakeHost, content: &str, replicas: Option<i64>) -> Value {
    let mut spec = json!({"content": content});
    if let Some(r) = replicas {
        spec["replicas"] = json!(r);
    }
    fake.insert_dynamic(
        &staticsites(),
        json!({
            "apiVersion": "wasmkube.dev/v1",
            "kind": "StaticSite",
            "metadata": {"name": "hello", "namespace": "default"},
            "spec": spec,
        }),
    )
    .unwrap()
}

fn key() -> ObjectKey {
    ObjectKey::new("default", "hello")
}

fn get<K: Resource + serde::de::DeserializeOwned>(fake: &FakeHost, name: &str) -> K {
    fake.context().get("default", name).unwrap().unwrap()
}

fn status(fake: &FakeHost) -> Value {
    let ctx = fake.context();
    ctx.get_dynamic(&staticsites(), "default", "hello")
        .unwrap()
        .unwrap()["status"]
        .clone()
}

fn edit_spec(fake: &FakeHost, change: impl FnOnce(&mut Value)) {
    fake.modify_dynamic(&staticsites(), "default", "hello", |site| {
        change(&mut site["spec"]);
        let generation = site["metadata"]["generation"].as_i64().unwrap_or(1);
        site["metadata"]["generation"] = json!(generation + 1);
    })
    .unwrap();
}

fn content_hash(d: &Deployment) -> String {
    let template = d.spec.as_ref().unwrap().template.metadata.as_ref().unwrap();
    template.annotations.as_ref().unwrap()[CONTENT_HASH].clone()
}

#[test]
fn creates_the_three_children_controlled_by_the_site() {
    let fake = FakeHost::new();
    let site = site(&fake, "<h1>hi</h1>", None);
    let uid = site["metadata"]["uid"].as_str().unwrap();
    assert_eq!(
        fake.reconcile::<StaticSiteController>(&key()).unwrap(),
        Outcome::Done
    );

    let cm: ConfigMap = get(&fake, "hello-content");
    assert_eq!(cm.data.as_ref().unwrap()["index.html"], "<h1>hi</h1>");
    let d: Deployment = get(&fake, "hello");
    let spec = d.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(d.metadata.labels.as_ref().unwrap()[VERSION_LABEL], VERSION);
    let pod = spec.template.spec.as_ref().unwrap();
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("busybox:latest"));
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(
        c.command.as_ref().unwrap().join(" "),
        "httpd -f -p 8080 -h /www"
    );
    let volume = pod.volumes.as_ref().unwrap()[0]
        .config_map
        .as_ref()
        .unwrap();
    assert_eq!(volume.name, "hello-content");
    let svc: Service = get(&fake, "hello");
    let port = &svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.port, port.target_port.clone()),
        (80, Some(IntOrString::Int(8080)))
    );

    for meta in [&cm.metadata, &d.metadata, &svc.metadata] {
        let r = controller_of(meta).unwrap();
        assert_eq!((r.kind.as_str(), r.uid.as_str()), ("StaticSite", uid));
        assert_eq!(r.api_version, "wasmkube.dev/v1");
    }
    let status = status(&fake);
    assert_eq!(status["url"], "http://hello.default.svc");
    assert_eq!(status["availableReplicas"], 0);
    assert_eq!(status["conditions"][0]["type"], "Ready");
    assert_eq!(status["conditions"][0]["status"], "False");

    // Nothing changed: a second reconcile writes nothing.
    fake.clear_records();
    fake.reconcile::<StaticSiteController>(&key()).unwrap();
    assert_eq!(fake.actions(), vec![]);
}

#[test]
fn a_content_change_updates_the_config_map_and_rolls_the_pods() {
    let fake = FakeHost::new();
    site(&fake, "v1", None);
    fake.reconcile::<StaticSiteController>(&key()).unwrap();
    let before = content_hash(&get(&fake, "hello"));

    edit_spec(&fake, |spec| spec["content"] = json!("v2"));
    fake.reconcile::<StaticSiteController>(&key()).unwrap();
    let cm: ConfigMap = get(&fake, "hello-content");
    assert_eq!(cm.data.unwrap()["index.html"], "v2");
    assert_ne!(content_hash(&get(&fake, "hello")), before);
    assert_eq!(status(&fake)["observedGeneration"], 2);
}

#[test]
fn a_replicas_change_scales_the_deployment() {
    let fake = FakeHost::new();
    site(&fake, "x", Some(2));
    fake.reconcile::<StaticSiteController>(&key()).unwrap();
    let d: Deployment = get(&fake, "hello");
    assert_eq!(d.spec.unwrap().replicas, Some(2));

    edit_spec(&fake, |spec| spec["replicas"] = json!(5));
    fake.reconcile::<StaticSiteController>(&key()).unwrap();
    let d: Deployment = get(&fake, "hello");
    assert_eq!(d.spec.unwrap().replicas, Some(5));
}

#[test]
fn status_follows_the_deployments_available_replicas() {
    let fake = FakeHost::new();
    site(&fake, "x", Some(2));
    fake.reconcile::<StaticSiteController>(&key()).unwrap();
    fake.modify::<Deployment>("default", "hello", |d| {
        d.status = Some(DeploymentStatus {
            available_replicas: Some(2),
            ..DeploymentStatus::default()
        });
    })
    .unwrap();
    fake.reconcile::<StaticSiteController>(&key()).unwrap();
    let status = status(&fake);
    assert_eq!(status["availableReplicas"], 2);
    assert_eq!(status["conditions"][0]["status"], "True");
    assert_eq!(status["conditions"][0]["reason"], "Available");
}

#[test]
fn an_object_owned_by_someone_else_is_left_alone_and_reported() {
    let fake = FakeHost::new();
    fake.insert(&Service {
        metadata: ObjectMeta {
            name: Some("hello".into()),
            namespace: Some("default".into()),
            ..ObjectMeta::default()
        },
        ..Service::default()
    })
    .unwrap();
    site(&fake, "x", None);
    fake.reconcile::<StaticSiteController>(&key()).unwrap();
    let svc: Service = get(&fake, "hello");
    assert!(svc.metadata.owner_references.is_none());
    assert_eq!(status(&fake)["conditions"][0]["reason"], "Conflict");
    assert!(fake.events().iter().any(|e| e.reason == "Conflict"));
}

#[test]
fn registration_names_the_custom_resource_and_its_children() {
    let r = StaticSiteController::registration();
    assert_eq!(r.primary, Gvr::new("wasmkube.dev", "v1", "staticsites"));
    assert_eq!(r.owns.len(), 3);
}
