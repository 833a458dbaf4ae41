//! The resource registry: every served resource with its group, version, kind, names, scope and subresources.

use std::collections::BTreeMap;
use std::sync::Arc;

/// Where the scale subresource finds its numbers (fixed for built-ins, declared by CRDs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalePaths {
    /// JSON path of the desired replicas, e.g. `.spec.replicas`.
    pub spec_replicas: String,
    /// JSON path of the observed replicas, e.g. `.status.replicas`.
    pub status_replicas: String,
    /// JSON path of the label selector string, if any.
    pub label_selector: Option<String>,
}

/// One served resource (a `group/version` + plural name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub namespaced: bool,
    /// Has a `status` subresource: writes to the main resource ignore `status` and writes to
    /// `/status` change only `status`.
    pub status: bool,
    pub scale: Option<ScalePaths>,
    /// Other subresources served (`binding`, `log`, `eviction`, the streaming ones).
    pub extra_subresources: Vec<&'static str>,
    /// Served from a CustomResourceDefinition (generic JSON, no typed checks).
    pub custom: bool,
    /// The `additionalPrinterColumns` of a CRD version; empty for built-ins.
    pub printer_columns: Vec<PrinterColumn>,
    /// The `openAPIV3Schema` of a CRD version (structural: pruning, defaults, validation).
    pub schema: Option<serde_json::Value>,
}

/// A column a CRD declares for `kubectl get`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrinterColumn {
    pub name: String,
    /// `integer`, `number`, `string`, `boolean` or `date`.
    pub kind: String,
    /// A simple JSONPath such as `.spec.replicas` or `.status.conditions[0].type`.
    pub json_path: String,
    pub priority: i64,
    pub description: String,
}

impl ResourceInfo {
    /// `apiVersion` as written in objects: `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `Kind.group` as Kubernetes names it in messages (`Deployment.apps`, `Pod`).
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// `plural.group` (`deployments.apps`, `pods`), as in "deployments.apps "web" not found".
    pub fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Answered on create and never stored: the access reviews and SelfSubjectReview.
    pub fn create_only(&self) -> bool {
        !self.custom && REVIEW_GROUPS.contains(&self.group.as_str())
    }

    /// The verbs served on the main resource.
    pub fn verbs(&self) -> &'static [&'static str] {
        if self.create_only() {
            return &["create"];
        }
        &[
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }

    /// Every subresource served, with `status` and `scale` first.
    pub fn subresources(&self) -> Vec<&'static str> {
        let mut subs = Vec::new();
        if self.status {
            subs.push("status");
        }
        if self.scale.is_some() {
            subs.push("scale");
        }
        subs.extend(self.extra_subresources.iter().copied());
        subs
    }

    /// The store key prefix of this resource (all namespaces), e.g. `/registry/apps/deployments/`.
    pub fn key_prefix(&self) -> String {
        // events.k8s.io/v1 Events are stored with the core ones (see `convert`).
        let group = match self.group.as_str() {
            "" | "events.k8s.io" => "core",
            group => group,
        };
        format!("/registry/{group}/{}/", self.plural)
    }

    /// The store key prefix of one namespace, or of everything when `namespace` is `None`.
    pub fn list_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/", self.key_prefix()),
            _ => self.key_prefix(),
        }
    }

    /// The store key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/{name}", self.key_prefix()),
            _ => format!("{}{name}", self.key_prefix()),
        }
    }
}

/// The API group of wasmkube's own resources.
pub const PLUGIN_GROUP: &str = "wasmkube.dev";

/// Builds a built-in [`ResourceInfo`]; the few fields that vary are set with the methods below.
fn builtin(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> ResourceInfo {
    ResourceInfo {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        short_names: Vec::new(),
        categories: Vec::new(),
        namespaced,
        status: false,
        scale: None,
        extra_subresources: Vec::new(),
        custom: false,
        printer_columns: Vec::new(),
        schema: None,
    }
}

impl ResourceInfo {
    fn short(mut self, names: &[&str]) -> Self {
        self.short_names = names.iter().map(|s| s.to_string()).collect();
        self
    }

    fn in_all(mut self) -> Self {
        self.categories = vec!["all".into()];
        self
    }

    fn with_status(mut self) -> Self {
        self.status = true;
        self
    }

    fn with_scale(mut self) -> Self {
        self.scale = Some(ScalePaths {
            spec_replicas: ".spec.replicas".into(),
            status_replicas: ".status.replicas".into(),
            label_selector: Some(".status.selector".into()),
        });
        self
    }

    fn with_schema(mut self, schema: serde_json::Value) -> Self {
        self.schema = Some(schema);
        self
    }

    /// `kubectl get` columns as a CRD declares them: (name, type, JSONPath).
    fn with_columns(mut self, columns: &[(&str, &str, &str)]) -> Self {
        self.printer_columns = columns
            .iter()
            .map(|(name, kind, path)| PrinterColumn {
                name: name.to_string(),
                kind: kind.to_string(),
                json_path: path.to_string(),
                priority: 0,
                description: String::new(),
            })
            .collect();
        self
    }

    fn with(mut self, subresources: &[&'static str]) -> Self {
        self.extra_subresources = subresources.to_vec();
        self
    }
}

fn described(kind: &str, description: &str) -> serde_json::Value {
    serde_json::json!({"type": kind, "description": description})
}

/// The structural schema of `Plugin` (see docs/plugins.md).
fn plugin_schema() -> serde_json::Value {
    use serde_json::json;
    let module = json!({"type": "object", "required": ["digest", "chunks"], "description": "The module, stored as PluginModule chunks.", "properties": {
        "digest": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$", "description": "sha256:<hex> of the module's bytes."},
        "chunks": {"type": "integer", "minimum": 1, "description": "How many PluginModule chunks hold it."},
    }});
    json!({"type": "object", "description": "A WebAssembly component the host runs, and what it may touch.", "properties": {
        "spec": {"type": "object", "required": ["kind", "module"], "properties": {
            "kind": {"type": "string", "enum": ["Controller", "Scheduler"], "description": "What the component is: a Controller, or a Scheduler policy (see SchedulerProfile)."},
            "module": module.clone(),
            "shadow": {"type": "object", "required": ["module"], "description": "Controllers only: a candidate version run beside the active one on the same keys, its writes dry runs compared with the active version's (see status.shadow); promoted by making it spec.module.", "properties": {
                "module": module,
            }},
            "limits": {"type": "object", "description": "What each instance may use.", "properties": {
                "memoryBytes": {"type": "integer", "minimum": 1_048_576, "description": "Linear memory an instance may grow to (default 64 MiB)."},
                "callTimeoutMillis": {"type": "integer", "minimum": 1, "description": "Wall-clock time one call may take, host calls and waits included (default 1000; built-in plugins 30000)."},
            }},
            "workers": {"type": "integer", "minimum": 1, "description": "Keys reconciled at once (default 2)."},
            "permissions": {"type": "array", "description": "The rules of the plugin's ClusterRole wasmkube:plugin:NAME, bound to its ServiceAccount kube-system/plugin-NAME; without it, what its registration names.", "items": {"type": "object", "properties": {
                "group": described("string", "API group, empty for the core group."),
                "resources": {"type": "array", "minItems": 1, "items": {"type": "string"}, "description": "Plural resource names, or resource/subresource (deployments/status)."},
                "verbs": {"type": "array", "items": {"type": "string", "enum": ["*", "create", "delete", "get", "list", "patch", "update", "watch"]}, "description": "What may be done to them (every verb when absent)."},
            }}},
        }},
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "description": "What runs and how it fares."},
    }})
}

/// The structural schema of `SchedulerProfile` (see docs/scheduler.md).
fn scheduler_profile_schema() -> serde_json::Value {
    use serde_json::json;
    let plugins = |what: &str| {
        json!({"type": "array", "description": what, "items": {"type": "object", "required": ["name"], "properties": {
            "name": described("string", "The plugin's name, e.g. NodeResourcesFit."),
            "weight": {"type": "integer", "minimum": 0, "maximum": 100, "description": "For a score plugin: the multiplier of its 0-100 score (default 1)."},
            "args": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "description": "The plugin's arguments."},
        }}})
    };
    let stages = |what: &str| {
        json!({"type": "array", "description": what, "items": {"type": "object", "required": ["plugin"], "properties": {
            "plugin": described("string", "The Plugin (spec.kind Scheduler) whose component runs this stage."),
            "filters": plugins("Filter plugins in order; all of the component's when unset."),
            "scores": plugins("Score plugins with weights; all of the component's, weight 1, when unset."),
        }}})
    };
    json!({"type": "object", "description": "A scheduling profile: which policy plugins schedule the pods that name it, and a candidate policy in shadow mode.", "properties": {
        "spec": {"type": "object", "required": ["policies"], "properties": {
            "schedulerName": described("string", "The spec.schedulerName of the pods this profile schedules (default: the object's name)."),
            "percentageOfNodesToScore": {"type": "integer", "minimum": 0, "maximum": 100, "description": "Stop filtering once this share of the nodes is feasible (0: adaptive, as Kubernetes)."},
            "policies": stages("The policy stages, in order: the first finds the feasible nodes, later ones filter and score those."),
            "shadow": {"type": "object", "description": "A candidate policy run beside the active one on every pod; it binds nothing and reports where it disagrees.", "properties": {
                "policies": stages("The candidate's policy stages."),
            }},
        }},
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "description": "What runs and, in shadow mode, how the candidate compares."},
    }})
}

/// The structural schema of `PluginModule`.
fn plugin_module_schema() -> serde_json::Value {
    serde_json::json!({"type": "object", "description": "One chunk of a plugin module.", "required": ["digest", "index", "count", "data"], "properties": {
        "digest": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$", "description": "sha256:<hex> of the whole module."},
        "index": {"type": "integer", "minimum": 0, "description": "This chunk's position, from 0."},
        "count": {"type": "integer", "minimum": 1, "description": "How many chunks the module has."},
        "data": described("string", "The chunk's bytes, base64."),
    }})
}

/// The group of Roles, ClusterRoles and their bindings.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
/// The groups of the create-only reviews (`kubectl auth can-i`, `kubectl auth whoami`).
pub const REVIEW_GROUPS: [&str; 2] = ["authorization.k8s.io", "authentication.k8s.io"];

/// Every built-in resource this server serves.
pub fn builtins() -> Vec<ResourceInfo> {
    vec![
        builtin("", "v1", "Namespace", "namespaces", false)
            .short(&["ns"])
            .with_status(),
        builtin("", "v1", "Pod", "pods", true)
            .short(&["po"])
            .in_all()
            .with_status()
            .with(&[
                "binding",
                "log",
                "eviction",
                "attach",
                "exec",
                "portforward",
            ]),
        builtin("", "v1", "Service", "services", true)
            .short(&["svc"])
            .in_all()
            .with_status(),
        builtin("", "v1", "Endpoints", "endpoints", true).short(&["ep"]),
        builtin("", "v1", "ConfigMap", "configmaps", true).short(&["cm"]),
        builtin("", "v1", "Secret", "secrets", true),
        builtin("", "v1", "ServiceAccount", "serviceaccounts", true)
            .short(&["sa"])
            .with(&["token"]),
        builtin("", "v1", "Node", "nodes", false)
            .short(&["no"])
            .with_status(),
        builtin("", "v1", "Event", "events", true).short(&["ev"]),
        builtin("", "v1", "PersistentVolume", "persistentvolumes", false)
            .short(&["pv"])
            .with_status(),
        builtin(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            true,
        )
        .short(&["pvc"])
        .with_status(),
        builtin("apps", "v1", "Deployment", "deployments", true)
            .short(&["deploy"])
            .in_all()
            .with_status()
            .with_scale(),
        builtin("apps", "v1", "ReplicaSet", "replicasets", true)
            .short(&["rs"])
            .in_all()
            .with_status()
            .with_scale(),
        builtin("apps", "v1", "StatefulSet", "statefulsets", true)
            .short(&["sts"])
            .in_all()
            .with_status()
            .with_scale(),
        builtin("apps", "v1", "DaemonSet", "daemonsets", true)
            .short(&["ds"])
            .in_all()
            .with_status(),
        builtin(
            "apps",
            "v1",
            "ControllerRevision",
            "controllerrevisions",
            true,
        ),
        builtin("batch", "v1", "Job", "jobs", true)
            .in_all()
            .with_status(),
        builtin("batch", "v1", "CronJob", "cronjobs", true)
            .short(&["cj"])
            .in_all()
            .with_status(),
        builtin("coordination.k8s.io", "v1", "Lease", "leases", true),
        builtin("events.k8s.io", "v1", "Event", "events", true).short(&["ev"]),
        builtin(
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            "endpointslices",
            true,
        ),
        builtin(
            "storage.k8s.io",
            "v1",
            "StorageClass",
            "storageclasses",
            false,
        )
        .short(&["sc"]),
        builtin(RBAC_GROUP, "v1", "Role", "roles", true),
        builtin(RBAC_GROUP, "v1", "ClusterRole", "clusterroles", false),
        builtin(RBAC_GROUP, "v1", "RoleBinding", "rolebindings", true),
        builtin(
            RBAC_GROUP,
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
        ),
        builtin(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            false,
        ),
        builtin(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectRulesReview",
            "selfsubjectrulesreviews",
            false,
        ),
        builtin(
            "authorization.k8s.io",
            "v1",
            "SubjectAccessReview",
            "subjectaccessreviews",
            false,
        ),
        builtin(
            "authorization.k8s.io",
            "v1",
            "LocalSubjectAccessReview",
            "localsubjectaccessreviews",
            true,
        ),
        builtin(
            "authentication.k8s.io",
            "v1",
            "SelfSubjectReview",
            "selfsubjectreviews",
            false,
        ),
        builtin(
            "certificates.k8s.io",
            "v1",
            "CertificateSigningRequest",
            "certificatesigningrequests",
            false,
        )
        .short(&["csr"])
        .with_status()
        .with(&["approval"]),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
        )
        .short(&["crd", "crds"])
        .with_status(),
        // The project's own: Wasm plugins and the module bytes they run (see docs/plugins.md).
        builtin(PLUGIN_GROUP, "v1alpha1", "Plugin", "plugins", false)
            .with_status()
            .with(&["log"])
            .with_schema(plugin_schema()),
        builtin(
            PLUGIN_GROUP,
            "v1alpha1",
            "PluginModule",
            "pluginmodules",
            false,
        )
        .with_schema(plugin_module_schema()),
        builtin(
            PLUGIN_GROUP,
            "v1alpha1",
            "SchedulerProfile",
            "schedulerprofiles",
            false,
        )
        .with_status()
        .with_schema(scheduler_profile_schema())
        .with_columns(&[
            ("Scheduler", "string", ".status.schedulerName"),
            ("Phase", "string", ".status.phase"),
            ("Policies", "string", ".status.policies"),
            ("Shadow Pods", "integer", ".status.shadow.pods"),
            ("Disagreements", "integer", ".status.shadow.disagreements"),
            ("Message", "string", ".status.message"),
        ]),
    ]
}

/// The set of served resources at one moment: the built-ins plus those of established CRDs.
/// Replaced whole (behind an `ArcSwap`) when a CRD changes.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    resources: Vec<Arc<ResourceInfo>>,
    by_path: BTreeMap<(String, String, String), Arc<ResourceInfo>>,
}

impl Registry {
    pub fn new(resources: impl IntoIterator<Item = ResourceInfo>) -> Self {
        let mut registry = Registry::default();
        for info in resources {
            let info = Arc::new(info);
            registry.by_path.insert(
                (
                    info.group.clone(),
                    info.version.clone(),
                    info.plural.clone(),
                ),
                info.clone(),
            );
            registry.resources.push(info);
        }
        registry
    }

    /// The resource at `/apis/{group}/{version}/{plural}`.
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<&Arc<ResourceInfo>> {
        self.by_path
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
    }

    /// The resource of an `apiVersion` + `kind`.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<&Arc<ResourceInfo>> {
        let (group, version) = split_api_version(api_version);
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.kind == kind)
    }

    pub fn all(&self) -> &[Arc<ResourceInfo>] {
        &self.resources
    }

    /// Served groups in discovery order (core first, then by first appearance), each with its
    /// versions.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for info in &self.resources {
            match groups.iter_mut().find(|(g, _)| *g == info.group) {
                Some((_, versions)) => {
                    if !versions.contains(&info.version) {
                        versions.push(info.version.clone());
                    }
                }
                None => groups.push((info.group.clone(), vec![info.version.clone()])),
            }
        }
        groups
    }

    /// The resources of one group version.
    pub fn in_group_version<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'a Arc<ResourceInfo>> + 'a {
        self.resources
            .iter()
            .filter(move |r| r.group == group && r.version == version)
    }
}

/// Splits `apps/v1` into `("apps", "v1")` and `v1` into `("", "v1")`.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_names() {
        let registry = Registry::new(builtins());
        let deploy = registry.get("apps", "v1", "deployments").expect("served");
        assert_eq!(deploy.api_version(), "apps/v1");
        assert_eq!(deploy.qualified_kind(), "Deployment.apps");
        assert_eq!(
            deploy.key(Some("default"), "web"),
            "/registry/apps/deployments/default/web"
        );
        let ns = registry.by_kind("v1", "Namespace").expect("served");
        assert_eq!(
            ns.key(Some("ignored"), "kube-system"),
            "/registry/core/namespaces/kube-system"
        );
        assert_eq!(ns.list_prefix(Some("x")), "/registry/core/namespaces/");
        assert_eq!(deploy.subresources(), vec!["status", "scale"]);
    }

    #[test]
    fn groups_start_with_core() {
        let registry = Registry::new(builtins());
        let groups = registry.groups();
        assert_eq!(groups[0], ("".to_string(), vec!["v1".to_string()]));
        assert!(groups.iter().any(|(g, _)| g == "apps"));
    }
}
