//! The Job and CronJob controllers as Wasm components in the real host, the test acting as the node.

use crate::common;

use std::time::Duration;

use common::Cluster;
use serde_json::{Value, json};

/// A server with the garbage collector and the named plugins running.
async fn cluster(plugins: &[&str]) -> Cluster {
    common::with_plugins(plugins).await
}

fn job_spec(extra: Value) -> Value {
    let mut spec = json!({"template": {"spec": {"restartPolicy": "Never",
        "containers": [{"name": "c", "image": "busybox"}]}}});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    spec
}

impl Cluster {
    /// The simulated node: every pod not yet finished gets phase `phase`; returns how many
    /// pods were running.
    async fn finish_running_pods(&self, phase: &str) -> usize {
        let running: Vec<String> = self
            .list("v1", "Pod")
            .await
            .iter()
            .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
            .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
            .collect();
        for name in &running {
            self.set_status("v1", "Pod", name, json!({"phase": phase}))
                .await;
        }
        running.len()
    }
}

fn condition(job: &Value, type_: &str) -> Option<String> {
    job["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .and_then(|c| c["status"].as_str().map(String::from))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_its_completions_with_bounded_parallelism() {
    let c = cluster(&["wasmkube_plugin_job"]).await;
    let spec = job_spec(json!({"completions": 3, "parallelism": 2}));
    c.create(
        "batch/v1",
        "Job",
        json!({"metadata": {"name": "pi"}, "spec": spec}),
    )
    .await;
    c.until("two pods", async |c| c.list("v1", "Pod").await.len() == 2)
        .await;
    for pod in c.list("v1", "Pod").await {
        assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "Job");
        assert_eq!(
            pod["metadata"]["labels"]["batch.kubernetes.io/job-name"],
            "pi"
        );
        assert!(
            pod["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("pi-"))
        );
    }
    c.until("completed", async |c| {
        let running = c.finish_running_pods("Succeeded").await;
        assert!(running <= 2, "at most parallelism pods run: {running}");
        condition(&c.get("batch/v1", "Job", "pi").await, "Complete").as_deref() == Some("True")
    })
    .await;
    let job = c.get("batch/v1", "Job", "pi").await;
    assert_eq!(job["status"]["succeeded"], 3, "{job:#}");
    assert!(job["status"]["completionTime"].is_string());
    assert_eq!(
        c.list("v1", "Pod").await.len(),
        3,
        "no more pods than completions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_fails_past_its_backoff_limit() {
    let c = cluster(&["wasmkube_plugin_job"]).await;
    let spec = job_spec(json!({"completions": 4, "parallelism": 2, "backoffLimit": 1}));
    c.create(
        "batch/v1",
        "Job",
        json!({"metadata": {"name": "flaky"}, "spec": spec}),
    )
    .await;
    c.until("failed", async |c| {
        c.finish_running_pods("Failed").await;
        condition(&c.get("batch/v1", "Job", "flaky").await, "Failed").as_deref() == Some("True")
    })
    .await;
    let job = c.get("batch/v1", "Job", "flaky").await;
    assert_eq!(
        job["status"]["failed"], 2,
        "backoffLimit + 1 failures: {job:#}"
    );
    let failed = job["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Failed")
        .cloned()
        .unwrap_or_default();
    assert_eq!(failed["reason"], "BackoffLimitExceeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cronjob_keeps_its_history_and_schedules_on_the_minute() {
    let c = cluster(&["wasmkube_plugin_cronjob"]).await;
    let cj = c
        .create(
            "batch/v1",
            "CronJob",
            json!({"metadata": {"name": "tick"}, "spec": {"schedule": "* * * * *",
                "successfulJobsHistoryLimit": 1,
                "jobTemplate": {"spec": job_spec(json!({}))}}}),
        )
        .await;
    let owner = json!([{"apiVersion": "batch/v1", "kind": "CronJob", "name": "tick",
        "uid": cj["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]);
    for (name, day) in [("old", 1), ("newest", 3), ("middle", 2)] {
        let job = json!({"metadata": {"name": name, "ownerReferences": owner},
            "spec": job_spec(json!({"suspend": true}))});
        c.create("batch/v1", "Job", job).await;
        let at = format!("2025-01-0{day}T00:00:00Z");
        let status = json!({"startTime": at, "completionTime": at, "succeeded": 1,
            "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": at}]});
        c.set_status("batch/v1", "Job", name, status).await;
    }
    c.until("history cleaned", async |c| {
        let jobs = c.list("batch/v1", "Job").await;
        jobs.len() == 1 && jobs[0]["metadata"]["name"] == "newest"
    })
    .await;
    c.until("last success recorded", async |c| {
        c.get("batch/v1", "CronJob", "tick").await["status"]["lastSuccessfulTime"]
            == "2025-01-03T00:00:00Z"
    })
    .await;

    let now = chrono::Utc::now().timestamp();
    let next_minute = now.div_euclid(60) + 1;
    if next_minute * 60 - now > 15 {
        // Too long to wait: nothing may have been scheduled yet.
        let cj = c.get("batch/v1", "CronJob", "tick").await;
        assert!(cj["status"]["lastScheduleTime"].is_null(), "{cj:#}");
        assert!(cj["status"]["active"].is_null(), "{cj:#}");
        return;
    }
    let name = format!("tick-{next_minute}");
    tokio::time::sleep(Duration::from_secs(
        u64::try_from(next_minute * 60 - now).unwrap_or(0),
    ))
    .await;
    c.until("the job of the minute", async |c| {
        let cj = c.get("batch/v1", "CronJob", "tick").await;
        cj["status"]["active"][0]["name"] == name.as_str()
    })
    .await;
    let job = c.get("batch/v1", "Job", &name).await;
    assert_eq!(
        job["metadata"]["ownerReferences"][0]["uid"],
        cj["metadata"]["uid"]
    );
    assert!(
        job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with(":00Z"))
    );
}
