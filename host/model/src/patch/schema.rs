//! Per-kind list semantics (patch merge keys, list types) for strategic merge patch and apply.

/// How a list field merges, from the API types' `patchStrategy`/`patchMergeKey` and
/// `listType`/`listMapKey` tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType {
    /// An associative list of objects keyed by these fields; the first is the strategic
    /// merge patch `patchMergeKey`, all of them together are the apply `listMapKey`s.
    Map(&'static [&'static str]),
    /// A list of unique scalars merged as a set (`patchStrategy: merge` on primitives).
    Set,
    /// Replaced whole.
    Atomic,
}

/// A tree of list rules: lists directly under it (by dotted relative path) and sub-schemas
/// mounted at a dotted relative path (e.g. the pod spec inside a template).
#[derive(Debug)]
struct Node {
    lists: &'static [(&'static str, ListType)],
    mounts: &'static [(&'static str, &'static Node)],
}

/// The merge knowledge for one built-in kind; see [`schema_for`].
#[derive(Debug)]
pub struct PatchSchema {
    root: &'static Node,
}

const NAME: ListType = ListType::Map(&["name"]);

static CONTAINER: Node = Node {
    lists: &[
        ("ports", ListType::Map(&["containerPort", "protocol"])),
        ("env", NAME),
        ("volumeMounts", ListType::Map(&["mountPath"])),
        ("volumeDevices", ListType::Map(&["devicePath"])),
        ("resources.claims", NAME),
    ],
    mounts: &[],
};

static POD_SPEC: Node = Node {
    lists: &[
        ("containers", NAME),
        ("initContainers", NAME),
        ("ephemeralContainers", NAME),
        ("volumes", NAME),
        ("imagePullSecrets", NAME),
        ("hostAliases", ListType::Map(&["ip"])),
        ("resourceClaims", NAME),
        ("schedulingGates", NAME),
        (
            "topologySpreadConstraints",
            ListType::Map(&["topologyKey", "whenUnsatisfiable"]),
        ),
    ],
    mounts: &[
        ("containers", &CONTAINER),
        ("initContainers", &CONTAINER),
        ("ephemeralContainers", &CONTAINER),
    ],
};

static POD_STATUS: Node = Node {
    lists: &[
        ("podIPs", ListType::Map(&["ip"])),
        ("hostIPs", ListType::Map(&["ip"])),
        ("resourceClaimStatuses", NAME),
    ],
    mounts: &[],
};

/// Fields every built-in kind shares: object metadata and status conditions.
const COMMON: &[(&str, ListType)] = &[
    ("metadata.finalizers", ListType::Set),
    ("metadata.ownerReferences", ListType::Map(&["uid"])),
    ("status.conditions", ListType::Map(&["type"])),
];

static GENERIC: Node = Node {
    lists: COMMON,
    mounts: &[],
};

static POD: Node = Node {
    lists: COMMON,
    mounts: &[("spec", &POD_SPEC), ("status", &POD_STATUS)],
};

static POD_TEMPLATE: Node = Node {
    lists: COMMON,
    mounts: &[("template.spec", &POD_SPEC)],
};

static WORKLOAD: Node = Node {
    lists: COMMON,
    mounts: &[("spec.template.spec", &POD_SPEC)],
};

static CRON_JOB: Node = Node {
    lists: COMMON,
    mounts: &[("spec.jobTemplate.spec.template.spec", &POD_SPEC)],
};

static SERVICE: Node = Node {
    lists: &[
        ("metadata.finalizers", ListType::Set),
        ("metadata.ownerReferences", ListType::Map(&["uid"])),
        ("status.conditions", ListType::Map(&["type"])),
        ("spec.ports", ListType::Map(&["port", "protocol"])),
    ],
    mounts: &[],
};

static NODE: Node = Node {
    lists: &[
        ("metadata.finalizers", ListType::Set),
        ("metadata.ownerReferences", ListType::Map(&["uid"])),
        ("status.conditions", ListType::Map(&["type"])),
        ("status.addresses", ListType::Map(&["type"])),
        ("spec.podCIDRs", ListType::Set),
    ],
    mounts: &[],
};

static SERVICE_ACCOUNT: Node = Node {
    lists: &[
        ("metadata.finalizers", ListType::Set),
        ("metadata.ownerReferences", ListType::Map(&["uid"])),
        ("secrets", NAME),
    ],
    mounts: &[],
};

/// API groups served by the built-in types (every kind in them supports strategic merge patch).
const BUILTIN_GROUPS: &[&str] = &[
    "",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "apps",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "internal.apiserver.k8s.io",
    "networking.k8s.io",
    "node.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "resource.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
    "storagemigration.k8s.io",
];

/// The strategic-merge schema of a built-in kind; `None` for custom resources, which
/// Kubernetes refuses strategic merge patches for (415).
pub fn schema_for(group: &str, kind: &str) -> Option<&'static PatchSchema> {
    static SCHEMAS: [PatchSchema; 8] = [
        PatchSchema { root: &GENERIC },
        PatchSchema { root: &POD },
        PatchSchema {
            root: &POD_TEMPLATE,
        },
        PatchSchema { root: &WORKLOAD },
        PatchSchema { root: &CRON_JOB },
        PatchSchema { root: &SERVICE },
        PatchSchema { root: &NODE },
        PatchSchema {
            root: &SERVICE_ACCOUNT,
        },
    ];
    if !BUILTIN_GROUPS.contains(&group) {
        return None;
    }
    let index = match (group, kind) {
        ("", "Pod") => 1,
        ("", "PodTemplate") => 2,
        ("", "ReplicationController")
        | ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet")
        | ("batch", "Job") => 3,
        ("batch", "CronJob") => 4,
        ("", "Service") => 5,
        ("", "Node") => 6,
        ("", "ServiceAccount") => 7,
        _ => 0,
    };
    SCHEMAS.get(index)
}

/// Whether `path` starts with the dotted `prefix`; returns the remainder.
fn strip<'p, 'a>(path: &'p [&'a str], prefix: &str) -> Option<&'p [&'a str]> {
    let mut rest = path;
    for segment in prefix.split('.') {
        let (first, tail) = rest.split_first()?;
        if *first != segment {
            return None;
        }
        rest = tail;
    }
    Some(rest)
}

impl Node {
    fn lookup(&self, path: &[&str]) -> ListType {
        for (prefix, node) in self.mounts {
            if let Some(rest) = strip(path, prefix).filter(|r| !r.is_empty()) {
                let found = node.lookup(rest);
                if found != ListType::Atomic {
                    return found;
                }
            }
        }
        self.lists
            .iter()
            .find(|(p, _)| strip(path, p).is_some_and(<[&str]>::is_empty))
            .map_or(ListType::Atomic, |(_, t)| *t)
    }
}

impl PatchSchema {
    /// How the list at `path` (field names from the object root, list positions left out)
    /// merges; lists the schema does not describe are atomic.
    pub fn list_keys(&self, path: &[&str]) -> ListType {
        self.root.lookup(path)
    }
}

/// The value a list-map key takes when an item leaves it out (`protocol` defaults to TCP),
/// so that `{containerPort: 80}` and `{containerPort: 80, protocol: TCP}` are the same item.
pub fn key_default(key: &str) -> Option<&'static str> {
    (key == "protocol").then_some("TCP")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn keys(group: &str, kind: &str, path: &str) -> ListType {
        let path: Vec<&str> = path.split('.').collect();
        schema_for(group, kind).unwrap().list_keys(&path)
    }

    #[test]
    fn custom_resources_have_no_schema() {
        assert!(schema_for("example.com", "Widget").is_none());
        assert!(schema_for("", "ConfigMap").is_some());
        assert!(schema_for("networking.k8s.io", "Ingress").is_some());
    }

    #[test]
    fn pod_spec_lists() {
        assert_eq!(keys("", "Pod", "spec.containers"), NAME);
        assert_eq!(
            keys("", "Pod", "spec.containers.ports"),
            ListType::Map(&["containerPort", "protocol"])
        );
        assert_eq!(keys("", "Pod", "spec.initContainers.env"), NAME);
        assert_eq!(
            keys("", "Pod", "spec.containers.volumeMounts"),
            ListType::Map(&["mountPath"])
        );
        assert_eq!(keys("", "Pod", "spec.containers.args"), ListType::Atomic);
        assert_eq!(keys("", "Pod", "spec.containers.envFrom"), ListType::Atomic);
        assert_eq!(keys("", "Pod", "spec.tolerations"), ListType::Atomic);
        assert_eq!(keys("", "Pod", "spec.hostAliases"), ListType::Map(&["ip"]));
        assert_eq!(keys("", "Pod", "status.podIPs"), ListType::Map(&["ip"]));
        assert_eq!(
            keys("", "Pod", "status.conditions"),
            ListType::Map(&["type"])
        );
        assert_eq!(keys("", "Pod", "metadata.finalizers"), ListType::Set);
        assert_eq!(
            keys("", "Pod", "metadata.ownerReferences"),
            ListType::Map(&["uid"])
        );
    }

    #[test]
    fn templates_inside_workloads() {
        for (group, kind) in [
            ("apps", "Deployment"),
            ("apps", "ReplicaSet"),
            ("apps", "StatefulSet"),
            ("apps", "DaemonSet"),
            ("batch", "Job"),
            ("", "ReplicationController"),
        ] {
            assert_eq!(
                keys(group, kind, "spec.template.spec.containers"),
                NAME,
                "{kind}"
            );
            assert_eq!(
                keys(group, kind, "spec.template.spec.containers.env"),
                NAME,
                "{kind}"
            );
            assert_eq!(
                keys(group, kind, "spec.containers"),
                ListType::Atomic,
                "{kind}"
            );
        }
        assert_eq!(
            keys(
                "batch",
                "CronJob",
                "spec.jobTemplate.spec.template.spec.volumes"
            ),
            NAME
        );
        assert_eq!(keys("", "PodTemplate", "template.spec.containers"), NAME);
        assert_eq!(
            keys("apps", "Deployment", "status.conditions"),
            ListType::Map(&["type"])
        );
    }

    #[test]
    fn other_kinds() {
        assert_eq!(
            keys("", "Service", "spec.ports"),
            ListType::Map(&["port", "protocol"])
        );
        assert_eq!(
            keys("", "Node", "status.addresses"),
            ListType::Map(&["type"])
        );
        assert_eq!(keys("", "Node", "spec.podCIDRs"), ListType::Set);
        assert_eq!(keys("", "ServiceAccount", "secrets"), NAME);
        assert_eq!(keys("", "Endpoints", "subsets"), ListType::Atomic);
        assert_eq!(keys("", "ConfigMap", "metadata.finalizers"), ListType::Set);
    }

    #[test]
    fn protocol_defaults_to_tcp() {
        assert_eq!(key_default("protocol"), Some("TCP"));
        assert_eq!(key_default("name"), None);
    }
}
