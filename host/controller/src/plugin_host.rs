//! The host API a plugin sees, backed by the apiserver: reads from the shared informers, writes through validation, confined to what the plugin declared.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use serde_json::Value;
use wasmkube_apiserver::Server;
use wasmkube_apiserver::error::ApiError as ServerError;
use wasmkube_apiserver::registry::{
    DeleteOptions, Update, WriteOptions, apply_patch, create_object, delete_object, events,
    update_with,
};
use wasmkube_model::meta::ResourceExt;
use wasmkube_model::resource::ResourceInfo;
use wasmkube_model::selector::LabelSelector;
use wasmkube_runtime::{
    ApiError, EventType, Gvr, HostApi, LogLevel, ObjectKey, PatchType, Propagation,
};

use crate::Manager;

/// What a plugin may do: verbs (`get`, `list`, `create`, `update`, `patch`, `delete`, or `*`)
/// by resource (group, plural).
pub type Grants = BTreeMap<(String, String), BTreeSet<String>>;

/// Grants `verbs` on a resource, adding to what was granted before.
pub fn grant(grants: &mut Grants, group: &str, plural: &str, verbs: &[&str]) {
    grants
        .entry((group.to_string(), plural.to_string()))
        .or_default()
        .extend(verbs.iter().map(|v| v.to_string()));
}

/// One plugin's view of the cluster.
pub struct PluginHost {
    pub plugin: String,
    server: Arc<Server>,
    manager: Arc<Manager>,
    grants: Grants,
}

impl PluginHost {
    pub fn new(plugin: String, server: Arc<Server>, manager: Arc<Manager>, grants: Grants) -> Self {
        PluginHost {
            plugin,
            server,
            manager,
            grants,
        }
    }

    /// The resource of `gvr`, if served and granted; a 403 or 404 `api-error` otherwise.
    fn resource(&self, gvr: &Gvr, verb: &str) -> Result<Arc<ResourceInfo>, ApiError> {
        let verbs = self.grants.get(&(gvr.group.clone(), gvr.resource.clone()));
        if !verbs.is_some_and(|v| v.contains(verb) || v.contains("*")) {
            let qualified = if gvr.group.is_empty() {
                gvr.resource.clone()
            } else {
                format!("{}.{}", gvr.resource, gvr.group)
            };
            return Err(ApiError {
                code: 403,
                reason: "Forbidden".into(),
                message: format!(
                    "plugin {:?} may not {verb} {qualified}: not declared",
                    self.plugin
                ),
            });
        }
        self.server
            .registry()
            .get(&gvr.group, &gvr.version, &gvr.resource)
            .cloned()
            .ok_or_else(|| ApiError {
                code: 404,
                reason: "NotFound".into(),
                message: format!(
                    "the server could not find the requested resource {}/{}/{}",
                    gvr.group, gvr.version, gvr.resource
                ),
            })
    }

    fn write_options(&self) -> WriteOptions<'_> {
        WriteOptions {
            validation: "Strict",
            dry_run: false,
            manager: Some(&self.plugin),
        }
    }
}

fn api_error(e: ServerError) -> ApiError {
    let status = e.status();
    ApiError {
        code: e.code().as_u16(),
        reason: status["reason"].as_str().unwrap_or_default().to_string(),
        message: e.to_string(),
    }
}

fn parse(obj: &str) -> Result<Value, ApiError> {
    serde_json::from_str(obj).map_err(|e| ApiError {
        code: 400,
        reason: "BadRequest".into(),
        message: format!("invalid object JSON: {e}"),
    })
}

fn text(v: &Value) -> String {
    v.to_string()
}

fn ns(namespace: &str) -> Option<&str> {
    Some(namespace).filter(|n| !n.is_empty())
}

impl PluginHost {
    /// PUT of `obj` (main resource or status) with its resourceVersion as precondition.
    async fn replace(
        &self,
        gvr: Gvr,
        obj: String,
        subresource: Option<&str>,
    ) -> Result<String, ApiError> {
        let info = self.resource(&gvr, "update")?;
        let obj = parse(&obj)?;
        let update = Update {
            info: &info,
            ns: obj.namespace(),
            name: obj.name(),
            subresource,
            opts: self.write_options(),
        };
        update_with(&self.server, &update, |_| Ok(obj.clone()), &mut Vec::new())
            .await
            .map(|o| text(&o))
            .map_err(api_error)
    }
}

#[async_trait::async_trait]
impl HostApi for PluginHost {
    async fn get(&self, resource: Gvr, key: ObjectKey) -> Result<Option<String>, ApiError> {
        let info = self.resource(&resource, "get")?;
        Ok(self
            .manager
            .informer(&info)
            .get(ns(&key.namespace), &key.name)
            .map(|o| text(&o)))
    }

    async fn list(
        &self,
        resource: Gvr,
        namespace: String,
        label_selector: String,
    ) -> Result<Vec<String>, ApiError> {
        let info = self.resource(&resource, "list")?;
        let selector = LabelSelector::parse(&label_selector).map_err(|e| ApiError {
            code: 400,
            reason: "BadRequest".into(),
            message: e.to_string(),
        })?;
        let objects = self.manager.informer(&info).list(ns(&namespace));
        Ok(objects
            .iter()
            .filter(|o| selector.matches_value(o.labels()))
            .map(|o| text(o))
            .collect())
    }

    async fn create(&self, resource: Gvr, obj: String) -> Result<String, ApiError> {
        let info = self.resource(&resource, "create")?;
        let obj = parse(&obj)?;
        let namespace = obj.namespace().map(String::from);
        create_object(
            &self.server,
            &info,
            namespace.as_deref().filter(|_| info.namespaced),
            obj,
            self.write_options(),
            &mut Vec::new(),
        )
        .await
        .map(|o| text(&o))
        .map_err(api_error)
    }

    async fn update(&self, resource: Gvr, obj: String) -> Result<String, ApiError> {
        self.replace(resource, obj, None).await
    }

    async fn update_status(&self, resource: Gvr, obj: String) -> Result<String, ApiError> {
        self.replace(resource, obj, Some("status")).await
    }

    async fn patch(
        &self,
        resource: Gvr,
        key: ObjectKey,
        kind: PatchType,
        patch: String,
    ) -> Result<String, ApiError> {
        let info = self.resource(&resource, "patch")?;
        let content_type = match kind {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
        };
        let update = Update {
            info: &info,
            ns: ns(&key.namespace),
            name: &key.name,
            subresource: None,
            opts: self.write_options(),
        };
        update_with(
            &self.server,
            &update,
            |cur| apply_patch(&info, cur, content_type, patch.as_bytes()),
            &mut Vec::new(),
        )
        .await
        .map(|o| text(&o))
        .map_err(api_error)
    }

    async fn delete(
        &self,
        resource: Gvr,
        key: ObjectKey,
        propagation: Propagation,
    ) -> Result<(), ApiError> {
        let info = self.resource(&resource, "delete")?;
        let opts = DeleteOptions {
            propagation: propagation.into(),
            ..DeleteOptions::background()
        };
        delete_object(&self.server, &info, ns(&key.namespace), &key.name, &opts)
            .await
            .map(|_| ())
            .map_err(api_error)
    }

    async fn emit_event(
        &self,
        regarding: String,
        kind: EventType,
        reason: String,
        message: String,
    ) {
        let Ok(regarding) = parse(&regarding) else {
            return;
        };
        if let Err(e) = events::record(
            &self.server,
            &self.plugin,
            &regarding,
            kind.into(),
            &reason,
            &message,
        )
        .await
        {
            tracing::warn!(plugin = %self.plugin, error = %e, "could not record an event");
        }
    }

    fn log(&self, level: LogLevel, message: String) {
        let plugin = &self.plugin;
        match level {
            LogLevel::Trace => tracing::trace!(%plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(%plugin, "{message}"),
            LogLevel::Info => tracing::info!(%plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(%plugin, "{message}"),
            LogLevel::Error => tracing::error!(%plugin, "{message}"),
        }
    }

    fn now(&self) -> String {
        Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
    }
}
