//! Validation tests: the messages users see for common mistakes.

use serde_json::json;

use super::*;
use crate::resource::{Registry, builtins};

fn check(api_version: &str, kind: &str, obj: serde_json::Value) -> Vec<String> {
    let registry = Registry::new(builtins());
    let info = registry.by_kind(api_version, kind).expect("built-in");
    validate(info, &obj, None)
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn deployment_names_every_bad_field() {
    let errs = check(
        "apps/v1",
        "Deployment",
        json!({
            "metadata": {"name": "web"},
            "spec": {"replicas": -1, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web"}]}}}
        }),
    );
    assert_eq!(
        errs,
        vec![
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            "spec.template.spec.containers[0].image: Required value",
        ]
    );
}

#[test]
fn selector_must_match_template() {
    let errs = check(
        "apps/v1",
        "ReplicaSet",
        json!({
            "metadata": {"name": "rs"},
            "spec": {"selector": {"matchLabels": {"app": "a"}},
                "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}
        }),
    );
    assert_eq!(
        errs,
        vec![
            r#"spec.template.metadata.labels: Invalid value: {"app":"b"}: `selector` does not match template `labels`"#
        ]
    );
}

#[test]
fn service_ports_and_names() {
    let errs = check(
        "v1",
        "Service",
        json!({
            "metadata": {"name": "Bad_Name"},
            "spec": {"ports": [{"port": 0}, {"port": 80, "protocol": "HTTP"}]}
        }),
    );
    assert_eq!(errs.len(), 5, "{errs:#?}");
    assert!(
        errs[0]
            .starts_with("metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 label")
    );
    assert!(errs.contains(
        &"spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive".to_string()
    ));
    assert!(errs.contains(&r#"spec.ports[1].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP""#.to_string()));
}

#[test]
fn configmap_size_limit() {
    let big = "x".repeat(MAX + 1);
    const MAX: usize = core::MAX_DATA_BYTES;
    let errs = check(
        "v1",
        "ConfigMap",
        json!({"metadata": {"name": "c"}, "data": {"k": big}}),
    );
    assert_eq!(errs, vec!["[]: Too long: must have at most 1048576 bytes"]);
}

#[test]
fn pod_needs_containers_and_a_name() {
    let errs = check(
        "v1",
        "Pod",
        json!({"metadata": {}, "spec": {"containers": []}}),
    );
    assert_eq!(
        errs,
        vec![
            "metadata.name: Required value: name or generateName is required",
            "spec.containers: Required value",
        ]
    );
}

#[test]
fn pod_names_and_paths_that_would_leave_their_volume_are_refused() {
    let errs = check(
        "v1",
        "Pod",
        json!({
            "metadata": {"name": "p"},
            "spec": {
                "activeDeadlineSeconds": 9_223_372_036_854_775_807_i64,
                "imagePullSecrets": [{"name": "../x"}],
                "volumes": [
                    {"name": "cfg", "configMap": {"name": "c", "items": [{"key": "k", "path": "../../../../../tmp/x"}]}},
                    {"name": "sec", "secret": {"secretName": "../../kube-system/secrets/x"}},
                    {"name": "a/b", "emptyDir": {}},
                    {"name": "dots", "downwardAPI": {"items": [{"path": "..data"}]}},
                    {"name": "abs", "configMap": {"name": "c", "items": [{"key": "k", "path": "/etc/x", "mode": 4096}]}},
                ],
                "containers": [{
                    "name": "c", "image": "busybox",
                    "volumeMounts": [{"name": "cfg", "mountPath": "/x", "subPath": "../../.."}],
                    "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "a/../b", "key": "k"}}}],
                    "envFrom": [{"configMapRef": {"name": "UPPER"}}],
                }],
            }
        }),
    );
    let label = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
    let subdomain = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    assert_eq!(
        errs,
        vec![
            "spec.volumes[0].configMap.items[0].path: Invalid value: \"../../../../../tmp/x\": must not contain '..'".to_string(),
            format!("spec.volumes[1].secret.secretName: Invalid value: \"../../kube-system/secrets/x\": {subdomain}"),
            format!("spec.volumes[2].name: Invalid value: \"a/b\": {label}"),
            "spec.volumes[3].downwardAPI.items[0].path: Invalid value: \"..data\": must not start with '..'".to_string(),
            "spec.volumes[4].configMap.items[0].path: Invalid value: \"/etc/x\": must be a relative path".to_string(),
            "spec.volumes[4].configMap.items[0].mode: Invalid value: 4096: must be a number between 0 and 0777 (octal), both inclusive".to_string(),
            format!("spec.imagePullSecrets[0].name: Invalid value: \"../x\": {subdomain}"),
            "spec.containers[0].volumeMounts[0].subPath: Invalid value: \"../../..\": must not contain '..'".to_string(),
            format!("spec.containers[0].env[0].valueFrom.secretKeyRef.name: Invalid value: \"a/../b\": {subdomain}"),
            format!("spec.containers[0].envFrom[0].configMapRef.name: Invalid value: \"UPPER\": {subdomain}"),
            "spec.activeDeadlineSeconds: Invalid value: 9223372036854775807: must be between 1 and 2147483647, inclusive".to_string(),
        ]
    );
}

#[test]
fn resource_quantities_parse_are_not_negative_and_requests_fit_limits() {
    let errs = check(
        "v1",
        "Pod",
        json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{
                "name": "c", "image": "busybox",
                "resources": {
                    "requests": {"cpu": -100, "memory": "2Gi", "example.com/gpu": 1},
                    "limits": {"memory": "1Gi", "ephemeral-storage": "512mi", "gpus": "1"},
                },
            }]}
        }),
    );
    assert_eq!(
        errs,
        vec![
            "spec.containers[0].resources.limits[ephemeral-storage]: Invalid value: \"512mi\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            "spec.containers[0].resources.limits[gpus]: Invalid value: \"gpus\": must be a standard resource for containers",
            "spec.containers[0].resources.requests[cpu]: Invalid value: -100: must be greater than or equal to 0",
            "spec.containers[0].resources.requests[memory]: Invalid value: \"2Gi\": must be less than or equal to memory limit of 1Gi",
        ]
    );
    // 12E of memory is large, not negative: it saturates and passes.
    let errs = check(
        "v1",
        "Pod",
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox",
            "resources": {"requests": {"cpu": "12E", "memory": "12E"}}}]}}),
    );
    assert_eq!(errs, Vec::<String>::new());
}

#[test]
fn crds_may_not_take_over_built_in_groups_nor_carry_bad_names_or_patterns() {
    let crd = |group: &str, plural: &str, pattern: &str| {
        json!({
            "metadata": {"name": format!("{plural}.{group}")},
            "spec": {"group": group, "scope": "Namespaced",
                "names": {"plural": plural, "kind": "Lease"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "properties": {"x": {"type": "string", "pattern": pattern}}}}}}}]}
        })
    };
    let errs = check(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        crd("coordination.k8s.io", "leases", "^a$"),
    );
    assert_eq!(
        errs,
        vec![
            "spec.group: Forbidden: \"leases.coordination.k8s.io\" is served by the apiserver itself"
        ]
    );
    let errs = check(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        crd("example.com", "Leases", "(unclosed"),
    );
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(
        errs[0].starts_with("metadata.name: Invalid value: \"Leases.example.com\""),
        "{errs:?}"
    );
    assert!(
        errs[1].starts_with(
            "spec.names.plural: Invalid value: \"Leases\": a lowercase RFC 1123 label"
        ),
        "{errs:?}"
    );
    assert!(
        errs[2].starts_with("spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[x].pattern: Invalid value: \"(unclosed\": must be a valid regular expression, but isn't: "),
        "{errs:?}"
    );
    let errs = check(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        crd("example.com", "leases", "^[a-z]+$"),
    );
    assert_eq!(errs, Vec::<String>::new());
}

#[test]
fn probe_requests_cannot_smuggle_headers() {
    let errs = check(
        "v1",
        "Pod",
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox",
            "livenessProbe": {"httpGet": {"port": 80, "path": "/\r\nX: y",
                "httpHeaders": [{"name": "A: b", "value": "v"}, {"name": "Ok", "value": "x\r\nEvil: 1"}]}}}]}}),
    );
    assert_eq!(
        errs,
        vec![
            "spec.containers[0].livenessProbe.httpGet.path: Invalid value: \"/\\r\\nX: y\": must not contain control characters",
            "spec.containers[0].livenessProbe.httpGet.httpHeaders[0].name: Invalid value: \"A: b\": a valid HTTP header must consist of alphanumeric characters or '-' (e.g. 'X-Header-Name', regex used for validation is '[-A-Za-z0-9]+')",
            "spec.containers[0].livenessProbe.httpGet.httpHeaders[1].value: Invalid value: \"x\\r\\nEvil: 1\": must not contain control characters",
        ]
    );
}

#[test]
fn plugin_workers_limits_and_chunks_are_bounded() {
    let digest = format!("sha256:{}", "0".repeat(64));
    let plugin = |spec: serde_json::Value| {
        let mut obj = json!({"metadata": {"name": "p"}, "spec": {"kind": "Controller",
            "module": {"digest": digest, "chunks": 1}}});
        for (k, v) in spec.as_object().into_iter().flatten() {
            obj["spec"][k] = v.clone();
        }
        check("wasmkube.dev/v1alpha1", "Plugin", obj)
    };
    assert!(
        plugin(
            json!({"workers": 16, "limits": {"memoryBytes": 1 << 30, "callTimeoutMillis": 60_000}})
        )
        .is_empty()
    );
    assert_eq!(
        plugin(
            json!({"workers": 17, "limits": {"memoryBytes": (1u64 << 30) + 1, "callTimeoutMillis": 3_600_000},
            "module": {"digest": digest, "chunks": 129}})
        ),
        vec![
            "spec.workers: Invalid value: 17: must be less than or equal to 16",
            "spec.limits.memoryBytes: Invalid value: 1073741825: must be less than or equal to 1073741824",
            "spec.limits.callTimeoutMillis: Invalid value: 3600000: must be less than or equal to 60000",
            "spec.module.chunks: Invalid value: 129: must be less than or equal to 128",
        ]
    );
    // A controller may have a shadow; a scheduling policy may not.
    let shadow = json!({"shadow": {"module": {"digest": digest, "chunks": 129}}});
    assert_eq!(
        plugin(shadow.clone()),
        vec!["spec.shadow.module.chunks: Invalid value: 129: must be less than or equal to 128"]
    );
    let mut scheduler = shadow;
    scheduler["kind"] = json!("Scheduler");
    scheduler["shadow"]["module"]["chunks"] = json!(1);
    assert_eq!(
        plugin(scheduler),
        vec![
            "spec.shadow: Forbidden: a Scheduler Plugin has no shadow: a SchedulerProfile's spec.shadow runs a candidate policy"
        ]
    );
    let chunk =
        json!({"metadata": {"name": "c"}, "digest": digest, "index": 0, "count": 1000, "data": ""});
    assert_eq!(
        check("wasmkube.dev/v1alpha1", "PluginModule", chunk),
        vec!["count: Invalid value: 1000: must be less than or equal to 128"]
    );
}
