//! The host API a plugin sees, backed by the apiserver: each call authorized by RBAC as the plugin's ServiceAccount at the time of the call, reads from the shared informers, writes through validation and admission (a shadow's as dry runs), Events rate-limited (a shadow's dropped).

use std::sync::{Arc, Mutex};

use chrono::{SecondsFormat, Utc};
use serde_json::Value;
use tokio::time::Instant;
use wasmkube_apiserver::Server;
use wasmkube_apiserver::auth::{self, Attributes, User};
use wasmkube_apiserver::error::ApiError as ServerError;
use wasmkube_apiserver::plugin_logs::{Kind, Writer};
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

/// Events a plugin may record at once (client-go's per-object spam filter allows a burst of 25).
pub const EVENT_BURST: u32 = 25;
/// Events a plugin may record per second once its burst is spent (the kubelet's historical
/// `--event-qps` default, 5).
pub const EVENT_QPS: u32 = 5;

/// A token bucket: `burst` tokens, one more every `1 / per_second`.
#[derive(Debug)]
struct TokenBucket {
    burst: u32,
    per_second: u32,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    fn new(burst: u32, per_second: u32, now: Instant) -> Self {
        TokenBucket {
            burst,
            per_second,
            tokens: f64::from(burst),
            at: now,
        }
    }

    /// Takes a token if there is one at `now`.
    fn take(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens =
            (self.tokens + refill * f64::from(self.per_second)).min(f64::from(self.burst));
        self.at = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

/// One plugin's view of the cluster.
pub struct PluginHost {
    /// The field manager of its writes and the source of its Events.
    pub plugin: String,
    /// Who its calls are authorized as, by the RBAC index in force at each call (a revoked
    /// binding holds from the next call on).
    user: User,
    server: Arc<Server>,
    manager: Arc<Manager>,
    events: Mutex<TokenBucket>,
    /// Its Plugin's log, labelled with the version it runs.
    log: Writer,
    /// A shadow's host: every write a dry run, every Event dropped.
    shadow: bool,
}

impl PluginHost {
    /// The host of a plugin named `plugin` (its field manager) calling as `user`, its log
    /// lines written to `log` as well as to the server's own log.
    pub fn new(
        plugin: String,
        user: User,
        server: Arc<Server>,
        manager: Arc<Manager>,
        log: Writer,
    ) -> Self {
        PluginHost {
            plugin,
            user,
            server,
            manager,
            events: Mutex::new(TokenBucket::new(EVENT_BURST, EVENT_QPS, Instant::now())),
            log,
            shadow: false,
        }
    }

    /// This host for a shadow: its reads as usual, its writes dry runs (what the apiserver would
    /// store, as `kubectl --dry-run=server`; nothing is stored), its Events dropped.
    pub fn shadow(mut self) -> Self {
        self.shadow = true;
        self
    }

    /// Where lines about this plugin version go (`plugins/NAME/log`).
    pub fn plugin_log(&self) -> &Writer {
        &self.log
    }

    /// Refuses what RBAC does not let the plugin do now (kube-apiserver's 403).
    fn authorize(&self, attributes: &Attributes) -> Result<(), ApiError> {
        auth::authorize(&self.server, &self.user, attributes).map_err(api_error)
    }

    /// The resource of `gvr` if the plugin may `verb` it (`subresource`, in `namespace`, named
    /// `name`); a 403 or 404 `api-error` otherwise.
    fn resource(
        &self,
        gvr: &Gvr,
        verb: &str,
        subresource: Option<&str>,
        namespace: &str,
        name: &str,
    ) -> Result<Arc<ResourceInfo>, ApiError> {
        let mut attributes = Attributes::resource(verb, &gvr.group, &gvr.resource, namespace, name);
        attributes.api_version = gvr.version.clone();
        attributes.subresource = subresource.unwrap_or_default().to_string();
        self.authorize(&attributes)?;
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
            dry_run: self.shadow,
            manager: Some(&self.plugin),
            // Its writes of RBAC objects and Plugins are escalation-checked as it.
            user: Some(&self.user),
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
        let obj = parse(&obj)?;
        let info = self.resource(
            &gvr,
            "update",
            subresource,
            obj.namespace().unwrap_or_default(),
            obj.name(),
        )?;
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
        let info = self.resource(&resource, "get", None, &key.namespace, &key.name)?;
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
        let info = self.resource(&resource, "list", None, &namespace, "")?;
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
        let obj = parse(&obj)?;
        let namespace = obj.namespace().map(String::from);
        let info = self.resource(
            &resource,
            "create",
            None,
            namespace.as_deref().unwrap_or_default(),
            "",
        )?;
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
        let info = self.resource(&resource, "patch", None, &key.namespace, &key.name)?;
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
        let info = self.resource(&resource, "delete", None, &key.namespace, &key.name)?;
        let opts = DeleteOptions {
            propagation: propagation.into(),
            dry_run: self.shadow,
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
        if self.shadow {
            return;
        }
        let Ok(regarding) = parse(&regarding) else {
            return;
        };
        // Recorded in the object's namespace (`default` for a cluster-scoped one), core or
        // events.k8s.io.
        let namespace = regarding.namespace().unwrap_or("default");
        let create = |group: &str| {
            self.authorize(&Attributes::resource(
                "create", group, "events", namespace, "",
            ))
        };
        if let Err(e) = create("").or_else(|_| create("events.k8s.io")) {
            tracing::debug!(plugin = %self.plugin, %reason, error = %e.message, "event refused");
            return;
        }
        let admitted = self
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(Instant::now());
        if !admitted {
            tracing::debug!(plugin = %self.plugin, %reason, "event dropped: over the plugin's event rate");
            return;
        }
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
        log(&self.plugin, level, &message);
        let kind = match level {
            LogLevel::Trace => Kind::Trace,
            LogLevel::Debug => Kind::Debug,
            LogLevel::Info => Kind::Info,
            LogLevel::Warn => Kind::Warn,
            LogLevel::Error => Kind::Error,
        };
        self.log.write(kind, &message);
    }

    fn now(&self) -> String {
        now()
    }
}

/// A guest's log line, at its level, naming the plugin.
pub fn log(plugin: &str, level: LogLevel, message: &str) {
    match level {
        LogLevel::Trace => tracing::trace!(%plugin, "{message}"),
        LogLevel::Debug => tracing::debug!(%plugin, "{message}"),
        LogLevel::Info => tracing::info!(%plugin, "{message}"),
        LogLevel::Warn => tracing::warn!(%plugin, "{message}"),
        LogLevel::Error => tracing::error!(%plugin, "{message}"),
    }
}

/// The host's clock as a guest reads it: RFC 3339 with microseconds.
pub fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_event_bucket_allows_a_burst_then_its_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(EVENT_BURST, EVENT_QPS, start);
        let taken = (0..100).filter(|_| bucket.take(start)).count();
        assert_eq!(taken, EVENT_BURST as usize);
        let second = start + Duration::from_secs(1);
        let taken = (0..100).filter(|_| bucket.take(second)).count();
        assert_eq!(taken, EVENT_QPS as usize);
        // Idle for long: back to the burst, never more.
        let later = second + Duration::from_secs(3600);
        let taken = (0..100).filter(|_| bucket.take(later)).count();
        assert_eq!(taken, EVENT_BURST as usize);
    }
}
