//! Object metadata read from a `serde_json::Value`, as kube-core's `ResourceExt` reads it from typed objects.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

/// Now, as Kubernetes writes times in metadata (`2024-01-01T00:00:00Z`).
pub fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A time as metadata writes it (RFC 3339), `None` when `text` is not one.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// How dependents are treated when their owner goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    /// The owner goes now; the garbage collector deletes dependents afterwards.
    Background,
    /// Dependents go first; the owner waits with the `foregroundDeletion` finalizer.
    Foreground,
    /// Dependents stay, their owner references removed; the owner waits with `orphan`.
    Orphan,
}

/// The `metadata` of any object; absent fields read as empty.
pub trait ResourceExt {
    /// `metadata.name`, or `""`.
    fn name(&self) -> &str;
    /// `metadata.namespace`, if set.
    fn namespace(&self) -> Option<&str>;
    /// `metadata.uid`, if set.
    fn uid(&self) -> Option<&str>;
    /// Whether `metadata.deletionTimestamp` is set: the object is being deleted.
    fn is_deleting(&self) -> bool;
    /// Whether `metadata.finalizers` holds `finalizer`.
    fn has_finalizer(&self, finalizer: &str) -> bool;
    /// `metadata.labels` (`None` when absent).
    fn labels(&self) -> Option<&Value>;
    /// `metadata.ownerReferences`, empty when absent.
    fn owner_references(&self) -> &[Value];
}

impl ResourceExt for Value {
    fn name(&self) -> &str {
        self["metadata"]["name"].as_str().unwrap_or_default()
    }

    fn namespace(&self) -> Option<&str> {
        self["metadata"]["namespace"].as_str()
    }

    fn uid(&self) -> Option<&str> {
        self["metadata"]["uid"].as_str()
    }

    fn is_deleting(&self) -> bool {
        !self["metadata"]["deletionTimestamp"].is_null()
    }

    fn has_finalizer(&self, finalizer: &str) -> bool {
        self["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|list| list.iter().any(|f| f == finalizer))
    }

    fn labels(&self) -> Option<&Value> {
        self.get("metadata")?.get("labels")
    }

    fn owner_references(&self) -> &[Value] {
        self["metadata"]["ownerReferences"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_metadata_and_treats_absent_fields_as_empty() {
        let pod = json!({"metadata": {"name": "web", "namespace": "team", "uid": "u1",
            "deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["orphan"],
            "labels": {"app": "web"}, "ownerReferences": [{"uid": "o1"}]}});
        assert_eq!(pod.name(), "web");
        assert_eq!(pod.namespace(), Some("team"));
        assert_eq!(pod.uid(), Some("u1"));
        assert!(pod.is_deleting());
        assert!(pod.has_finalizer("orphan") && !pod.has_finalizer("other"));
        assert_eq!(pod.labels(), Some(&json!({"app": "web"})));
        assert_eq!(pod.owner_references().len(), 1);

        let bare = json!({"metadata": {"deletionTimestamp": null}});
        assert_eq!(bare.name(), "");
        assert_eq!(bare.namespace(), None);
        assert!(!bare.is_deleting());
        assert!(!bare.has_finalizer("orphan"));
        assert_eq!(bare.labels(), None);
        assert!(bare.owner_references().is_empty());
        assert!(!json!("not an object").is_deleting());
    }
}
