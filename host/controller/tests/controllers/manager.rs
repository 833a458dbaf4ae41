//! The manager over a real apiserver and store: keys reach the reconciler, owned objects enqueue their owner, swaps lose nothing.

use crate::common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use wasmkube_apiserver::Server;
use wasmkube_apiserver::registry::{WriteOptions, create_object};
use wasmkube_controller::{Controller, Manager, ObjectKey, Outcome, Reconciler};

/// Records every key it is asked about, under a label.
struct Recorder {
    label: &'static str,
    seen: Arc<Mutex<Vec<(&'static str, ObjectKey)>>>,
    delay: Duration,
}

#[async_trait::async_trait]
impl Reconciler for Recorder {
    async fn reconcile(&self, key: ObjectKey) -> Result<Outcome, String> {
        tokio::time::sleep(self.delay).await;
        self.seen
            .lock()
            .expect("not poisoned")
            .push((self.label, key));
        Ok(Outcome::Done)
    }
}

async fn server() -> (Arc<Server>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::server(&dir).await;
    (server, dir)
}

async fn create(server: &Server, kind: &str, ns: Option<&str>, obj: Value) -> Value {
    let registry = server.registry();
    let info = registry
        .by_kind(
            if kind == "ReplicaSet" {
                "apps/v1"
            } else {
                "v1"
            },
            kind,
        )
        .expect("served");
    create_object(
        server,
        info,
        ns,
        obj,
        WriteOptions::INTERNAL,
        &mut Vec::new(),
    )
    .await
    .expect("created")
}

fn controller(server: &Server) -> Controller {
    let registry = server.registry();
    Controller {
        name: "test".into(),
        primary: registry
            .by_kind("apps/v1", "ReplicaSet")
            .expect("served")
            .clone(),
        owns: vec![registry.by_kind("v1", "Pod").expect("served").clone()],
        reads: vec![],
        triggers: vec![],
        workers: 2,
    }
}

fn replicaset(name: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {"selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
}

async fn until(
    seen: &Arc<Mutex<Vec<(&'static str, ObjectKey)>>>,
    check: impl Fn(&[(&'static str, ObjectKey)]) -> bool,
) {
    for _ in 0..200 {
        if check(&seen.lock().expect("not poisoned")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "never happened; seen {:?}",
        seen.lock().expect("not poisoned")
    );
}

#[tokio::test]
async fn primaries_and_owned_objects_enqueue_the_owner() {
    let (server, _dir) = server().await;
    let existing = create(&server, "ReplicaSet", Some("default"), replicaset("early")).await;
    let manager = Manager::new(server.clone());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let _running = manager
        .start(
            controller(&server),
            Box::new(Recorder {
                label: "v1",
                seen: seen.clone(),
                delay: Duration::ZERO,
            }),
        )
        .await;
    let key = |name: &str| ObjectKey {
        namespace: "default".into(),
        name: name.into(),
    };
    until(&seen, |s| s.iter().any(|(_, k)| *k == key("early"))).await;
    create(&server, "ReplicaSet", Some("default"), replicaset("late")).await;
    until(&seen, |s| s.iter().any(|(_, k)| *k == key("late"))).await;

    let before = seen
        .lock()
        .expect("not poisoned")
        .iter()
        .filter(|(_, k)| *k == key("early"))
        .count();
    let owner = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "early", "uid": existing["metadata"]["uid"], "controller": true}]);
    create(&server, "Pod", Some("default"), json!({"metadata": {"name": "p", "ownerReferences": owner}, "spec": {"containers": [{"name": "c", "image": "i"}]}})).await;
    until(&seen, |s| {
        s.iter().filter(|(_, k)| *k == key("early")).count() > before
    })
    .await;
    // An object with no controlling owner of the primary kind enqueues nothing.
    create(&server, "Pod", Some("default"), json!({"metadata": {"name": "orphan"}, "spec": {"containers": [{"name": "c", "image": "i"}]}})).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !seen
            .lock()
            .expect("not poisoned")
            .iter()
            .any(|(_, k)| k.name == "orphan")
    );
}

#[tokio::test]
async fn a_swap_loses_no_queued_key() {
    let (server, _dir) = server().await;
    let manager = Manager::new(server.clone());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let slow = Recorder {
        label: "old",
        seen: seen.clone(),
        delay: Duration::from_millis(20),
    };
    let running = manager.start(controller(&server), Box::new(slow)).await;
    for i in 0..40 {
        create(
            &server,
            "ReplicaSet",
            Some("default"),
            replicaset(&format!("rs{i}")),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    running.swap(Box::new(Recorder {
        label: "new",
        seen: seen.clone(),
        delay: Duration::ZERO,
    }));
    until(&seen, |s| {
        s.iter()
            .map(|(_, k)| k.name.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            == 40
    })
    .await;
    let by_label: BTreeMap<&str, usize> =
        seen.lock()
            .expect("not poisoned")
            .iter()
            .fold(BTreeMap::new(), |mut m, (l, _)| {
                *m.entry(*l).or_default() += 1;
                m
            });
    assert!(
        by_label.get("old").is_some_and(|n| *n > 0) && by_label.get("new").is_some_and(|n| *n > 0),
        "{by_label:?}"
    );
}
