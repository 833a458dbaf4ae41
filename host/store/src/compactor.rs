//! The periodic compactor: like kube-apiserver's, each interval it compacts to the revision it
//! saw one interval earlier, so watchers always have at least one interval of history.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{MissedTickBehavior, interval as every};

use crate::Store;

/// Spawns the compactor on the current runtime. Abort the handle to stop it.
pub fn spawn(store: Arc<dyn Store>, interval: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = every(interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The revision seen at the previous tick, and the last one compacted to.
        let mut seen: Option<i64> = None;
        let mut compacted = 0;
        loop {
            ticks.tick().await;
            if let Some(target) = seen
                && target > compacted
            {
                match store.compact(target).await {
                    Ok(()) => {
                        tracing::info!(revision = target, "compacted the store");
                        compacted = target;
                    }
                    Err(err) => {
                        tracing::warn!(revision = target, error = %err, "compaction failed")
                    }
                }
            }
            match store.revision().await {
                Ok(revision) => seen = Some(revision),
                Err(err) => tracing::warn!(error = %err, "compactor could not read the revision"),
            }
        }
    })
}
