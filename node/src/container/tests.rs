//! Tests of command lines and environments.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::json;

use super::*;

fn container(value: serde_json::Value) -> Container {
    serde_json::from_value(value).expect("a container")
}

fn image(entrypoint: &[&str], cmd: &[&str]) -> ImageConfig {
    ImageConfig {
        entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        ..ImageConfig::default()
    }
}

#[test]
fn command_and_args_combine_with_the_image_as_kubernetes_does() {
    let img = image(&["/entry"], &["default"]);
    let argv_of = |c: serde_json::Value| argv(&container(c), &img, &[]);
    assert_eq!(argv_of(json!({"name": "a"})), ["/entry", "default"]);
    assert_eq!(
        argv_of(json!({"name": "a", "args": ["x"]})),
        ["/entry", "x"]
    );
    assert_eq!(argv_of(json!({"name": "a", "command": ["sh"]})), ["sh"]);
    assert_eq!(
        argv_of(json!({"name": "a", "command": ["sh"], "args": ["-c", "y"]})),
        ["sh", "-c", "y"]
    );
}

#[test]
fn variables_expand_and_dollar_dollar_escapes() {
    let vars = |n: &str| (n == "A").then(|| "1".to_string());
    assert_eq!(expand("$(A)-$(B)-$$(A)-$", &vars), "1-$(B)-$(A)-$");
}

#[test]
fn environment_from_sources_fields_and_resources() {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "containers": []},
    }))
    .expect("a pod");
    let c = container(json!({
        "name": "a",
        "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
        "env": [
            {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "hello"}}},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
            {"name": "BOTH", "value": "$(POD)/$(APP)"},
        ],
        "resources": {"limits": {"memory": "64Mi"}},
    }));
    let sources = Sources {
        namespace: "ns".into(),
        config_maps: [(
            "cm".to_string(),
            Some(BTreeMap::from([("hello".to_string(), "world".to_string())])),
        )]
        .into(),
        secrets: [(
            "s".to_string(),
            Some(BTreeMap::from([("pw".to_string(), b"hunter2".to_vec())])),
        )]
        .into(),
        ..Sources::default()
    };
    let env = environment(&pod, &c, &sources, &Allocatable::default()).expect("an environment");
    let get = |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    assert_eq!(get("CM_hello"), Some("world"));
    assert_eq!(get("GREETING"), Some("world"));
    assert_eq!(get("PASSWORD"), Some("hunter2"));
    assert_eq!(get("POD"), Some("p"));
    assert_eq!(get("APP"), Some("web"));
    assert_eq!(get("MEM"), Some("64"));
    assert_eq!(get("BOTH"), Some("p/web"));

    let missing = Sources {
        namespace: "ns".into(),
        ..Sources::default()
    };
    assert_eq!(
        environment(&pod, &c, &missing, &Allocatable::default()).err(),
        Some(ConfigError::ConfigMapMissing("cm".into()))
    );
}

/// A Secret's bytes become the variable's text as the kubelet makes it: exact when they are
/// UTF-8, U+FFFD for bytes that are not (as the OCI spec's JSON carries them).
#[test]
fn environment_from_secret_bytes() {
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}})).expect("a pod");
    let c = container(json!({
        "name": "a",
        "envFrom": [{"secretRef": {"name": "s"}, "prefix": "S_"}],
        "env": [{"name": "BIN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "bin"}}}],
    }));
    let data = BTreeMap::from([
        ("pw".to_string(), b"hunter22".to_vec()),
        ("bin".to_string(), vec![0xff, b'z']),
    ]);
    let sources = Sources {
        secrets: [("s".to_string(), Some(data))].into(),
        ..Sources::default()
    };
    let env = environment(&pod, &c, &sources, &Allocatable::default()).expect("an environment");
    let get = |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    assert_eq!(get("S_pw"), Some("hunter22"));
    assert_eq!(get("BIN"), Some("\u{fffd}z"));
}

/// `optional: true` on `envFrom`, `configMapKeyRef` and `secretKeyRef`: a missing object or
/// key leaves the variables out; without it, the kubelet's errors.
#[test]
fn optional_references_may_be_missing() {
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}})).expect("a pod");
    let sources = Sources {
        namespace: "ns".into(),
        config_maps: [
            ("absent".to_string(), None),
            (
                "cm".to_string(),
                Some(BTreeMap::from([("k".into(), "v".into())])),
            ),
        ]
        .into(),
        secrets: [("gone".to_string(), None)].into(),
        ..Sources::default()
    };
    let env = |value: serde_json::Value| {
        environment(&pod, &container(value), &sources, &Allocatable::default())
            .map_err(|e| e.to_string())
    };
    let optional = env(json!({
        "name": "a",
        "envFrom": [
            {"configMapRef": {"name": "absent", "optional": true}},
            {"secretRef": {"name": "gone", "optional": true}},
        ],
        "env": [
            {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k", "optional": true}}},
            {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "nokey", "optional": true}}},
            {"name": "C", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": true}}},
            {"name": "D", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}},
        ],
    }));
    assert_eq!(optional, Ok(vec![("D".to_string(), "v".to_string())]));
    let key_ref = |kind: &str, name: &str, key: &str| {
        env(
            json!({"name": "a", "env": [{"name": "X", "valueFrom": {kind: {"name": name, "key": key}}}]}),
        )
    };
    assert_eq!(
        key_ref("configMapKeyRef", "cm", "nokey"),
        Err("couldn't find key nokey in ConfigMap ns/cm".to_string())
    );
    assert_eq!(
        key_ref("configMapKeyRef", "absent", "k"),
        Err(r#"configmap "absent" not found"#.to_string())
    );
    assert_eq!(
        key_ref("secretKeyRef", "gone", "k"),
        Err(r#"secret "gone" not found"#.to_string())
    );
    let from = env(json!({"name": "a", "envFrom": [{"secretRef": {"name": "gone"}}]}));
    assert_eq!(from, Err(r#"secret "gone" not found"#.to_string()));
}
