//! RollingUpdate: stepping within maxSurge and maxUnavailable, and proportional scaling.

use wasmkube_sdk::k8s_openapi::api::apps::v1::ReplicaSet;
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::replicasets::{available, name, replicas};

fn rolled_out(replicas: i32, strategy: DeploymentStrategy) -> FakeHost {
    let fake = FakeHost::new();
    let mut d = deployment(replicas);
    d.spec.as_mut().unwrap().strategy = Some(strategy);
    fake.insert(&d).unwrap();
    reconcile(&fake);
    settle(&fake);
    reconcile(&fake);
    fake
}

/// Available pods once the scale-downs of the last sync took effect.
fn still_available(fake: &FakeHost) -> i32 {
    replica_sets(fake)
        .iter()
        .map(|rs| available(rs).min(replicas(rs)))
        .sum()
}

#[test]
fn a_template_change_rolls_out_step_by_step() {
    let fake = rolled_out(4, rolling(IntOrString::Int(1), IntOrString::Int(1)));
    set_image(&fake, "nginx:2");
    fake.clear_records();

    reconcile(&fake);
    assert_eq!(sizes(&fake), [3, 1], "one surge pod, one old pod may go");
    let rss = replica_sets(&fake);
    let (old, new) = (name(&rss[0]).to_string(), name(&rss[1]).to_string());
    assert_eq!(image(&rss[1]), "nginx:2");
    assert_eq!(
        reason(&fake, "Progressing").as_deref(),
        Some("NewReplicaSetCreated")
    );

    // The new pods are not available: the new ReplicaSet grows to the surge, nothing more.
    let new_unavailable = |rs: &ReplicaSet| if name(rs) == new { 0 } else { replicas(rs) };
    simulate(&fake, new_unavailable);
    reconcile(&fake);
    assert_eq!(sizes(&fake), [3, 2]);
    simulate(&fake, new_unavailable);
    reconcile(&fake);
    assert_eq!(
        sizes(&fake),
        [3, 2],
        "no pod may go while the new ones are unavailable"
    );

    settle(&fake);
    reconcile(&fake);
    assert_eq!(sizes(&fake), [1, 2]);
    settle(&fake);
    reconcile(&fake);
    assert_eq!(sizes(&fake), [1, 4]);
    settle(&fake);
    reconcile(&fake);
    assert_eq!(sizes(&fake), [0, 4]);
    settle(&fake);
    reconcile(&fake);
    let s = status(&fake);
    assert_eq!(
        (
            s.replicas,
            s.updated_replicas,
            s.available_replicas,
            s.observed_generation
        ),
        (Some(4), Some(4), Some(4), Some(2))
    );
    assert_eq!(
        reason(&fake, "Progressing").as_deref(),
        Some("NewReplicaSetAvailable")
    );
    assert_eq!(
        scaling_events(&fake),
        [
            format!("Scaled up replica set {new} to 1 from 0"),
            format!("Scaled down replica set {old} to 3 from 4"),
            format!("Scaled up replica set {new} to 2 from 1"),
            format!("Scaled down replica set {old} to 1 from 3"),
            format!("Scaled up replica set {new} to 4 from 2"),
            format!("Scaled down replica set {old} to 0 from 1"),
        ]
    );
}

#[test]
fn percentages_bound_every_step() {
    let pct = |p: &str| IntOrString::String(p.into());
    // 10 replicas, 25%/25%: at most 13 pods, at least 8 available.
    let fake = rolled_out(10, rolling(pct("25%"), pct("25%")));
    set_image(&fake, "nginx:2");
    for step in 0..30 {
        reconcile(&fake);
        let total: i32 = sizes(&fake).iter().sum();
        assert!(total <= 13, "step {step}: {total} pods");
        assert!(
            still_available(&fake) >= 8,
            "step {step}: {:?}",
            sizes(&fake)
        );
        settle(&fake);
    }
    assert_eq!(sizes(&fake), [0, 10]);
    assert_eq!(status(&fake).updated_replicas, Some(10));
}

#[test]
fn zero_surge_replaces_one_pod_at_a_time() {
    let fake = rolled_out(3, rolling(IntOrString::Int(0), IntOrString::Int(0)));
    set_image(&fake, "nginx:2");
    reconcile(&fake);
    assert_eq!(
        sizes(&fake),
        [2, 0],
        "both zero: one pod may be unavailable"
    );
    settle(&fake);
    reconcile(&fake);
    assert_eq!(sizes(&fake), [2, 1]);
}

#[test]
fn unhealthy_old_replicas_go_first() {
    let fake = rolled_out(4, rolling(IntOrString::Int(0), IntOrString::Int(1)));
    // Two old pods broke.
    simulate(&fake, |rs| replicas(rs) - 2);
    set_image(&fake, "nginx:2");
    reconcile(&fake);
    // Availability is below the minimum already, yet an unhealthy old pod may go: it costs
    // nothing. The new ReplicaSet starts in the room that made.
    assert_eq!(sizes(&fake), [3, 0]);
    simulate(&fake, |rs| (replicas(rs) - 2).max(0));
    reconcile(&fake);
    assert_eq!(sizes(&fake), [3, 1]);
}

#[test]
fn scaling_mid_rollout_is_proportional() {
    let pct = |p: &str| IntOrString::String(p.into());
    let fake = rolled_out(10, rolling(pct("25%"), pct("25%")));
    set_image(&fake, "nginx:2");
    reconcile(&fake);
    assert_eq!(sizes(&fake), [8, 3]);

    change(&fake, |s| s.replicas = Some(20));
    reconcile(&fake);
    // 25 allowed (20 + 5 surge): 14 more, split 7/3 by size, the 4 left to the largest.
    assert_eq!(sizes(&fake), [19, 6]);
    for rs in replica_sets(&fake) {
        let annotations = rs.metadata.annotations.unwrap();
        assert_eq!(annotations[crate::annotations::DESIRED_REPLICAS], "20");
        assert_eq!(annotations[crate::annotations::MAX_REPLICAS], "25");
    }
    for _ in 0..30 {
        settle(&fake);
        reconcile(&fake);
    }
    assert_eq!(sizes(&fake), [0, 20]);
}
