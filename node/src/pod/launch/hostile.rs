//! Property test of hostile pod specs through the model's defaulting and validation, then the
//! node's spec builder (`launch::process`, `spec::runtime_spec`) with an image and sources made
//! up: whatever the pod, a process spec or a refusal, never a panic. Cases: 256 by default;
//! `PROPTEST_CASES=5000 cargo test -p wasmkube-node hostile_pods` runs more.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use wasmkube_model::{defaults, resource, validation};

use super::*;
use crate::image::ImageConfig;

/// Values an attacker tries: extreme numbers, paths that climb, names of nothing.
fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            // Ids and quantities past every range, and the edges.
            json!(i64::MIN),
            json!(u64::MAX),
            json!(1e308),
            json!(-1),
            json!(0),
            json!(65534),
            json!("99999999999999999999"),
            json!("12E"),
            json!("-100m"),
            json!("1.5Gi"),
            // Names and paths: climbing, absolute, expansions.
            json!("/proc/self/root"),
            json!("x/../../y"),
            json!("$(A)$(B)$$"),
            json!("metadata.name"),
            json!("limits.memory"),
            json!("requests.cpu"),
            // Security choices.
            json!("RuntimeDefault"),
            json!("Localhost"),
            json!("Unconfined"),
            json!("Memory"),
            json!("ALL"),
            json!("SYS_ADMIN"),
            json!(null),
            json!(true),
            json!(""),
            json!("v"),
        ]),
        "[a-z0-9./$()-]{0,10}".prop_map(Value::from),
    ]
}

/// JSON of any shape whose keys are the fields the spec builder reads.
fn tree() -> impl Strategy<Value = Value> {
    let names = prop::sample::select(vec![
        "name",
        "command",
        "args",
        "env",
        "value",
        "valueFrom",
        "fieldRef",
        "fieldPath",
        "resourceFieldRef",
        "resource",
        "divisor",
        "secretKeyRef",
        "configMapKeyRef",
        "key",
        "optional",
        "volumeMounts",
        "mountPath",
        "subPath",
        "readOnly",
        "securityContext",
        "runAsUser",
        "runAsGroup",
        "runAsNonRoot",
        "privileged",
        "capabilities",
        "add",
        "drop",
        "seccompProfile",
        "type",
        "readOnlyRootFilesystem",
        "resources",
        "requests",
        "limits",
        "cpu",
        "memory",
        "workingDir",
        "tty",
    ]);
    leaf().prop_recursive(5, 64, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::vec((names.clone(), inner), 0..5).prop_map(|fields| {
                Value::Object(
                    fields
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

/// Either a field that makes sense or anything at all.
fn or_tree(sensible: Value) -> impl Strategy<Value = Value> {
    prop_oneof![3 => Just(sensible), 1 => tree()]
}

fn security() -> impl Strategy<Value = Value> {
    (
        prop::option::of(prop_oneof![Just(json!(0)), Just(json!(1000)), leaf()]),
        prop::option::of(leaf()),
        prop::option::of(any::<bool>()),
        prop::option::of(prop::sample::select(vec![
            "RuntimeDefault",
            "Unconfined",
            "Localhost",
            "",
        ])),
        prop::option::of(prop::collection::vec(leaf(), 0..3)),
        any::<bool>(),
    )
        .prop_map(|(user, group, non_root, seccomp, caps, privileged)| {
            let mut context = json!({"privileged": privileged});
            let mut set = |key: &str, value: Option<Value>| {
                if let Some(value) = value {
                    context[key] = value;
                }
            };
            set("runAsUser", user);
            set("runAsGroup", group);
            set("runAsNonRoot", non_root.map(Value::from));
            set("seccompProfile", seccomp.map(|t| json!({"type": t})));
            set(
                "capabilities",
                caps.map(|c| json!({"add": c, "drop": ["ALL"]})),
            );
            context
        })
}

fn container() -> impl Strategy<Value = Value> {
    (
        "[a-z]{1,3}",
        or_tree(json!(["sh", "-c", "$(A) $$(B)"])),
        or_tree(json!([{"name": "A", "value": "1"},
            {"name": "M", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}}])),
        or_tree(json!([{"name": "v", "mountPath": "/v", "subPath": "x/y"}])),
        or_tree(json!({"limits": {"cpu": "12E", "memory": "1Gi"}, "requests": {"cpu": "1m"}})),
        security(),
    )
        .prop_map(|(name, command, env, mounts, resources, security)| {
            json!({"name": name, "image": "busybox", "command": command, "env": env,
                "volumeMounts": mounts, "resources": resources, "securityContext": security})
        })
}

fn pod() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(container(), 1..3),
        or_tree(
            json!([{"name": "v", "emptyDir": {}}, {"name": "h", "hostPath": {"path": "/tmp"}}]),
        ),
        security(),
        prop::option::of(prop::collection::vec(leaf(), 0..3)),
        prop::option::of(leaf()),
    )
        .prop_map(|(containers, volumes, mut security, groups, fs_group)| {
            if let Some(groups) = groups {
                security["supplementalGroups"] = Value::Array(groups);
            }
            if let Some(fs_group) = fs_group {
                security["fsGroup"] = fs_group;
            }
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": "default", "uid": "u"},
                "spec": {"containers": containers, "volumes": volumes,
                    "securityContext": security}})
        })
}

/// Every container of `pod` through the spec builder; how many got a process.
fn build(pod: &Pod, image_user: &str, pod_dir: &Path) -> usize {
    let image = Image {
        name: "busybox".into(),
        digest: String::new(),
        chain_id: String::new(),
        config: ImageConfig {
            user: image_user.to_string(),
            cmd: vec!["sh".into()],
            ..ImageConfig::default()
        },
    };
    let accounts = Accounts::parse(
        "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/:/bin/sh\n",
        "root:x:0:\nwheel:x:10:app\n",
    );
    let inputs = Inputs {
        image: &image,
        accounts: &accounts,
        sources: &Sources::default(),
        allocatable: &Allocatable {
            cpu_milli: 2000,
            memory: 1 << 30,
        },
        pod_dir,
        pod_ip: "10.244.0.2",
        dns: &NodeDns::default(),
        cgroups_path: "/wasmkube/podu/c".into(),
        pids_limit: Some(4096),
    };
    // The volume directories `volumes::prepare` would have made (it mounts, so not called).
    let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    for volume in volumes.filter(|v| validation::is_dns1123_label(&v.name)) {
        std::fs::create_dir_all(pod_dir.join("volumes").join(&volume.name)).expect("a volume");
    }
    let containers = pod.spec.iter().flat_map(|s| &s.containers);
    let specs = containers.filter_map(|c| process(pod, c, &inputs).ok());
    specs
        .filter(|p| !spec::runtime_spec(p).to_string().is_empty())
        .count()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn hostile_pods_reach_the_spec_builder_without_a_panic(
        mut object in pod(),
        image_user in prop::sample::select(vec!["", "app", "app:wheel", "0:0", "nosuchuser", "1:x"]),
    ) {
        // Those validation refuses too: the node must survive an older apiserver's pods.
        let _valid = admitted(&mut object);
        // A pod that does not even decode never reaches a node.
        if let Ok(pod) = serde_json::from_value::<Pod>(object) {
            let dir = tempfile::tempdir().expect("a temp dir");
            build(&pod, image_user, dir.path());
        }
    }
}

/// Defaults `object` as the apiserver does; whether it validates as a pod.
fn admitted(object: &mut Value) -> bool {
    let pods = resource::builtins()
        .into_iter()
        .find(|r| r.group.is_empty() && r.plural == "pods")
        .expect("the pods resource");
    defaults::apply_defaults("", "Pod", object);
    validation::validate(&pods, object, None).is_empty()
}

/// The sensible choices of the strategies validate and build: the property reaches the spec
/// builder, not only validation's refusals.
#[test]
fn sensible_pods_validate_and_build() {
    let mut object = json!({"apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "p", "namespace": "default", "uid": "u"},
    "spec": {
        "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", "$(A)"],
            "env": [{"name": "A", "value": "1"}],
            "volumeMounts": [{"name": "v", "mountPath": "/v", "subPath": "x/y"}],
            "resources": {"limits": {"cpu": "12E", "memory": "1Gi"}, "requests": {"cpu": "1m"}},
            "securityContext": {"runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}}}],
        "volumes": [{"name": "v", "emptyDir": {}}],
        "securityContext": {"runAsNonRoot": true, "supplementalGroups": [5]},
    }});
    assert!(admitted(&mut object), "{object}");
    let pod: Pod = serde_json::from_value(object).expect("a pod");
    let dir = tempfile::tempdir().expect("a temp dir");
    assert_eq!(build(&pod, "app", dir.path()), 1);
}
