//! DefaultStorageClass admission: claims without a class get the default one.

use crate::common;

use common::Api;
use http::StatusCode;
use serde_json::{Value, json};

const CLASSES: &str = "/apis/storage.k8s.io/v1/storageclasses";
const CLAIMS: &str = "/api/v1/namespaces/default/persistentvolumeclaims";

fn claim(name: &str, class: Option<&str>) -> Value {
    let mut claim = json!({"metadata": {"name": name}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
    if let Some(class) = class {
        claim["spec"]["storageClassName"] = json!(class);
    }
    claim
}

async fn class_of(api: &Api, name: &str, class: Option<&str>) -> Value {
    let (code, created) = api.call("POST", CLAIMS, Some(claim(name, class))).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    created["spec"]["storageClassName"].clone()
}

#[tokio::test]
async fn claims_without_a_class_get_the_default_class() {
    let api = Api::new().await;
    assert_eq!(class_of(&api, "before", None).await, Value::Null);

    for (name, default) in [("slow", "false"), ("local-path", "true")] {
        let class = json!({"metadata": {"name": name,
            "annotations": {"storageclass.kubernetes.io/is-default-class": default}},
            "provisioner": "wasmkube.dev/local-path"});
        let (code, body) = api.call("POST", CLASSES, Some(class)).await;
        assert_eq!(code, StatusCode::CREATED, "{body}");
    }
    assert_eq!(class_of(&api, "plain", None).await, json!("local-path"));
    assert_eq!(class_of(&api, "chosen", Some("slow")).await, json!("slow"));
    // An empty class asks for no class at all.
    assert_eq!(class_of(&api, "none", Some("")).await, json!(""));

    let (code, _) = api
        .call("DELETE", &format!("{CLASSES}/local-path"), None)
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(class_of(&api, "after", None).await, Value::Null);
}
