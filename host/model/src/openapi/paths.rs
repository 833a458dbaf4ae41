//! Paths and operations of the served resources, with the query parameters kubectl looks for.

use serde_json::{Map, Value, json};

use super::schemas::gvk;
use crate::resource::ResourceInfo;

/// Which OpenAPI version the operations are written for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    /// Swagger 2.0: typed parameters, a `body` parameter, `consumes`.
    V2,
    /// OpenAPI 3.0: parameter `schema`s, `requestBody` and response `content`.
    V3,
}

/// The component references the operations of one resource use.
pub(super) struct Refs {
    pub kind: String,
    pub list: String,
    pub status: String,
    pub delete_options: String,
    pub patch: String,
    /// `autoscaling/v1` `Scale`, when the resource has the scale subresource.
    pub scale: Option<String>,
}

const JSON_PATCH: &str = "application/json-patch+json";
const MERGE_PATCH: &str = "application/merge-patch+json";
const STRATEGIC_MERGE_PATCH: &str = "application/strategic-merge-patch+json";
const APPLY_PATCH: &str = "application/apply-patch+yaml";

/// Query parameters: (name, type, description).
type Query = (&'static str, &'static str, &'static str);

const PRETTY: Query = (
    "pretty",
    "string",
    "If 'true', then the output is pretty printed.",
);
const WRITE: &[Query] = &[
    (
        "dryRun",
        "string",
        "When present, indicates that modifications should not be persisted. The only valid value is All: all dry run stages are processed.",
    ),
    (
        "fieldManager",
        "string",
        "A name associated with the actor or entity that is making these changes. At most 128 printable characters.",
    ),
    (
        "fieldValidation",
        "string",
        "How the server treats fields of the object it does not know or that are duplicated: Ignore, Warn (the default) or Strict.",
    ),
];
const FORCE: Query = (
    "force",
    "boolean",
    "Force is going to \"force\" Apply requests: the changes are made even where other managers own the fields. Must be unset for non-apply patch requests.",
);
const LIST: &[Query] = &[
    (
        "allowWatchBookmarks",
        "boolean",
        "Requests watch events with type \"BOOKMARK\"; servers may ignore it.",
    ),
    (
        "continue",
        "string",
        "The continue token of a previous paginated list call, to retrieve the next page.",
    ),
    (
        "fieldSelector",
        "string",
        "A selector restricting the returned objects by their fields. Defaults to everything.",
    ),
    (
        "labelSelector",
        "string",
        "A selector restricting the returned objects by their labels. Defaults to everything.",
    ),
    (
        "limit",
        "integer",
        "The maximum number of objects to return; more may be fetched with the continue token.",
    ),
    (
        "resourceVersion",
        "string",
        "Constrains which resource versions the request may be served from.",
    ),
    (
        "resourceVersionMatch",
        "string",
        "How resourceVersion is applied to list calls: Exact or NotOlderThan.",
    ),
    (
        "sendInitialEvents",
        "boolean",
        "With watch=true, starts the watch stream with synthetic events for the current state of the objects.",
    ),
    (
        "timeoutSeconds",
        "integer",
        "Timeout for the list/watch call, regardless of activity.",
    ),
    (
        "watch",
        "boolean",
        "Watch for changes to the described resources and return them as a stream of events.",
    ),
];
const DELETE: &[Query] = &[
    (
        "dryRun",
        "string",
        "When present, indicates that modifications should not be persisted. The only valid value is All: all dry run stages are processed.",
    ),
    (
        "gracePeriodSeconds",
        "integer",
        "The duration in seconds before the object should be deleted; zero means delete immediately.",
    ),
    (
        "orphanDependents",
        "boolean",
        "Deprecated: use propagationPolicy. Whether dependent objects should be orphaned.",
    ),
    (
        "propagationPolicy",
        "string",
        "Whether and how garbage collection is performed: Orphan, Background or Foreground.",
    ),
];

/// `api/v1` or `apis/<group>/<version>`, as paths and the v3 root name group versions.
pub(super) fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Adds the paths of one resource: its collection, item, `status` and `scale` paths, and the
/// all-namespaces list of a namespaced resource.
pub(super) fn add_resource(
    paths: &mut Map<String, Value>,
    dialect: Dialect,
    info: &ResourceInfo,
    refs: &Refs,
) {
    let ops = Ops {
        dialect,
        info,
        refs,
    };
    let base = format!("/{}", group_version_path(&info.group, &info.version));
    let collection = if info.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", info.plural)
    } else {
        format!("{base}/{}", info.plural)
    };
    let item = format!("{collection}/{{name}}");
    let kind_gvk = gvk(&info.group, &info.version, &info.kind);
    // Strategic merge patch only where the server knows the kind's merge keys.
    let patch_types: &[&str] =
        if info.custom || crate::patch::schema_for(&info.group, &info.kind).is_none() {
            &[JSON_PATCH, MERGE_PATCH, APPLY_PATCH]
        } else {
            &[JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH]
        };

    paths.insert(
        collection.clone(),
        json!({
            "get": ops.op("list", "list", "", &kind_gvk, false, &[LIST, &[PRETTY]], None, &refs.list),
            "post": ops.op("post", "create", "", &kind_gvk, false, &[WRITE, &[PRETTY]], Some((&["*/*"], &refs.kind)), &refs.kind),
            "delete": ops.op("deletecollection", "deletecollection", "", &kind_gvk, false, &[LIST, DELETE, &[PRETTY]], Some((&["*/*"], &refs.delete_options)), &refs.status),
        }),
    );
    paths.insert(
        item.clone(),
        json!({
            "get": ops.op("get", "read", "", &kind_gvk, true, &[&[PRETTY]], None, &refs.kind),
            "put": ops.op("put", "replace", "", &kind_gvk, true, &[WRITE, &[PRETTY]], Some((&["*/*"], &refs.kind)), &refs.kind),
            "patch": ops.op("patch", "patch", "", &kind_gvk, true, &[WRITE, &[FORCE, PRETTY]], Some((patch_types, &refs.patch)), &refs.kind),
            "delete": ops.op("delete", "delete", "", &kind_gvk, true, &[DELETE, &[PRETTY]], Some((&["*/*"], &refs.delete_options)), &refs.status),
        }),
    );
    if info.status {
        paths.insert(
            format!("{item}/status"),
            ops.subresource("Status", &kind_gvk, &refs.kind, patch_types),
        );
    }
    if let Some(scale) = &refs.scale {
        let scale_gvk = gvk("autoscaling", "v1", "Scale");
        paths.insert(
            format!("{item}/scale"),
            ops.subresource("Scale", &scale_gvk, scale, patch_types),
        );
    }
    if info.namespaced {
        let list = ops.op(
            "list",
            "list",
            "ForAllNamespaces",
            &kind_gvk,
            false,
            &[LIST, &[PRETTY]],
            None,
            &refs.list,
        );
        paths.insert(format!("{base}/{}", info.plural), json!({ "get": list }));
    }
}

/// Writes the operations of one resource.
struct Ops<'a> {
    dialect: Dialect,
    info: &'a ResourceInfo,
    refs: &'a Refs,
}

impl Ops<'_> {
    /// The `get`, `put` and `patch` of a `status` or `scale` subresource.
    fn subresource(&self, suffix: &str, gvk: &Value, schema: &str, patch_types: &[&str]) -> Value {
        json!({
            "get": self.op("get", "read", suffix, gvk, true, &[&[PRETTY]], None, schema),
            "put": self.op("put", "replace", suffix, gvk, true, &[WRITE, &[PRETTY]], Some((&["*/*"], schema)), schema),
            "patch": self.op("patch", "patch", suffix, gvk, true, &[WRITE, &[FORCE, PRETTY]], Some((patch_types, &self.refs.patch)), schema),
        })
    }

    /// One operation. `action` is its `x-kubernetes-action`, `verb` starts its `operationId`;
    /// `body` gives the accepted content types and the schema of the request body.
    #[allow(clippy::too_many_arguments)]
    fn op(
        &self,
        action: &str,
        verb: &str,
        suffix: &str,
        gvk: &Value,
        item: bool,
        queries: &[&[Query]],
        body: Option<(&[&str], &str)>,
        response: &str,
    ) -> Value {
        let info = self.info;
        let namespaced = info.namespaced && suffix != "ForAllNamespaces";
        let scope = if namespaced { "Namespaced" } else { "" };
        let mut op = Map::new();
        op.insert(
            "description".into(),
            json!(format!("{verb} {}{suffix}", info.kind)),
        );
        op.insert(
            "operationId".into(),
            json!(format!(
                "{verb}{}{scope}{}{suffix}",
                operation_group(info),
                info.kind
            )),
        );
        let mut parameters = Vec::new();
        if item {
            parameters.push(self.parameter(
                "name",
                "path",
                "string",
                &format!("name of the {}", info.kind),
            ));
        }
        if namespaced {
            parameters.push(self.parameter(
                "namespace",
                "path",
                "string",
                "object name and auth scope, such as for teams and projects",
            ));
        }
        let mut seen = Vec::new();
        for (name, ty, description) in queries.iter().flat_map(|q| q.iter()) {
            if !seen.contains(name) {
                seen.push(name);
                parameters.push(self.parameter(name, "query", ty, description));
            }
        }
        let created = action == "post";
        match (self.dialect, body) {
            (Dialect::V3, Some((types, schema))) => {
                let content: Map<String, Value> = types
                    .iter()
                    .map(|t| (t.to_string(), json!({"schema": {"$ref": schema}})))
                    .collect();
                op.insert(
                    "requestBody".into(),
                    json!({"content": content, "required": true}),
                );
            }
            (Dialect::V2, Some((types, schema))) => {
                parameters.push(json!({"name": "body", "in": "body", "required": true, "schema": {"$ref": schema}}));
                op.insert("consumes".into(), json!(types));
            }
            (_, None) => {}
        }
        op.insert("parameters".into(), Value::Array(parameters));
        let mut responses = Map::new();
        for (code, description) in [("200", "OK"), ("201", "Created"), ("202", "Accepted")] {
            if code == "200" || created {
                responses.insert(code.into(), self.response(description, response));
            }
        }
        responses.insert("401".into(), json!({"description": "Unauthorized"}));
        op.insert("responses".into(), Value::Object(responses));
        if self.dialect == Dialect::V2 {
            op.insert(
                "produces".into(),
                json!(["application/json", "application/yaml"]),
            );
            op.insert("schemes".into(), json!(["https"]));
        }
        op.insert("x-kubernetes-action".into(), json!(action));
        op.insert("x-kubernetes-group-version-kind".into(), gvk.clone());
        Value::Object(op)
    }

    fn parameter(&self, name: &str, location: &str, ty: &str, description: &str) -> Value {
        let mut parameter = json!({"name": name, "in": location, "description": description});
        if location == "path" {
            parameter["required"] = json!(true);
        }
        match self.dialect {
            Dialect::V2 => {
                parameter["type"] = json!(ty);
                parameter["uniqueItems"] = json!(true);
            }
            Dialect::V3 => parameter["schema"] = json!({"type": ty, "uniqueItems": true}),
        }
        parameter
    }

    fn response(&self, description: &str, schema: &str) -> Value {
        match self.dialect {
            Dialect::V2 => json!({"description": description, "schema": {"$ref": schema}}),
            Dialect::V3 => json!({
                "description": description,
                "content": {
                    "application/json": {"schema": {"$ref": schema}},
                    "application/yaml": {"schema": {"$ref": schema}},
                },
            }),
        }
    }
}

/// The group and version part of an `operationId`, as upstream writes it: `CoreV1`, `AppsV1`,
/// `StorageV1` (for `storage.k8s.io`), `ComExampleStableV1` (for `stable.example.com`).
fn operation_group(info: &ResourceInfo) -> String {
    let group = if info.group.is_empty() {
        "core"
    } else {
        info.group.strip_suffix(".k8s.io").unwrap_or(&info.group)
    };
    let mut parts: Vec<&str> = group.split(['.', '-']).collect();
    if group.contains('.') {
        parts.reverse();
    }
    parts.push(&info.version);
    parts
        .iter()
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_uppercase().chain(chars).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}
