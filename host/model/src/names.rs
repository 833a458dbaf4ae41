//! Well-known names several crates agree on: taint keys, finalizers, annotations and namespaces.

// === Taints ===

/// The taint of a node whose Ready condition is False.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The taint of a node whose Ready condition is Unknown (no heartbeat).
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

// === Finalizers ===

/// Holds an owner until its dependents are deleted (`propagationPolicy: Foreground`).
pub const FOREGROUND_DELETION: &str = "foregroundDeletion";
/// Holds an owner until its dependents no longer reference it (`propagationPolicy: Orphan`).
pub const ORPHAN: &str = "orphan";
/// Holds a CRD until its custom resources are gone.
pub const CRD_CLEANUP: &str = "customresourcecleanup.apiextensions.k8s.io";

// === Annotations ===

/// The annotation that makes a StorageClass the cluster's default when set to `"true"`.
pub const DEFAULT_STORAGE_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
/// The beta predecessor of [`DEFAULT_STORAGE_CLASS`].
pub const BETA_DEFAULT_STORAGE_CLASS: &str = "storageclass.beta.kubernetes.io/is-default-class";
/// The annotation that named a claim's class before `spec.storageClassName`.
pub const BETA_CLAIM_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

// === Namespaces ===

/// Where node Leases live (the namespace must exist).
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Namespaces the cluster itself needs, which cannot be deleted: Kubernetes' NamespaceLifecycle
/// keeps `default`, `kube-system` and `kube-public`; our nodes' Leases live in the fourth.
pub const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", LEASE_NAMESPACE];
