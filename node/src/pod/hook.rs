//! Container lifecycle hooks: `postStart` right after a container starts and `preStop` before
//! it is stopped, each an exec, httpGet or sleep action (tcpSocket is refused, as by the kubelet).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::LifecycleHandler;

use super::probe::{self, Action, Outcome, Target};
use crate::runtime::Runtime;

/// Runs `handler` against the container; `Err` says why it failed, as the kubelet's events do.
pub async fn run(
    runtime: &Arc<dyn Runtime>,
    target: &Target,
    handler: &LifecycleHandler,
    limit: Duration,
) -> Outcome {
    if let Some(sleep) = &handler.sleep {
        let seconds = u64::try_from(sleep.seconds).unwrap_or(0);
        tokio::time::sleep(Duration::from_secs(seconds).min(limit)).await;
        return Ok(());
    }
    if handler.exec.is_none() && handler.http_get.is_none() {
        return Err("invalid handler: only exec, httpGet and sleep are supported".into());
    }
    let action = Action {
        exec: handler.exec.as_ref(),
        http_get: handler.http_get.as_ref(),
        tcp_socket: None,
    };
    probe::act(runtime, target, &action, limit).await
}
