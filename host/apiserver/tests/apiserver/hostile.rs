//! Property test of hostile requests through the whole write path (`app()`: decode, default,
//! validate, admission, patches, store): whatever the body, the answer is a `Status` or an
//! object, never a panic or a 500.

use crate::common;

use std::sync::OnceLock;

use common::Api;
use http::StatusCode;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Values an attacker tries: extreme numbers, paths that climb, quantities that do not parse.
fn hostile_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            json!(i64::MAX),
            json!(i64::MIN),
            json!(u64::MAX),
            json!(-1),
            json!(0),
            json!(1e308),
            json!(null),
            json!(true),
            json!(""),
            json!("../../.."),
            json!("/etc/shadow"),
            json!("a/b"),
            json!("512mi"),
            json!("12E"),
            json!("-100"),
            json!("\r\nX: y"),
            json!("busybox"),
            json!("c"),
            json!("v"),
        ]),
        "[a-z0-9./-]{0,8}".prop_map(Value::from),
    ]
}

/// Pod-shaped JSON: the fields that become paths, deadlines and quantities on a node.
fn hostile_tree() -> impl Strategy<Value = Value> {
    let names = prop::sample::select(vec![
        "containers",
        "initContainers",
        "name",
        "image",
        "volumes",
        "volumeMounts",
        "mountPath",
        "subPath",
        "configMap",
        "secret",
        "secretName",
        "items",
        "key",
        "path",
        "mode",
        "resources",
        "requests",
        "limits",
        "cpu",
        "memory",
        "terminationGracePeriodSeconds",
        "activeDeadlineSeconds",
        "livenessProbe",
        "httpGet",
        "httpHeaders",
        "env",
        "valueFrom",
        "secretKeyRef",
    ]);
    hostile_leaf().prop_recursive(6, 96, 6, move |inner| {
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

/// One runtime and server for every case.
fn api() -> &'static (tokio::runtime::Runtime, Api) {
    static API: OnceLock<(tokio::runtime::Runtime, Api)> = OnceLock::new();
    API.get_or_init(|| {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let api = runtime.block_on(Api::new());
        (runtime, api)
    })
}

fn served(code: StatusCode, body: &Value) -> Result<(), TestCaseError> {
    prop_assert!(code.as_u16() < 500, "{code}: {body}");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn hostile_pods_get_an_answer(spec in hostile_tree(), n in 0u32..1000) {
        let (runtime, api) = api();
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("p{n}")}, "spec": spec});
        let (code, body) = runtime.block_on(api.call("POST", "/api/v1/namespaces/default/pods", Some(pod)));
        served(code, &body)?;
        let (code, body) = runtime.block_on(api.call(
            "DELETE",
            &format!("/api/v1/namespaces/default/pods/p{n}"),
            Some(json!({"gracePeriodSeconds": i64::MAX})),
        ));
        served(code, &body)?;
    }

    #[test]
    fn hostile_patches_get_an_answer(
        ops in prop::collection::vec((0usize..6, hostile_leaf(), 0usize..4, 0usize..4), 0..12),
        value in hostile_tree(),
        kind in 0usize..3,
    ) {
        let (runtime, api) = api();
        let paths = ["/data", "/data/k", "/metadata/labels", "/metadata/annotations/a", "", "/data/-"];
        let names = ["add", "remove", "replace", "move", "copy", "test"];
        let patch: Vec<Value> = ops
            .into_iter()
            .map(|(op, leaf, from, path)| json!({"op": names[op], "path": paths[path],
                "from": paths[from], "value": leaf}))
            .collect();
        runtime.block_on(api.call("POST", "/api/v1/namespaces/default/configmaps",
            Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "target"}}))));
        let (content_type, body) = match kind {
            0 => ("application/json-patch+json", Value::Array(patch).to_string()),
            1 => ("application/merge-patch+json", json!({"data": value}).to_string()),
            _ => ("application/strategic-merge-patch+json", json!({"metadata": value}).to_string()),
        };
        let (code, answer) = runtime.block_on(api.raw(
            "PATCH",
            "/api/v1/namespaces/default/configmaps/target",
            content_type,
            body,
        ));
        served(code, &answer)?;
    }
}
