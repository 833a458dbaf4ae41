//! Property test of the decode → default → validate path: no input panics it, whatever its shape.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use wasmkube_model::resource::{Registry, builtins};
use wasmkube_model::{defaults, typed, validation};

/// Arbitrary JSON, biased towards the field names objects really have so the typed decoders
/// get past the first field often.
fn arb_json() -> impl Strategy<Value = Value> {
    let names = prop::sample::select(vec![
        "metadata",
        "name",
        "spec",
        "status",
        "replicas",
        "selector",
        "matchLabels",
        "template",
        "containers",
        "image",
        "ports",
        "containerPort",
        "labels",
        "data",
        "type",
        "x",
        "protocol",
        "volumes",
        "volumeMounts",
        "env",
        "value",
        "strategy",
        "rollingUpdate",
        "maxSurge",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-z0-9%./:-]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((names.clone(), inner), 0..6).prop_map(|kvs| Value::Object(
                kvs.into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect::<Map<_, _>>()
            )),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_kind_survives_arbitrary_bodies(body in arb_json(), kind_index in 0usize..64) {
        let registry = Registry::new(builtins());
        let info = &registry.all()[kind_index % registry.all().len()];
        let mut obj = match body {
            Value::Object(mut map) => {
                map.insert("apiVersion".into(), json!(info.api_version()));
                map.insert("kind".into(), json!(info.kind));
                Value::Object(map)
            }
            other => json!({"apiVersion": info.api_version(), "kind": info.kind, "spec": other}),
        };
        if let Some(Ok(decoded)) = typed::decode(&info.group, &info.version, &info.kind, &obj) {
            obj = decoded.object;
            defaults::apply_defaults(&info.group, &info.kind, &mut obj);
            let old = obj.clone();
            let _ = validation::validate(info, &obj, None);
            let _ = validation::validate(info, &obj, Some(&old));
        }
    }
}
