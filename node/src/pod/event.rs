//! Events the agent records about pods and their containers, as the kubelet's recorder does:
//! written in the background, in order, and a repeat of one counted on the Event it repeats.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::Pod;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::api::{Api, ApiError};

/// Events waiting to be written; beyond this they are dropped (and logged) rather than hold up
/// a pod worker while the apiserver is slow.
const QUEUE: usize = 1024;
/// How many distinct events are remembered for counting repeats (the kubelet's cache size).
const REMEMBERED: usize = 4096;
/// Messages are cut at this many bytes (probe and pull errors carry output of any length).
const MAX_MESSAGE: usize = 1024;

/// `Normal` or `Warning`, as the kubelet types its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Type {
    Normal,
    Warning,
}

impl Type {
    fn as_str(self) -> &'static str {
        match self {
            Type::Normal => "Normal",
            Type::Warning => "Warning",
        }
    }
}

/// What an event is about: a pod, one of its containers (`fieldPath`), or the node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Subject {
    /// `Pod` or `Node`.
    pub kind: &'static str,
    /// Empty for the node (cluster-scoped), whose Events live in `default`.
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub field_path: Option<String>,
}

impl Subject {
    pub fn pod(pod: &Pod) -> Subject {
        Subject {
            kind: "Pod",
            namespace: pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            field_path: None,
        }
    }

    /// The node `name` (its uid, as the kubelet, is its name).
    pub fn node(name: &str) -> Subject {
        Subject {
            kind: "Node",
            namespace: String::new(),
            name: name.to_string(),
            uid: name.to_string(),
            field_path: None,
        }
    }

    /// The namespace the Event itself is written to.
    fn event_namespace(&self) -> &str {
        if self.namespace.is_empty() {
            "default"
        } else {
            &self.namespace
        }
    }

    /// Container `name` of the pod: `spec.containers{name}` or `spec.initContainers{name}`.
    pub fn container(pod: &Pod, name: &str) -> Subject {
        let init = pod
            .spec
            .iter()
            .flat_map(|s| s.init_containers.iter().flatten())
            .any(|c| c.name == name);
        let list = if init { "initContainers" } else { "containers" };
        Subject {
            field_path: Some(format!("spec.{list}{{{name}}}")),
            ..Subject::pod(pod)
        }
    }
}

/// One occurrence to record.
#[derive(Debug)]
struct Occurrence {
    key: Key,
    at: DateTime<Utc>,
}

/// What makes two occurrences the same event.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    subject: Subject,
    kind: Type,
    reason: String,
    message: String,
}

/// Records events; cloning shares the queue.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Occurrence>,
}

impl Recorder {
    /// A recorder whose events `node`'s writer task sends to the apiserver.
    pub fn start(api: Api, node: String) -> Recorder {
        let (queue, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(write_all(api, node, receiver));
        Recorder { queue }
    }

    /// Records an event now (it is written in the background).
    pub fn record(&self, subject: &Subject, kind: Type, reason: &str, message: &str) {
        let occurrence = Occurrence {
            key: Key {
                subject: subject.clone(),
                kind,
                reason: reason.to_string(),
                message: truncate(message, MAX_MESSAGE).to_string(),
            },
            at: Utc::now(),
        };
        if self.queue.try_send(occurrence).is_err() {
            tracing::warn!(pod = %subject.name, %reason, "too many events waiting; one dropped");
        }
    }

    pub fn normal(&self, subject: &Subject, reason: &str, message: &str) {
        self.record(subject, Type::Normal, reason, message);
    }

    pub fn warning(&self, subject: &Subject, reason: &str, message: &str) {
        self.record(subject, Type::Warning, reason, message);
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// An Event already written: its name, how often it happened, when it was last used.
#[derive(Debug)]
struct Seen {
    name: String,
    count: u32,
    used: u64,
}

/// What to write for an occurrence.
#[derive(Debug, PartialEq)]
enum Write {
    /// A new Event.
    Create { name: String },
    /// A repeat: the Event `name` now counts `count`.
    Update { name: String, count: u32 },
}

/// Remembers the events written (the least recently used forgotten beyond [`REMEMBERED`]) and
/// decides whether an occurrence is a new Event or a repeat, as client-go's EventCorrelator.
#[derive(Debug, Default)]
struct Correlator {
    seen: HashMap<Key, Seen>,
    clock: u64,
}

impl Correlator {
    fn observe(&mut self, key: &Key, at: DateTime<Utc>) -> Write {
        self.clock += 1;
        if let Some(seen) = self.seen.get_mut(key) {
            seen.count = seen.count.saturating_add(1);
            seen.used = self.clock;
            return Write::Update {
                name: seen.name.clone(),
                count: seen.count,
            };
        }
        if self.seen.len() >= REMEMBERED
            && let Some(oldest) = self
                .seen
                .iter()
                .min_by_key(|(_, seen)| seen.used)
                .map(|(key, _)| key.clone())
        {
            self.seen.remove(&oldest);
        }
        // The kubelet's names: the object's name and the time in hexadecimal nanoseconds.
        let name = format!(
            "{}.{:x}",
            key.subject.name,
            at.timestamp_nanos_opt().unwrap_or_default()
        );
        self.seen.insert(
            key.clone(),
            Seen {
                name: name.clone(),
                count: 1,
                used: self.clock,
            },
        );
        Write::Create { name }
    }

    /// The Event of `key` could not be written or is gone: the next occurrence creates one.
    fn forget(&mut self, key: &Key) {
        self.seen.remove(key);
    }
}

/// Writes the queued events in order until every recorder is dropped.
async fn write_all(api: Api, node: String, mut queue: mpsc::Receiver<Occurrence>) {
    let mut correlator = Correlator::default();
    while let Some(Occurrence { key, at }) = queue.recv().await {
        let mut written = match correlator.observe(&key, at) {
            Write::Create { name } => create(&api, &node, &key, &name, at).await,
            Write::Update { name, count } => update(&api, &key, &name, count, at).await,
        };
        if matches!(&written, Err(e) if e.status() == Some(StatusCode::NOT_FOUND)) {
            // The Event expired or was deleted meanwhile: counted afresh.
            correlator.forget(&key);
            if let Write::Create { name } = correlator.observe(&key, at) {
                written = create(&api, &node, &key, &name, at).await;
            }
        }
        if let Err(e) = written {
            correlator.forget(&key);
            tracing::warn!(pod = %key.subject.name, reason = %key.reason, error = %e, "recording an event");
        }
    }
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The first Event of `key` as the kubelet writes it.
fn event(node: &str, key: &Key, name: &str, at: DateTime<Utc>) -> Value {
    let subject = &key.subject;
    let mut involved = json!({
        "apiVersion": "v1",
        "kind": subject.kind,
        "name": subject.name,
        "uid": subject.uid,
    });
    if !subject.namespace.is_empty() {
        involved["namespace"] = json!(subject.namespace);
    }
    if let Some(path) = &subject.field_path {
        involved["fieldPath"] = json!(path);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": subject.event_namespace()},
        "involvedObject": involved,
        "reason": key.reason,
        "message": key.message,
        "type": key.kind.as_str(),
        "count": 1,
        "firstTimestamp": timestamp(at),
        "lastTimestamp": timestamp(at),
        "source": {"component": "kubelet", "host": node},
        "reportingComponent": "kubelet",
        "reportingInstance": node,
    })
}

async fn create(
    api: &Api,
    node: &str,
    key: &Key,
    name: &str,
    at: DateTime<Utc>,
) -> Result<(), ApiError> {
    let path = format!(
        "/api/v1/namespaces/{}/events",
        key.subject.event_namespace()
    );
    api.create(&path, &event(node, key, name, at)).await?;
    Ok(())
}

async fn update(
    api: &Api,
    key: &Key,
    name: &str,
    count: u32,
    at: DateTime<Utc>,
) -> Result<(), ApiError> {
    let path = format!(
        "/api/v1/namespaces/{}/events/{name}",
        key.subject.event_namespace()
    );
    let patch = json!({"count": count, "lastTimestamp": timestamp(at)});
    api.merge_patch(&path, &patch).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(reason: &str, message: &str) -> Key {
        Key {
            subject: Subject {
                kind: "Pod",
                namespace: "ns".into(),
                name: "p".into(),
                uid: "u".into(),
                field_path: Some("spec.containers{c}".into()),
            },
            kind: Type::Warning,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// As Kubernetes writes Events about cluster-scoped objects: in `default`, with no namespace
    /// in `involvedObject`, so `kubectl describe node` finds them.
    #[test]
    fn node_events_live_in_default_without_an_involved_namespace() {
        let key = Key {
            subject: Subject::node("n1"),
            kind: Type::Warning,
            reason: "InvalidPodCIDR".into(),
            message: "m".into(),
        };
        let event = event("n1", &key, "n1.1", Utc::now());
        assert_eq!(event["metadata"]["namespace"], "default");
        assert_eq!(event["involvedObject"]["kind"], "Node");
        assert!(event["involvedObject"].get("namespace").is_none());
    }

    #[test]
    fn repeats_count_on_the_first_event() {
        let mut correlator = Correlator::default();
        let first = Utc::now();
        let back_off = key("BackOff", "Back-off restarting failed container c in pod p");
        let Write::Create { name } = correlator.observe(&back_off, first) else {
            panic!("the first occurrence creates");
        };
        assert!(name.starts_with("p."));
        let later = first + chrono::Duration::seconds(10);
        assert_eq!(
            correlator.observe(&back_off, later),
            Write::Update {
                name: name.clone(),
                count: 2
            }
        );
        // Another message, reason or object is another event.
        assert!(matches!(
            correlator.observe(&key("BackOff", "other"), later),
            Write::Create { .. }
        ));
        assert!(matches!(
            correlator.observe(&key("Unhealthy", &back_off.message), later),
            Write::Create { .. }
        ));
        assert!(matches!(
            correlator.observe(&back_off, later),
            Write::Update { count: 3, .. }
        ));
        correlator.forget(&back_off);
        assert!(matches!(
            correlator.observe(&back_off, later),
            Write::Create { .. }
        ));
    }

    #[test]
    fn the_least_recently_used_is_forgotten() {
        let mut correlator = Correlator::default();
        let now = Utc::now();
        for n in 0..REMEMBERED {
            correlator.observe(&key("R", &n.to_string()), now);
        }
        // "0" used again: "1" is now the least recently used.
        correlator.observe(&key("R", "0"), now);
        correlator.observe(&key("R", "new"), now);
        assert_eq!(correlator.seen.len(), REMEMBERED);
        assert!(correlator.seen.contains_key(&key("R", "0")));
        assert!(!correlator.seen.contains_key(&key("R", "1")));
    }

    #[test]
    fn messages_are_bounded_at_a_character_boundary() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }

    #[test]
    fn container_subjects_name_their_list() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "c"}]}
        }))
        .expect("pod");
        assert_eq!(
            Subject::container(&pod, "i").field_path.as_deref(),
            Some("spec.initContainers{i}")
        );
        assert_eq!(
            Subject::container(&pod, "c").field_path.as_deref(),
            Some("spec.containers{c}")
        );
        assert_eq!(Subject::pod(&pod).field_path, None);
        let written = event("n", &key("BackOff", "m"), "p.1", Utc::now());
        assert_eq!(written["count"], 1);
        assert_eq!(written["type"], "Warning");
        assert_eq!(written["involvedObject"]["fieldPath"], "spec.containers{c}");
    }
}
