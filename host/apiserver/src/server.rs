//! The shared state of every request: the objects in the store, the resources served (built-ins and CRDs), metrics and cluster settings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde_json::Value;
use wasmkube_model::resource::{PrinterColumn, Registry, ResourceInfo, ScalePaths, builtins};
use wasmkube_store::Store;

use crate::config::{ClusterConfig, ServiceRange};
use crate::error::ApiError;
use crate::metrics::{self, Metrics};
use crate::objects::Objects;
use crate::plugin_logs::PluginLogs;

/// The shared state of every request.
pub struct Server {
    pub objects: Objects,
    registry: ArcSwap<Registry>,
    pub metrics: Metrics,
    /// The stored CRDs, as of the last registry refresh.
    pub(crate) crds: ArcSwap<Vec<Value>>,
    /// Generated OpenAPI documents by path, dropped when the registry changes.
    pub(crate) openapi_cache: Mutex<HashMap<String, Arc<Value>>>,
    /// `/openapi/v2` in protobuf, dropped with the rest of the cache.
    pub(crate) openapi_v2_protobuf: Mutex<Option<Arc<Vec<u8>>>>,
    /// Where Services get their cluster IPs.
    pub service_range: ServiceRange,
    /// The pod network, node health timing and default tolerations.
    pub cluster: ClusterConfig,
    /// Each plugin's recent log lines, written by the hosts that run plugins, read by
    /// `plugins/NAME/log`.
    pub plugin_logs: PluginLogs,
    /// Authentication and RBAC; `None` disables both (tests).
    pub(crate) auth: Option<crate::auth::Auth>,
}

impl Server {
    /// A server over `store`, serving the built-ins and every CRD already stored, with the
    /// default [`ClusterConfig`].
    pub async fn new(store: Arc<dyn Store>, token: Option<String>) -> Result<Arc<Self>, ApiError> {
        Self::with_config(store, token, ClusterConfig::default()).await
    }

    /// A server over `store` for the cluster `cluster` describes.
    pub async fn with_config(
        store: Arc<dyn Store>,
        token: Option<String>,
        cluster: ClusterConfig,
    ) -> Result<Arc<Self>, ApiError> {
        let metrics = Metrics::default();
        let server = Arc::new(Server {
            objects: Objects::new(metrics::MeteredStore::wrap(store, &metrics)),
            registry: ArcSwap::from_pointee(Registry::new(builtins())),
            metrics,
            crds: ArcSwap::from_pointee(Vec::new()),
            openapi_cache: Mutex::new(HashMap::new()),
            openapi_v2_protobuf: Mutex::new(None),
            service_range: cluster.service_range,
            cluster,
            plugin_logs: PluginLogs::default(),
            auth: token.map(crate::auth::Auth::new),
        });
        server.refresh_registry().await?;
        crate::auth::policy::refresh(&server).await?;
        Ok(server)
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.registry.load_full()
    }

    /// What follows a write of an object of `info`: a new registry after a CRD write, a new
    /// RBAC index after a Role, ClusterRole or binding write.
    pub async fn written(&self, info: &ResourceInfo) -> Result<(), ApiError> {
        if info.kind == "CustomResourceDefinition" {
            self.refresh_registry().await?;
        }
        if crate::auth::policy::is_rbac(info) {
            crate::auth::policy::refresh(self).await?;
        }
        Ok(())
    }

    /// Rebuilds the registry from the built-ins and the stored CRDs (after any CRD write).
    pub async fn refresh_registry(&self) -> Result<(), ApiError> {
        let registry = self.registry();
        let crd_info = registry
            .by_kind("apiextensions.k8s.io/v1", "CustomResourceDefinition")
            .cloned()
            .ok_or_else(|| ApiError::Internal("CRDs are not served".into()))?;
        let crds = self
            .objects
            .list(&crd_info, None, None, None, None, |_| true)
            .await?;
        let mut resources = builtins();
        resources.extend(crds.items.iter().flat_map(crd_resources));
        self.registry.store(Arc::new(Registry::new(resources)));
        self.crds.store(Arc::new(crds.items));
        if let Ok(mut cache) = self.openapi_cache.lock() {
            cache.clear();
        }
        if let Ok(mut cache) = self.openapi_v2_protobuf.lock() {
            *cache = None;
        }
        Ok(())
    }
}

/// The resources a CRD serves: one per served version.
fn crd_resources(crd: &Value) -> Vec<ResourceInfo> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let list = |v: &Value| {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(String::from))
            .collect::<Vec<_>>()
    };
    spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["served"] != false)
        .map(|v| {
            let scale = &v["subresources"]["scale"];
            ResourceInfo {
                group: text(&spec["group"]),
                version: text(&v["name"]),
                kind: text(&names["kind"]),
                plural: text(&names["plural"]),
                singular: match text(&names["singular"]) {
                    s if s.is_empty() => text(&names["kind"]).to_lowercase(),
                    s => s,
                },
                short_names: list(&names["shortNames"]),
                categories: list(&names["categories"]),
                namespaced: spec["scope"] != "Cluster",
                status: v["subresources"]["status"].is_object(),
                scale: scale.is_object().then(|| ScalePaths {
                    spec_replicas: text(&scale["specReplicasPath"]),
                    status_replicas: text(&scale["statusReplicasPath"]),
                    label_selector: scale["labelSelectorPath"].as_str().map(String::from),
                }),
                extra_subresources: Vec::new(),
                custom: true,
                schema: v.pointer("/schema/openAPIV3Schema").cloned(),
                printer_columns: v["additionalPrinterColumns"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| PrinterColumn {
                        name: text(&c["name"]),
                        kind: text(&c["type"]),
                        json_path: text(&c["jsonPath"]),
                        priority: c["priority"].as_i64().unwrap_or(0),
                        description: text(&c["description"]),
                    })
                    .collect(),
            }
        })
        .collect()
}
