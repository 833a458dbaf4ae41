//! Discovery: `/version`, `/api`, `/apis` (legacy and aggregated v2), and the per-group resource lists.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Value, json};
use wasmkube_model::resource::{Registry, ResourceInfo};

use crate::server::Server;

const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

pub async fn version() -> axum::Json<Value> {
    axum::Json(json!({
        "major": "1",
        "minor": "32",
        "gitVersion": concat!("v1.32.0-wasmkube.", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": "linux/amd64",
    }))
}

/// Whether the client asked for aggregated discovery (kubectl does, first).
fn wants_aggregated(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(http::header::ACCEPT)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=APIGroupDiscoveryList") && first.contains("v=v2"))
}

fn aggregated(body: Value) -> Response {
    let mut response = axum::Json(body).into_response();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(AGGREGATED),
    );
    response
}

fn kind_ref(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

/// One resource in the aggregated format.
fn discovery_resource(info: &ResourceInfo) -> Value {
    let subresources: Vec<Value> = info
        .subresources()
        .into_iter()
        .map(|sub| {
            let (kind, verbs): (Value, &[&str]) = match sub {
                "scale" => (
                    kind_ref("autoscaling", "v1", "Scale"),
                    &["get", "patch", "update"],
                ),
                "status" => (
                    kind_ref(&info.group, &info.version, &info.kind),
                    &["get", "patch", "update"],
                ),
                "binding" => (kind_ref("", "v1", "Binding"), &["create"]),
                // `pods/log` and `plugins/log`: text, named after their object's kind.
                "log" => (kind_ref(&info.group, &info.version, &info.kind), &["get"]),
                "eviction" => (kind_ref("policy", "v1", "Eviction"), &["create"]),
                "token" => (
                    kind_ref("authentication.k8s.io", "v1", "TokenRequest"),
                    &["create"],
                ),
                "attach" => (kind_ref("", "v1", "PodAttachOptions"), &["create", "get"]),
                "exec" => (kind_ref("", "v1", "PodExecOptions"), &["create", "get"]),
                "portforward" => (
                    kind_ref("", "v1", "PodPortForwardOptions"),
                    &["create", "get"],
                ),
                _ => (kind_ref("", "v1", "Pod"), &["get"]),
            };
            json!({"subresource": sub, "responseKind": kind, "verbs": verbs})
        })
        .collect();
    let mut resource = json!({
        "resource": info.plural,
        "responseKind": kind_ref(&info.group, &info.version, &info.kind),
        "scope": if info.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": info.singular,
        "verbs": info.verbs(),
    });
    if !info.short_names.is_empty() {
        resource["shortNames"] = json!(info.short_names);
    }
    if !info.categories.is_empty() {
        resource["categories"] = json!(info.categories);
    }
    if !subresources.is_empty() {
        resource["subresources"] = json!(subresources);
    }
    resource
}

fn discovery_list(registry: &Registry, core: bool) -> Value {
    let items: Vec<Value> = registry
        .groups()
        .into_iter()
        .filter(|(group, _)| group.is_empty() == core)
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| json!({"version": v, "resources": registry.in_group_version(&group, v).map(|r| discovery_resource(r)).collect::<Vec<_>>(), "freshness": "Current"}))
                .collect();
            json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

pub async fn api(State(server): State<Arc<Server>>, headers: HeaderMap) -> Response {
    if wants_aggregated(&headers) {
        return aggregated(discovery_list(&server.registry(), true));
    }
    axum::Json(json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]})).into_response()
}

fn group_json(group: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": versions, "preferredVersion": versions[0]})
}

pub async fn apis(State(server): State<Arc<Server>>, headers: HeaderMap) -> Response {
    let registry = server.registry();
    if wants_aggregated(&headers) {
        return aggregated(discovery_list(&registry, false));
    }
    let groups: Vec<Value> = registry
        .groups()
        .iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, v)| group_json(g, v))
        .collect();
    axum::Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        .into_response()
}

/// `APIResourceList` of one group version: resources and their subresources.
fn resource_list(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for info in registry.in_group_version(group, version) {
        let mut r = json!({
            "name": info.plural, "singularName": info.singular, "namespaced": info.namespaced,
            "kind": info.kind, "verbs": info.verbs(),
        });
        if !info.short_names.is_empty() {
            r["shortNames"] = json!(info.short_names);
        }
        if !info.categories.is_empty() {
            r["categories"] = json!(info.categories);
        }
        resources.push(r);
        for sub in info.subresources() {
            let sub_resource = discovery_resource(info)["subresources"]
                .as_array()
                .and_then(|s| s.iter().find(|x| x["subresource"] == sub).cloned())
                .unwrap_or_default();
            resources.push(json!({
                "name": format!("{}/{sub}", info.plural), "singularName": "", "namespaced": info.namespaced,
                "group": sub_resource["responseKind"]["group"], "version": sub_resource["responseKind"]["version"],
                "kind": sub_resource["responseKind"]["kind"], "verbs": sub_resource["verbs"],
            }));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
    )
}

/// Answers `/api/v1`, `/apis/{group}` and `/apis/{group}/{version}`; `None` for resource paths.
pub fn group_paths(server: &Server, path: &str) -> Option<Response> {
    let registry = server.registry();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let body = match segments.as_slice() {
        ["api", version] => resource_list(&registry, "", version),
        ["apis", group] => registry
            .groups()
            .iter()
            .find(|(g, _)| g == group)
            .map(|(g, v)| {
                let mut body = group_json(g, v);
                body["kind"] = json!("APIGroup");
                body["apiVersion"] = json!("v1");
                body
            }),
        ["apis", group, version] => resource_list(&registry, group, version),
        _ => return None,
    };
    Some(match body {
        Some(body) => axum::Json(body).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(crate::error::ApiError::UnknownResource.status()),
        )
            .into_response(),
    })
}
