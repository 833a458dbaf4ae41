//! Component schemas generated from the `k8s-openapi` types, with the Kubernetes extensions kubectl reads.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    DeleteOptions, ListMeta, ObjectMeta, Patch, Status,
};
use schemars::JsonSchema;
use schemars::r#gen::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use crate::resource::ResourceInfo;
use crate::typed;

const GVK: &str = "x-kubernetes-group-version-kind";
const API_VERSION: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

/// `{group, version, kind}` as the `x-kubernetes-group-version-kind` extension writes it.
pub(super) fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

/// How a list field merges: (definition, property, merge key, patch strategy, list type, list
/// map keys); `""` where a marker is absent.
type ListMarker = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
);

/// The list markers of the built-in types (upstream publishes them from its Go struct tags),
/// grouped by the package prefix of the definition names.
#[rustfmt::skip]
const LIST_MARKERS: &[(&str, &[ListMarker])] = &[
    ("io.k8s.api.core.v1.", &[
        ("PodSpec", "containers", "name", "merge", "map", &["name"]),
        ("PodSpec", "initContainers", "name", "merge", "map", &["name"]),
        ("PodSpec", "ephemeralContainers", "name", "merge", "map", &["name"]),
        ("PodSpec", "volumes", "name", "merge,retainKeys", "map", &["name"]),
        ("PodSpec", "imagePullSecrets", "name", "merge", "map", &["name"]),
        ("PodSpec", "hostAliases", "ip", "merge", "map", &["ip"]),
        ("PodSpec", "tolerations", "", "", "atomic", &[]),
        ("Container", "ports", "containerPort", "merge", "map", &["containerPort", "protocol"]),
        ("Container", "env", "name", "merge", "map", &["name"]),
        ("Container", "volumeMounts", "mountPath", "merge", "map", &["mountPath"]),
        ("Container", "volumeDevices", "devicePath", "merge", "map", &["devicePath"]),
        ("EphemeralContainer", "ports", "containerPort", "merge", "map", &["containerPort", "protocol"]),
        ("EphemeralContainer", "env", "name", "merge", "map", &["name"]),
        ("EphemeralContainer", "volumeMounts", "mountPath", "merge", "map", &["mountPath"]),
        ("EphemeralContainer", "volumeDevices", "devicePath", "merge", "map", &["devicePath"]),
        ("ServiceSpec", "ports", "port", "merge", "map", &["port", "protocol"]),
        ("PodStatus", "conditions", "type", "merge", "map", &["type"]),
        ("NodeStatus", "conditions", "type", "merge", "map", &["type"]),
        ("NodeStatus", "addresses", "type", "merge", "map", &["type"]),
        ("NamespaceStatus", "conditions", "type", "merge", "map", &["type"]),
        ("PersistentVolumeClaimStatus", "conditions", "type", "merge", "map", &["type"]),
    ]),
    ("io.k8s.api.apps.v1.", &[
        ("DeploymentStatus", "conditions", "type", "merge", "map", &["type"]),
        ("ReplicaSetStatus", "conditions", "type", "merge", "map", &["type"]),
        ("StatefulSetStatus", "conditions", "type", "merge", "map", &["type"]),
        ("DaemonSetStatus", "conditions", "type", "merge", "map", &["type"]),
    ]),
    ("io.k8s.api.batch.v1.", &[("JobStatus", "conditions", "type", "merge", "atomic", &[])]),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.", &[
        ("ObjectMeta", "ownerReferences", "uid", "merge", "map", &["uid"]),
        ("ObjectMeta", "finalizers", "", "merge", "set", &[]),
    ]),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.", &[
        ("CustomResourceDefinitionStatus", "conditions", "", "", "map", &["type"]),
    ]),
];

/// Collects the component schemas of one document.
pub(super) struct Components {
    generator: SchemaGenerator,
    /// `#/components/schemas/` or `#/definitions/`.
    prefix: &'static str,
    /// Schemas written here rather than generated (lists, custom resources).
    extra: Map<String, Value>,
    /// Definition name and GVK of every top-level kind.
    kinds: Vec<(String, Value)>,
}

impl Components {
    pub(super) fn new(prefix: &'static str) -> Self {
        let settings = SchemaSettings::openapi3().with(|s| s.definitions_path = prefix.to_string());
        Components {
            generator: settings.into_generator(),
            prefix,
            extra: Map::new(),
            kinds: Vec::new(),
        }
    }

    /// `#/components/schemas/<name>` (or the v2 form).
    pub(super) fn reference(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Adds a helper type (`Status`, `DeleteOptions`, ...) and returns its reference.
    pub(super) fn add<T: JsonSchema>(&mut self) -> String {
        self.generator.subschema_for::<T>();
        self.reference(&T::schema_name())
    }

    /// The references every resource's operations use: (`Status`, `DeleteOptions`, `Patch`).
    pub(super) fn common(&mut self) -> (String, String, String) {
        (
            self.add::<Status>(),
            self.add::<DeleteOptions>(),
            self.add::<Patch>(),
        )
    }

    /// Adds a typed kind with its GVK; returns its definition name, `None` for a kind without a type.
    fn kind(&mut self, group: &str, version: &str, kind: &str) -> Option<String> {
        let name = typed::schema_for(group, kind, &mut self.generator)?;
        self.kinds.push((name.clone(), gvk(group, version, kind)));
        Some(name)
    }

    /// Adds a typed kind and its list; returns the references of both, `None` for a kind
    /// without a type.
    pub(super) fn typed(
        &mut self,
        group: &str,
        version: &str,
        kind: &str,
    ) -> Option<(String, String)> {
        let name = self.kind(group, version, kind)?;
        let list = self.list(&name, group, version, kind);
        Some((self.reference(&name), list))
    }

    /// Adds a custom resource from its CRD's `openAPIV3Schema` (or an open object without one),
    /// with `apiVersion`, `kind` and `metadata` filled in; returns the references of it and its list.
    pub(super) fn custom(
        &mut self,
        info: &ResourceInfo,
        schema: Option<Value>,
    ) -> (String, String) {
        let mut group: Vec<&str> = info.group.split('.').collect();
        group.reverse();
        let name = format!("{}.{}.{}", group.join("."), info.version, info.kind);
        let metadata = self.add::<ObjectMeta>();
        let mut schema = match schema {
            Some(Value::Object(schema)) => schema,
            _ => Map::from_iter([(
                "x-kubernetes-preserve-unknown-fields".to_string(),
                Value::Bool(true),
            )]),
        };
        schema.entry("type").or_insert_with(|| json!("object"));
        let properties = schema.entry("properties").or_insert_with(|| json!({}));
        if let Some(properties) = properties.as_object_mut() {
            properties.insert(
                "apiVersion".into(),
                json!({"type": "string", "description": API_VERSION}),
            );
            properties.insert(
                "kind".into(),
                json!({"type": "string", "description": KIND}),
            );
            properties.insert(
                "metadata".into(),
                json!({"$ref": metadata, "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"}),
            );
        }
        self.kinds
            .push((name.clone(), gvk(&info.group, &info.version, &info.kind)));
        self.extra.insert(name.clone(), Value::Object(schema));
        let list = self.list(&name, &info.group, &info.version, &info.kind);
        (self.reference(&name), list)
    }

    /// Adds `<name>List` for a kind; returns its reference.
    fn list(&mut self, name: &str, group: &str, version: &str, kind: &str) -> String {
        let list_meta = self.add::<ListMeta>();
        let list = format!("{name}List");
        let schema = json!({
            "description": format!("{kind}List is a list of {kind} objects."),
            "type": "object",
            "required": ["items"],
            "properties": {
                "apiVersion": {"type": "string", "description": API_VERSION},
                "items": {"type": "array", "description": format!("List of {kind} objects."), "items": {"$ref": self.reference(name)}},
                "kind": {"type": "string", "description": KIND},
                "metadata": {"$ref": list_meta, "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"},
            },
            GVK: [gvk(group, version, &format!("{kind}List"))],
        });
        self.extra.insert(list.clone(), schema);
        self.reference(&list)
    }

    /// Adds `autoscaling/v1` `Scale`; returns its reference.
    pub(super) fn scale(&mut self) -> String {
        let name = self
            .kind("autoscaling", "v1", "Scale")
            .expect("Scale is in the table of typed kinds");
        self.reference(&name)
    }

    /// All schemas, with GVK and list extensions; `$ref`s with siblings become `allOf` when
    /// `ref_siblings_to_all_of` (OpenAPI v3 style; the v2 parsers only follow a bare `$ref`).
    pub(super) fn finish(mut self, ref_siblings_to_all_of: bool) -> Map<String, Value> {
        let generated = self.generator.take_definitions();
        let mut schemas: Map<String, Value> = generated
            .into_iter()
            .map(|(name, schema)| {
                let schema =
                    serde_json::to_value(schema).expect("a schemars schema serializes to JSON");
                (name, schema)
            })
            .collect();
        schemas.append(&mut self.extra);
        for (name, gvk) in self.kinds {
            if let Some(Value::Object(schema)) = schemas.get_mut(&name) {
                schema.insert(GVK.into(), Value::Array(vec![gvk]));
            }
        }
        for (package, markers) in LIST_MARKERS {
            for (definition, property, merge_key, strategy, list_type, keys) in *markers {
                let Some(Value::Object(field)) = schemas
                    .get_mut(&format!("{package}{definition}"))
                    .and_then(|schema| schema.pointer_mut(&format!("/properties/{property}")))
                else {
                    continue;
                };
                if !merge_key.is_empty() {
                    field.insert("x-kubernetes-patch-merge-key".into(), json!(merge_key));
                }
                if !strategy.is_empty() {
                    field.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
                }
                field.insert("x-kubernetes-list-type".into(), json!(list_type));
                if !keys.is_empty() {
                    field.insert("x-kubernetes-list-map-keys".into(), json!(keys));
                }
            }
        }
        if ref_siblings_to_all_of {
            for schema in schemas.values_mut() {
                ref_siblings(schema);
            }
        }
        schemas
    }
}

/// Rewrites `{"$ref": r, "description": d}` into `{"allOf": [{"$ref": r}], "description": d}`, at
/// any depth, as upstream's OpenAPI v3 documents write references that carry a description.
fn ref_siblings(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.len() > 1
                && map.get("$ref").is_some_and(Value::is_string)
                && let Some(reference) = map.remove("$ref")
                && let Some(all_of) = map
                    .entry("allOf")
                    .or_insert_with(|| json!([]))
                    .as_array_mut()
            {
                all_of.push(json!({"$ref": reference}));
            }
            map.values_mut().for_each(ref_siblings);
        }
        Value::Array(items) => items.iter_mut().for_each(ref_siblings),
        _ => {}
    }
}
