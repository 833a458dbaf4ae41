//! Events recorded by the host's components: the same report about the same object is one Event
//! whose count goes up, as Kubernetes' event correlator does.

use crate::common;

use serde_json::json;
use wasmkube_apiserver::registry::events;
use wasmkube_model::event::EventType;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_reports_are_counted_on_one_event() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::server(&dir).await;
    let pod = common::create(
        &server,
        "v1",
        "Pod",
        Some("default"),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .await;
    for message in [
        "0/1 nodes are available.",
        "0/1 nodes are available.",
        "0/2 nodes are available.",
    ] {
        events::record(
            &server,
            "default-scheduler",
            &pod,
            EventType::Warning,
            "FailedScheduling",
            message,
        )
        .await
        .expect("recorded");
    }
    let events = common::events_in_default(&server).await;
    let mut seen: Vec<(String, i64)> = events
        .iter()
        .map(|e| {
            (
                e["message"].as_str().unwrap_or_default().to_string(),
                e["count"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("0/1 nodes are available.".to_string(), 2),
            ("0/2 nodes are available.".to_string(), 1)
        ]
    );
    assert!(
        events
            .iter()
            .all(|e| e["involvedObject"]["name"] == "p" && e["type"] == "Warning")
    );
}
