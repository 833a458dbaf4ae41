//! Event expiry: Events last seen longer ago than the cluster's event TTL (kube-apiserver's
//! `--event-ttl`, 1 h by default) are deleted, so they cannot grow the store without bound.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use wasmkube_apiserver::Server;
use wasmkube_apiserver::error::ApiError;
use wasmkube_apiserver::registry::{DeleteOptions, delete_object};
use wasmkube_model::meta::{self, ResourceExt};

/// How often expired Events are looked for (more often when the TTL is shorter).
const SWEEP: Duration = Duration::from_secs(60);
/// Events read per page while sweeping.
const PAGE: usize = 500;

/// When `event` was last seen: the latest of its timestamps.
fn last_seen(event: &Value) -> Option<DateTime<Utc>> {
    [
        "/lastTimestamp",
        "/eventTime",
        "/series/lastObservedTime",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .filter_map(|p| event.pointer(p).and_then(Value::as_str))
    .filter_map(meta::parse_time)
    .max()
}

/// Whether `event` was last seen more than `ttl` before `now` (one without any time is).
pub fn expired(event: &Value, ttl: Duration, now: DateTime<Utc>) -> bool {
    let Ok(ttl) = chrono::TimeDelta::from_std(ttl) else {
        return false;
    };
    last_seen(event).is_none_or(|seen| now.signed_duration_since(seen) > ttl)
}

/// Sweeps every [`SWEEP`] (or TTL, if shorter) for ever.
pub async fn run(server: Arc<Server>) {
    let period = SWEEP
        .min(server.cluster.event_ttl)
        .max(Duration::from_secs(1));
    let mut ticks = tokio::time::interval(period);
    loop {
        ticks.tick().await;
        if let Err(e) = sweep(&server, Utc::now()).await {
            tracing::warn!(error = %e, "expiring events");
        }
    }
}

/// Deletes the Events expired at `now`; how many.
pub async fn sweep(server: &Server, now: DateTime<Utc>) -> Result<usize, ApiError> {
    let Some(info) = server.registry().by_kind("v1", "Event").cloned() else {
        return Ok(0);
    };
    let ttl = server.cluster.event_ttl;
    let mut deleted = 0;
    let mut token = None;
    loop {
        let page = server
            .objects
            .list(&info, None, Some(PAGE), token.as_deref(), None, |e| {
                expired(e, ttl, now)
            })
            .await?;
        for event in &page.items {
            let ns = event.namespace();
            match delete_object(
                server,
                &info,
                ns,
                event.name(),
                &DeleteOptions::background(),
            )
            .await
            {
                Ok(_) => deleted += 1,
                Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        match page.continue_token {
            Some(next) => token = Some(next),
            None => return Ok(deleted),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        meta::parse_time(text).expect("valid")
    }

    #[test]
    fn events_expire_an_hour_after_they_were_last_seen() {
        let hour = Duration::from_secs(3600);
        let event = json!({"metadata": {"creationTimestamp": "2025-01-01T00:00:00Z"},
            "lastTimestamp": "2025-01-01T00:30:00Z"});
        assert!(!expired(&event, hour, at("2025-01-01T01:29:00Z")));
        assert!(expired(&event, hour, at("2025-01-01T01:31:00Z")));
        let series = json!({"eventTime": "2025-01-01T00:00:00.000000Z",
            "series": {"lastObservedTime": "2025-01-01T02:00:00.000000Z"}});
        assert!(!expired(&series, hour, at("2025-01-01T02:59:00Z")));
        assert!(expired(
            &json!({"metadata": {}}),
            hour,
            at("2025-01-01T00:00:00Z")
        ));
    }
}
