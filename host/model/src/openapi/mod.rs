//! The OpenAPI documents kubectl reads (v3 per group version, and v2), generated from the resource types.

mod paths;
mod protobuf;
mod schemas;

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::resource::{Registry, ResourceInfo};
use paths::{Dialect, Refs};
use schemas::Components;

pub use protobuf::v2_protobuf;

/// Gives the `openAPIV3Schema` of a custom resource's version (from its CRD), if it has one.
pub type CustomSchemas<'a> = dyn Fn(&ResourceInfo) -> Option<Value> + 'a;

/// Every OpenAPI v3 document of a registry.
#[derive(Clone, Debug, PartialEq)]
pub struct V3Documents {
    /// `/openapi/v3`: each group version with the URL of its document.
    pub root: Value,
    /// The document of each group version, by its root entry (`api/v1`, `apis/apps/v1`).
    pub group_versions: BTreeMap<String, Value>,
}

const INFO_TITLE: &str = "Kubernetes";
const INFO_VERSION: &str = "v1.32.0";

/// The `/openapi/v3` root of the built-in and custom resources, custom ones without schemas.
pub fn v3_root(registry: &Registry) -> Value {
    v3_documents(registry, &|_| None).root
}

/// The `/openapi/v3` root and every group version document, built in one pass. A document's URL
/// carries a hash of its content, so clients cache it until it changes.
pub fn v3_documents(registry: &Registry, custom_schemas: &CustomSchemas<'_>) -> V3Documents {
    let mut root = Map::new();
    let mut group_versions = BTreeMap::new();
    for (group, versions) in registry.groups() {
        for version in versions {
            let Some(document) = v3_group_version_with(registry, &group, &version, custom_schemas)
            else {
                continue;
            };
            let path = paths::group_version_path(&group, &version);
            let hash = fnv1a(document.to_string().as_bytes());
            root.insert(
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash:016X}")}),
            );
            group_versions.insert(path, document);
        }
    }
    V3Documents {
        root: json!({ "paths": root }),
        group_versions,
    }
}

/// The OpenAPI v3 document of one group version (`""`/`v1` for the core group); `None` when
/// nothing is served there. Custom resources get an open schema.
pub fn v3_group_version(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    v3_group_version_with(registry, group, version, &|_| None)
}

/// Like [`v3_group_version`], embedding each custom resource's schema from `custom_schemas`.
pub fn v3_group_version_with(
    registry: &Registry,
    group: &str,
    version: &str,
    custom_schemas: &CustomSchemas<'_>,
) -> Option<Value> {
    let mut components = Components::new("#/components/schemas/");
    let paths = add_resources(
        &mut components,
        Dialect::V3,
        registry
            .in_group_version(group, version)
            .map(|info| info.as_ref()),
        custom_schemas,
    )?;
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": INFO_TITLE, "version": INFO_VERSION},
        "paths": paths,
        "components": {"schemas": components.finish(true)},
    }))
}

/// The Swagger 2.0 document (`/openapi/v2`) of the built-in resources. References keep their
/// sibling descriptions, as upstream's v2 document does: kubectl's v2 parser follows only a bare
/// `$ref` and ignores `allOf`.
pub fn v2(registry: &Registry) -> Value {
    let mut components = Components::new("#/definitions/");
    let builtins = registry
        .all()
        .iter()
        .map(|info| info.as_ref())
        .filter(|info| !info.custom);
    let paths =
        add_resources(&mut components, Dialect::V2, builtins, &|_| None).unwrap_or_default();
    json!({
        "swagger": "2.0",
        "info": {"title": INFO_TITLE, "version": INFO_VERSION},
        "paths": paths,
        "definitions": components.finish(false),
    })
}

/// Adds the schemas and paths of `resources`; `None` when there are none.
fn add_resources<'a>(
    components: &mut Components,
    dialect: Dialect,
    resources: impl Iterator<Item = &'a ResourceInfo>,
    custom_schemas: &CustomSchemas<'_>,
) -> Option<Map<String, Value>> {
    let (status, delete_options, patch) = components.common();
    let mut paths = Map::new();
    let mut any = false;
    for info in resources {
        any = true;
        let (kind, list) = if info.custom {
            components.custom(info, custom_schemas(info))
        } else {
            match components.typed(&info.group, &info.version, &info.kind) {
                Some(refs) => refs,
                // A built-in without a k8s-openapi type (the project's own kinds) publishes the
                // structural schema it is served with.
                None => components.custom(info, info.schema.clone()),
            }
        };
        let scale = info.scale.as_ref().map(|_| components.scale());
        let refs = Refs {
            kind,
            list,
            status: status.clone(),
            delete_options: delete_options.clone(),
            patch: patch.clone(),
            scale,
        };
        paths::add_resource(&mut paths, dialect, info, &refs);
    }
    any.then_some(paths)
}

/// 64-bit FNV-1a: a stable digest of a document for its URL (not a security boundary).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests;
