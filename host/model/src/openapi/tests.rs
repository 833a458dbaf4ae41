//! Checks of the documents against what kubectl reads from them.

use super::*;
use crate::resource::builtins;

fn registry() -> Registry {
    let mut resources = builtins();
    resources.push(ResourceInfo {
        group: "stable.example.com".into(),
        version: "v1".into(),
        kind: "CronTab".into(),
        plural: "crontabs".into(),
        singular: "crontab".into(),
        short_names: vec![],
        categories: vec![],
        namespaced: true,
        status: true,
        scale: None,
        extra_subresources: vec![],
        custom: true,
        printer_columns: vec![],
        schema: None,
    });
    Registry::new(resources)
}

fn crontab_schema(info: &ResourceInfo) -> Option<Value> {
    (info.kind == "CronTab").then(|| {
        json!({"type": "object", "properties": {"spec": {"type": "object", "description": "The schedule.",
            "properties": {"cronSpec": {"type": "string"}}}}})
    })
}

/// Every `$ref` in `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r);
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// Whether some object has a `$ref` next to other keys.
fn has_ref_siblings(value: &Value) -> bool {
    match value {
        Value::Object(map) => {
            (map.get("$ref").is_some_and(Value::is_string) && map.len() > 1)
                || map.values().any(has_ref_siblings)
        }
        Value::Array(items) => items.iter().any(has_ref_siblings),
        _ => false,
    }
}

/// kubectl's `supportsQueryParamV3`: the first PATCH operation with the GVK decides.
fn supports_query_param(doc: &Value, gvk: &Value, param: &str) -> Option<bool> {
    doc["paths"].as_object()?.values().find_map(|path| {
        let patch = path.get("patch")?;
        (patch["x-kubernetes-group-version-kind"] == *gvk).then(|| {
            patch["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["name"] == param && p["in"] == "query"))
        })
    })
}

#[test]
fn apps_v1_patch_has_field_validation() {
    let doc = v3_group_version(&registry(), "apps", "v1").expect("apps/v1 served");
    assert_eq!(doc["openapi"], "3.0.0");
    let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        json!({"group": "apps", "version": "v1", "kind": "Deployment"})
    );
    assert_eq!(patch["x-kubernetes-action"], "patch");
    let names: Vec<&Value> = patch["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .map(|p| &p["name"])
        .collect();
    for name in [
        "fieldValidation",
        "dryRun",
        "fieldManager",
        "force",
        "name",
        "namespace",
    ] {
        assert!(names.contains(&&json!(name)), "{name} in {names:?}");
    }
    assert!(
        patch["requestBody"]["content"]
            .get("application/strategic-merge-patch+json")
            .is_some()
    );
    let scale =
        &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"];
    assert_eq!(
        scale["x-kubernetes-group-version-kind"]["group"],
        "autoscaling"
    );
    assert!(doc["paths"]["/apis/apps/v1/deployments"]["get"].is_object());
    assert!(
        doc["paths"]
            .get("/apis/apps/v1/namespaces/{namespace}/controllerrevisions/{name}/status")
            .is_none()
    );
}

#[test]
fn every_patch_operation_supports_field_validation() {
    let registry = registry();
    let docs = v3_documents(&registry, &crontab_schema);
    for info in registry.all() {
        let doc = &docs.group_versions[&paths::group_version_path(&info.group, &info.version)];
        let gvk = json!({"group": info.group, "version": info.version, "kind": info.kind});
        assert_eq!(
            supports_query_param(doc, &gvk, "fieldValidation"),
            Some(true),
            "{gvk}"
        );
        for path in doc["paths"].as_object().expect("paths").values() {
            for op in ["put", "post", "patch"]
                .iter()
                .filter_map(|verb| path.get(verb))
            {
                assert!(
                    op["parameters"]
                        .as_array()
                        .expect("parameters")
                        .iter()
                        .any(|p| p["name"] == "fieldValidation")
                );
            }
        }
    }
    let v2 = v2(&registry);
    let gvk = json!({"group": "", "version": "v1", "kind": "Namespace"});
    assert_eq!(
        supports_query_param(&v2, &gvk, "fieldValidation"),
        Some(true)
    );
}

#[test]
fn deployment_schema_resolves_to_described_fields() {
    let doc = v3_group_version(&registry(), "apps", "v1").expect("apps/v1 served");
    let schemas = &doc["components"]["schemas"];
    let deployment = &schemas["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        deployment["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
    );
    let spec = &deployment["properties"]["spec"];
    assert!(spec["description"].as_str().is_some_and(|d| !d.is_empty()));
    assert_eq!(
        spec["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
    );
    let replicas = &schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["replicas"];
    assert!(
        replicas["description"]
            .as_str()
            .is_some_and(|d| d.contains("desired pods"))
    );
    assert_eq!(
        schemas["io.k8s.api.apps.v1.DeploymentList"]["x-kubernetes-group-version-kind"][0]["kind"],
        "DeploymentList"
    );
    assert_eq!(
        schemas["io.k8s.api.autoscaling.v1.Scale"]["x-kubernetes-group-version-kind"][0]["group"],
        "autoscaling"
    );
    let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
    let ports = &schemas["io.k8s.api.core.v1.Container"]["properties"]["ports"];
    assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
}

#[test]
fn explain_finds_the_kind_of_a_resource() {
    // kubectl explain takes the GVK from the first operation on the resource's paths, then the
    // component whose GVK list contains exactly that map.
    let doc = v3_group_version(&registry(), "", "v1").expect("core served");
    let gvk = &doc["paths"]["/api/v1/pods"]["get"]["x-kubernetes-group-version-kind"];
    assert_eq!(*gvk, json!({"group": "", "version": "v1", "kind": "Pod"}));
    let found: Vec<&String> = doc["components"]["schemas"]
        .as_object()
        .expect("schemas")
        .iter()
        .filter(|(_, s)| {
            s["x-kubernetes-group-version-kind"]
                .as_array()
                .is_some_and(|l| l.contains(gvk))
        })
        .map(|(name, _)| name)
        .collect();
    assert_eq!(found, vec!["io.k8s.api.core.v1.Pod"]);
    assert!(doc["paths"].get("/api/v1/namespaces/{name}").is_some());
}

#[test]
fn no_dangling_references_and_no_ref_siblings_in_v3() {
    let registry = registry();
    let docs = v3_documents(&registry, &crontab_schema);
    assert!(docs.group_versions.len() >= 9);
    for (path, doc) in &docs.group_versions {
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let mut found = Vec::new();
        refs(doc, &mut found);
        for r in found {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{path}: {r}"));
            assert!(schemas.contains_key(name), "{path}: {r} missing");
        }
        assert!(!has_ref_siblings(doc), "{path}");
    }
    let v2 = v2(&registry);
    let definitions = v2["definitions"].as_object().expect("definitions");
    let mut found = Vec::new();
    refs(&v2, &mut found);
    for r in found {
        let name = r
            .strip_prefix("#/definitions/")
            .unwrap_or_else(|| panic!("{r}"));
        assert!(definitions.contains_key(name), "{r} missing");
    }
    assert!(
        has_ref_siblings(&v2),
        "v2 keeps upstream's `$ref` with a description"
    );
    assert!(definitions["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"].is_array());
    assert!(
        v2["paths"]
            .get("/apis/stable.example.com/v1/namespaces/{namespace}/crontabs")
            .is_none()
    );
}

#[test]
fn root_lists_group_versions_with_hashed_urls() {
    let root = v3_root(&registry());
    let core = root["paths"]["api/v1"]["serverRelativeURL"]
        .as_str()
        .expect("api/v1");
    assert!(core.starts_with("/openapi/v3/api/v1?hash="));
    let apps = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .expect("apps/v1");
    assert!(apps.starts_with("/openapi/v3/apis/apps/v1?hash="));
    assert_ne!(core.split('=').nth(1), apps.split('=').nth(1));
    assert_eq!(root, v3_root(&registry()), "stable");
    assert!(root["paths"]["apis/stable.example.com/v1"].is_object());
}

#[test]
fn custom_resources_embed_their_schema() {
    let doc = v3_group_version_with(&registry(), "stable.example.com", "v1", &crontab_schema)
        .expect("served");
    let schema = &doc["components"]["schemas"]["com.example.stable.v1.CronTab"];
    assert_eq!(
        schema["x-kubernetes-group-version-kind"],
        json!([{"group": "stable.example.com", "version": "v1", "kind": "CronTab"}])
    );
    assert_eq!(schema["properties"]["spec"]["description"], "The schedule.");
    assert_eq!(
        schema["properties"]["metadata"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    let patch = &doc["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"]
        ["patch"];
    let content = patch["requestBody"]["content"]
        .as_object()
        .expect("content");
    assert!(content.contains_key("application/merge-patch+json"));
    assert!(!content.contains_key("application/strategic-merge-patch+json"));
    assert!(
        doc["paths"]
            .get("/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}/status")
            .is_some()
    );
    let open = v3_group_version(&registry(), "stable.example.com", "v1").expect("served");
    assert_eq!(
        open["components"]["schemas"]["com.example.stable.v1.CronTab"]["x-kubernetes-preserve-unknown-fields"],
        true
    );
    assert!(v3_group_version(&registry(), "nope", "v1").is_none());
}
