//! Creating, scaling, Recreate, pausing, revisions, rollback and history cleanup.

use wasmkube_sdk::hash::POD_TEMPLATE_HASH_LABEL;
use wasmkube_sdk::k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use wasmkube_sdk::k8s_openapi::api::core::v1::{Pod, PodStatus};
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use wasmkube_sdk::owner::{controller_of, controller_ref};
use wasmkube_sdk::testing::Verb;
use wasmkube_sdk::{Controller, Gvr};

use super::*;
use crate::annotations::{DESIRED_REPLICAS, MAX_REPLICAS, REVISION_HISTORY};

#[test]
fn registration_names_deployments_replicasets_and_pods() {
    let r = DeploymentController::registration();
    assert_eq!(r.primary, Gvr::new("apps", "v1", "deployments"));
    assert_eq!(r.owns, vec![Gvr::new("apps", "v1", "replicasets")]);
    assert_eq!(r.reads, vec![Gvr::new("", "v1", "pods")]);
}

#[test]
fn creates_the_first_replica_set() {
    let fake = FakeHost::new();
    let d = fake.insert(&deployment(3)).unwrap();
    assert_eq!(
        reconcile(&fake),
        Outcome::RequeueAfter(std::time::Duration::from_secs(601))
    );

    let rss = replica_sets(&fake);
    assert_eq!(rss.len(), 1);
    let rs = &rss[0];
    let hash = rs.metadata.labels.as_ref().unwrap()[POD_TEMPLATE_HASH_LABEL].clone();
    assert_eq!(
        rs.metadata.name.as_deref(),
        Some(format!("web-{hash}").as_str())
    );
    let spec = rs.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(
        spec.selector.match_labels,
        labels(&[("app", "web"), (POD_TEMPLATE_HASH_LABEL, &hash)])
    );
    let template_labels = spec
        .template
        .as_ref()
        .unwrap()
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone();
    assert_eq!(template_labels, spec.selector.match_labels);
    assert_eq!(rs.metadata.labels, spec.selector.match_labels);
    assert_eq!(
        controller_of(&rs.metadata),
        Some(&controller_ref(&d).unwrap())
    );
    let annotations = rs.metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations[REVISION], "1");
    assert_eq!(annotations[DESIRED_REPLICAS], "3");
    assert_eq!(annotations[MAX_REPLICAS], "4");
    assert_eq!(
        scaling_events(&fake),
        [format!("Scaled up replica set web-{hash} to 3 from 0")]
    );

    let d = get_deployment(&fake);
    assert_eq!(d.metadata.annotations.as_ref().unwrap()[REVISION], "1");
    assert_eq!(
        reason(&fake, "Progressing").as_deref(),
        Some("NewReplicaSetCreated")
    );
    assert_eq!(
        reason(&fake, "Available").as_deref(),
        Some("MinimumReplicasUnavailable")
    );

    settle(&fake);
    assert_eq!(reconcile(&fake), Outcome::Done);
    let s = status(&fake);
    assert_eq!(
        (
            s.replicas,
            s.updated_replicas,
            s.ready_replicas,
            s.available_replicas,
            s.unavailable_replicas
        ),
        (Some(3), Some(3), Some(3), Some(3), Some(0))
    );
    assert_eq!(s.observed_generation, Some(1));
    assert_eq!(
        reason(&fake, "Progressing").as_deref(),
        Some("NewReplicaSetAvailable")
    );
    assert_eq!(
        reason(&fake, "Available").as_deref(),
        Some("MinimumReplicasAvailable")
    );
    assert_eq!(condition(&fake, "Available").unwrap().status, "True");

    fake.clear_records();
    reconcile(&fake);
    assert!(
        fake.actions().is_empty(),
        "a steady state writes nothing: {:?}",
        fake.actions()
    );
}

#[test]
fn scaling_resizes_the_replica_set_with_events() {
    let fake = FakeHost::new();
    fake.insert(&deployment(3)).unwrap();
    reconcile(&fake);
    settle(&fake);
    reconcile(&fake);
    let name = crate::replicasets::name(&replica_sets(&fake)[0]).to_string();

    change(&fake, |s| s.replicas = Some(5));
    reconcile(&fake);
    let rs = &replica_sets(&fake)[0];
    assert_eq!(crate::replicasets::replicas(rs), 5);
    assert_eq!(
        rs.metadata.annotations.as_ref().unwrap()[DESIRED_REPLICAS],
        "5"
    );
    assert_eq!(rs.metadata.annotations.as_ref().unwrap()[MAX_REPLICAS], "7");
    settle(&fake);
    reconcile(&fake);
    assert_eq!(status(&fake).available_replicas, Some(5));

    change(&fake, |s| s.replicas = Some(2));
    reconcile(&fake);
    assert_eq!(sizes(&fake), [2]);
    assert_eq!(
        scaling_events(&fake)[1..],
        [
            format!("Scaled up replica set {name} to 5 from 3"),
            format!("Scaled down replica set {name} to 2 from 5")
        ]
    );
    assert_eq!(
        replica_sets(&fake).len(),
        1,
        "scaling makes no new ReplicaSet"
    );
}

#[test]
fn recreate_waits_for_old_pods_before_the_new_replica_set() {
    let fake = FakeHost::new();
    let mut d = deployment(2);
    d.spec.as_mut().unwrap().strategy = Some(recreate());
    fake.insert(&d).unwrap();
    reconcile(&fake);
    settle(&fake);
    reconcile(&fake);
    let old = replica_sets(&fake)[0].clone();
    let old_name = crate::replicasets::name(&old).to_string();
    assert_eq!(
        old.metadata.annotations.as_ref().unwrap()[MAX_REPLICAS],
        "2"
    );
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some("old-pod".into()),
            namespace: Some("default".into()),
            labels: old.spec.as_ref().unwrap().selector.match_labels.clone(),
            owner_references: Some(vec![controller_ref(&old).unwrap()]),
            ..Default::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        }),
    };
    fake.insert(&pod).unwrap();

    set_image(&fake, "nginx:2");
    reconcile(&fake);
    assert_eq!(
        sizes(&fake),
        [0],
        "old scaled down first, no new ReplicaSet yet"
    );
    // The ReplicaSet controller counts no pods any more, but one still runs.
    settle(&fake);
    assert!(matches!(reconcile(&fake), Outcome::RequeueAfter(_)));
    assert_eq!(replica_sets(&fake).len(), 1);

    fake.modify::<Pod>("default", "old-pod", |p| {
        p.status.as_mut().unwrap().phase = Some("Succeeded".into())
    })
    .unwrap();
    reconcile(&fake);
    let rss = replica_sets(&fake);
    assert_eq!(sizes(&fake), [0, 2]);
    assert_eq!(image(&rss[1]), "nginx:2");
    assert_eq!(revision(&rss[1]), Some("2"));
    assert_eq!(
        scaling_events(&fake)[1..],
        [
            format!("Scaled down replica set {old_name} to 0 from 2"),
            format!(
                "Scaled up replica set {} to 2 from 0",
                crate::replicasets::name(&rss[1])
            )
        ]
    );
    settle(&fake);
    reconcile(&fake);
    let s = status(&fake);
    assert_eq!(
        (s.replicas, s.updated_replicas, s.available_replicas),
        (Some(2), Some(2), Some(2))
    );
}

#[test]
fn paused_deployments_scale_but_do_not_roll_out() {
    let fake = FakeHost::new();
    fake.insert(&deployment(2)).unwrap();
    reconcile(&fake);
    settle(&fake);
    reconcile(&fake);

    change(&fake, |s| {
        s.paused = Some(true);
        s.template = template("nginx:2");
    });
    reconcile(&fake);
    assert_eq!(replica_sets(&fake).len(), 1, "no rollout while paused");
    let progressing = condition(&fake, "Progressing").unwrap();
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_deref()),
        ("Unknown", Some("DeploymentPaused"))
    );
    assert_eq!(status(&fake).observed_generation, Some(2));

    change(&fake, |s| s.replicas = Some(4));
    reconcile(&fake);
    assert_eq!(sizes(&fake), [4], "scaling applies while paused");

    change(&fake, |s| s.paused = Some(false));
    reconcile(&fake);
    let rss = replica_sets(&fake);
    assert_eq!(rss.len(), 2);
    assert_eq!(image(&rss[1]), "nginx:2");
    assert_eq!(
        reason(&fake, "Progressing").as_deref(),
        Some("NewReplicaSetCreated")
    );
}

#[test]
fn resuming_says_so_until_the_rollout_moves() {
    let fake = FakeHost::new();
    let mut d = deployment(2);
    d.spec.as_mut().unwrap().paused = Some(true);
    fake.insert(&d).unwrap();
    reconcile(&fake);
    assert!(
        replica_sets(&fake).is_empty(),
        "a paused Deployment creates nothing"
    );
    assert_eq!(
        reason(&fake, "Progressing").as_deref(),
        Some("DeploymentPaused")
    );
    change(&fake, |s| s.paused = Some(false));
    fake.reconcile::<DeploymentController>(&key()).unwrap();
    // The resumed condition is replaced by the rollout's own in the same sync.
    assert_eq!(
        reason(&fake, "Progressing").as_deref(),
        Some("NewReplicaSetCreated")
    );
}

/// Rolls out `image` to completion, the RS controller simulated.
fn roll_out(fake: &FakeHost, image: &str) {
    set_image(fake, image);
    for _ in 0..20 {
        reconcile(fake);
        settle(fake);
    }
    reconcile(fake);
}

#[test]
fn revisions_and_rollback_reuse_the_old_replica_set() {
    let fake = FakeHost::new();
    fake.insert(&deployment(2)).unwrap();
    reconcile(&fake);
    settle(&fake);
    roll_out(&fake, "nginx:2");
    let rss = replica_sets(&fake);
    assert_eq!(
        rss.iter().map(revision).collect::<Vec<_>>(),
        [Some("1"), Some("2")]
    );
    assert_eq!(sizes(&fake), [0, 2]);
    let d = get_deployment(&fake);
    assert_eq!(d.metadata.annotations.as_ref().unwrap()[REVISION], "2");

    // `kubectl rollout undo`: the old ReplicaSet's template, without its hash label.
    let mut old_template = rss[0].spec.as_ref().unwrap().template.clone().unwrap();
    old_template
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .remove(POD_TEMPLATE_HASH_LABEL);
    change(&fake, |s| s.template = old_template);
    roll_out(&fake, "nginx:1");
    let rss = replica_sets(&fake);
    assert_eq!(rss.len(), 2, "the old ReplicaSet is reused");
    assert_eq!(
        rss.iter().map(revision).collect::<Vec<_>>(),
        [Some("3"), Some("2")]
    );
    assert_eq!(
        rss[0].metadata.annotations.as_ref().unwrap()[REVISION_HISTORY],
        "1"
    );
    assert_eq!(sizes(&fake), [2, 0]);
    let d = get_deployment(&fake);
    assert_eq!(d.metadata.annotations.as_ref().unwrap()[REVISION], "3");
    let s = status(&fake);
    assert_eq!(
        (s.replicas, s.updated_replicas, s.available_replicas),
        (Some(2), Some(2), Some(2))
    );
}

#[test]
fn history_beyond_the_limit_is_deleted_oldest_first() {
    let fake = FakeHost::new();
    let mut d = deployment(1);
    d.spec.as_mut().unwrap().revision_history_limit = Some(1);
    fake.insert(&d).unwrap();
    reconcile(&fake);
    settle(&fake);
    for image in ["nginx:2", "nginx:3", "nginx:4"] {
        roll_out(&fake, image);
    }
    let rss = replica_sets(&fake);
    assert_eq!(
        rss.iter().map(image).collect::<Vec<_>>(),
        ["nginx:3", "nginx:4"]
    );
    assert_eq!(
        rss.iter().map(revision).collect::<Vec<_>>(),
        [Some("3"), Some("4")]
    );
    let deletes = fake
        .actions()
        .into_iter()
        .filter(|a| a.verb == Verb::Delete)
        .count();
    assert_eq!(deletes, 2);
}

#[test]
fn adopts_matching_orphans_and_releases_what_stopped_matching() {
    let fake = FakeHost::new();
    let d = fake.insert(&deployment(2)).unwrap();
    let orphan = ReplicaSet {
        metadata: ObjectMeta {
            name: Some("orphan".into()),
            namespace: Some("default".into()),
            labels: labels(&[("app", "web")]),
            ..Default::default()
        },
        spec: Some(wasmkube_sdk::k8s_openapi::api::apps::v1::ReplicaSetSpec {
            replicas: Some(2),
            selector: d.spec.as_ref().unwrap().selector.clone(),
            template: Some(template("nginx:1")),
            min_ready_seconds: None,
        }),
        status: None,
    };
    fake.insert(&orphan).unwrap();
    let mut stray = orphan.clone();
    stray.metadata.name = Some("stray".into());
    stray.metadata.labels = labels(&[("app", "other")]);
    stray.metadata.owner_references = Some(vec![controller_ref(&d).unwrap()]);
    fake.insert(&stray).unwrap();

    reconcile(&fake);
    let ctx = fake.context();
    let get = |name: &str| ctx.get::<ReplicaSet>("default", name).unwrap().unwrap();
    assert_eq!(
        controller_of(&get("orphan").metadata),
        Some(&controller_ref(&d).unwrap())
    );
    assert_eq!(get("stray").metadata.owner_references, None);
    // The adopted ReplicaSet has the template: it is the new one, no other is created.
    assert_eq!(replica_sets(&fake).len(), 2);
    assert_eq!(revision(&get("orphan")), Some("1"));
}

#[test]
fn a_deleted_deployment_is_done() {
    let fake = FakeHost::new();
    assert_eq!(reconcile(&fake), Outcome::Done);
    assert!(fake.actions().is_empty());
    let mut d = deployment(1);
    d.spec.as_mut().unwrap().selector = Default::default();
    fake.insert::<Deployment>(&d).unwrap();
    reconcile(&fake);
    assert_eq!(fake.events()[0].reason, "SelectingAll");
    assert!(replica_sets(&fake).is_empty());
}
