//! Tests of what a container runs as and under which limits.

use serde_json::{Value, json};

use super::*;
use crate::image::ImageConfig;

const PASSWD: &str = "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
const GROUP: &str = "root:x:0:\napp:x:1000:\nwheel:x:10:app\n";

fn pod(security: Value, container_security: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
        "spec": {
            "securityContext": security,
            "containers": [{"name": "c", "image": "i", "command": ["sh"],
                "securityContext": container_security}],
        },
    }))
    .expect("a pod")
}

fn run_as(image_user: &str, security: Value, container_security: Value) -> Result<User, String> {
    let pod = pod(security, container_security);
    let container = &pod.spec.as_ref().expect("a spec").containers[0];
    let accounts = Accounts::parse(PASSWD, GROUP);
    user(&pod, container, image_user, &accounts).map_err(|r| {
        assert_eq!(r.reason, "CreateContainerConfigError");
        r.message
    })
}

fn uid_gid(result: Result<User, String>) -> Result<(u32, u32), String> {
    result.map(|u| (u.uid, u.gid))
}

#[test]
fn the_image_user_is_resolved_through_its_own_files_or_refused() {
    let none = json!({});
    assert_eq!(
        uid_gid(run_as("app", none.clone(), none.clone())),
        Ok((1000, 1000))
    );
    assert_eq!(
        uid_gid(run_as("app:wheel", none.clone(), none.clone())),
        Ok((1000, 10))
    );
    assert_eq!(uid_gid(run_as("", none.clone(), none.clone())), Ok((0, 0)));
    assert_eq!(
        run_as("nosuchuser", none.clone(), none.clone()),
        Err("unable to find user nosuchuser: no matching entries in passwd file".into())
    );
    // The securityContext wins over the image, and the image's group goes with its user.
    let runs_as = json!({"runAsUser": 4242});
    assert_eq!(
        uid_gid(run_as("app:wheel", runs_as.clone(), none.clone())),
        Ok((4242, 0))
    );
    assert_eq!(
        uid_gid(run_as("nosuchuser", runs_as, none.clone())),
        Ok((4242, 0))
    );
    let group = json!({"runAsGroup": 7});
    assert_eq!(
        uid_gid(run_as("app", none.clone(), group.clone())),
        Ok((1000, 7))
    );
    assert_eq!(uid_gid(run_as("", group, none.clone())), Ok((0, 7)));
    assert!(
        run_as("", json!({"runAsUser": -1}), none.clone())
            .is_err_and(|m| m == "invalid runAsUser -1")
    );
    assert!(run_as("", json!({"runAsUser": 1_i64 << 40}), none).is_err());
}

#[test]
fn groups_come_from_the_image_and_the_pod() {
    let pod_security = json!({"supplementalGroups": [5, 10], "fsGroup": 2000});
    let user = run_as("app", pod_security, json!({})).expect("resolved");
    assert_eq!(user.additional_gids, [1000, 10, 5, 2000]);
}

#[test]
fn run_as_non_root_refuses_root_as_the_kubelet_does() {
    let non_root = json!({"runAsNonRoot": true});
    let none = json!({});
    assert_eq!(
        run_as("", non_root.clone(), none.clone()),
        Err("container has runAsNonRoot and image will run as root (pod: \"p_ns(u1)\", container: c)".into())
    );
    assert!(run_as("root", none.clone(), non_root.clone()).is_err());
    assert!(run_as("0:1000", none.clone(), non_root.clone()).is_err());
    assert_eq!(
        run_as("app", non_root.clone(), json!({"runAsUser": 0})),
        Err(
            "container's runAsUser breaks non-root policy (pod: \"p_ns(u1)\", container: c)".into()
        )
    );
    assert_eq!(
        uid_gid(run_as("app", non_root.clone(), none.clone())),
        Ok((1000, 1000))
    );
    assert_eq!(
        uid_gid(run_as("", non_root.clone(), json!({"runAsUser": 1}))),
        Ok((1, 0))
    );
    // The container's own setting wins over the pod's.
    assert_eq!(
        uid_gid(run_as("", non_root, json!({"runAsNonRoot": false}))),
        Ok((0, 0))
    );
}

#[test]
fn seccomp_profiles_by_type_container_over_pod() {
    let profile = |t: &str| json!({"seccompProfile": {"type": t}});
    let of = |pod_security: Value, container_security: Value| {
        let pod = pod(pod_security, container_security);
        let container = &pod.spec.as_ref().expect("a spec").containers[0];
        seccomp(&pod, container).map_err(|r| r.message)
    };
    assert_eq!(of(json!({}), json!({})), Ok(Seccomp::Unconfined));
    assert_eq!(
        of(profile("RuntimeDefault"), json!({})),
        Ok(Seccomp::RuntimeDefault)
    );
    assert_eq!(
        of(json!({}), profile("RuntimeDefault")),
        Ok(Seccomp::RuntimeDefault)
    );
    assert_eq!(
        of(profile("RuntimeDefault"), profile("Unconfined")),
        Ok(Seccomp::Unconfined)
    );
    assert!(of(profile("Localhost"), json!({})).is_err_and(|m| m.contains("Localhost")));
    assert!(of(json!({}), profile("Bogus")).is_err());
}

#[test]
fn limits_saturate_on_huge_quantities() {
    let container = |resources: Value| -> Container {
        serde_json::from_value(json!({"name": "c", "resources": resources})).expect("a container")
    };
    let huge = limits(
        &container(json!({"limits": {"cpu": "12E", "memory": "99E"}})),
        None,
    );
    assert_eq!(huge.cpu_shares, MAX_SHARES);
    assert_eq!(huge.cpu_quota, Some(i64::MAX));
    assert_eq!(huge.memory, Some(i64::MAX));
    let negative = limits(
        &container(json!({"requests": {"cpu": "-1"}, "limits": {"memory": "-5Mi"}})),
        Some(64),
    );
    assert_eq!(
        negative,
        Limits {
            cpu_shares: 2,
            cpu_quota: None,
            memory: None,
            pids: Some(64)
        }
    );
    let usual = limits(&container(json!({"limits": {"cpu": "500m"}})), None);
    assert_eq!((usual.cpu_shares, usual.cpu_quota), (512, Some(50_000)));
}

#[test]
fn the_process_carries_the_user_limits_and_a_default_path() {
    let pod = pod(
        json!({"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}}),
        json!({}),
    );
    let container = &pod.spec.as_ref().expect("a spec").containers[0];
    let dir = tempfile::tempdir().expect("a temp dir");
    let image = Image {
        name: "i".into(),
        digest: String::new(),
        chain_id: String::new(),
        config: ImageConfig {
            user: "app".into(),
            ..ImageConfig::default()
        },
    };
    let inputs = Inputs {
        image: &image,
        accounts: &Accounts::parse(PASSWD, GROUP),
        sources: &Sources::default(),
        allocatable: &Allocatable::default(),
        pod_dir: dir.path(),
        pod_ip: "10.0.0.2",
        dns: &NodeDns::default(),
        cgroups_path: "/wasmkube/podu1/x".into(),
        pids_limit: Some(4096),
    };
    let process = process(&pod, container, &inputs)
        .map_err(|r| r.message)
        .expect("a process");
    assert_eq!((process.uid, process.gid), (1000, 1000));
    assert_eq!(process.additional_gids, [1000, 10]);
    assert_eq!(process.limits.pids, Some(4096));
    assert_eq!(process.seccomp, Seccomp::RuntimeDefault);
    assert_eq!(process.env[0], spec::DEFAULT_PATH);
}

#[test]
fn oom_score_adj_is_not_lowered_past_what_the_agent_may_set() {
    let with = "Name:\tx\nCapEff:\t000001ffffffffff\n";
    let without = "Name:\tx\nCapEff:\t000001fffeffffff\n";
    assert_eq!(floor(with, "0\n"), -1000);
    assert_eq!(floor(without, "0\n"), 0);
    assert_eq!(floor(without, "-500\n"), -500);
    assert_eq!(floor("", "junk"), 0);
    assert_eq!(
        (-997).max(floor(without, "0")),
        0,
        "a Guaranteed pod gets 0"
    );
    assert_eq!(1000.max(floor(without, "0")), 1000, "BestEffort keeps 1000");
}
