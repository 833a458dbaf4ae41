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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicI64, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::{KeyValue, RangeResult, StoreError, Txn, TxnResult, WatchStream};

    /// Only knows its revision and records compactions.
    #[derive(Default)]
    struct Recorder {
        revision: AtomicI64,
        compactions: Mutex<Vec<i64>>,
    }

    impl Recorder {
        fn compactions(&self) -> Vec<i64> {
            self.compactions.lock().expect("not poisoned").clone()
        }
    }

    fn unused() -> StoreError {
        StoreError::Embedded("not used by the compactor".into())
    }

    #[async_trait]
    impl Store for Recorder {
        async fn get(&self, _: &str) -> Result<(Option<KeyValue>, i64), StoreError> {
            Err(unused())
        }
        async fn range(&self, _: crate::Range) -> Result<RangeResult, StoreError> {
            Err(unused())
        }
        async fn count(&self, _: &str) -> Result<i64, StoreError> {
            Err(unused())
        }
        async fn txn(&self, _: Txn) -> Result<TxnResult, StoreError> {
            Err(unused())
        }
        async fn watch(&self, _: &str, _: i64, _: Duration) -> Result<WatchStream, StoreError> {
            Err(unused())
        }
        async fn compact(&self, revision: i64) -> Result<(), StoreError> {
            self.compactions
                .lock()
                .expect("not poisoned")
                .push(revision);
            Ok(())
        }
        async fn revision(&self) -> Result<i64, StoreError> {
            Ok(self.revision.load(Ordering::SeqCst))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn compacts_to_the_revision_seen_one_interval_earlier() {
        let interval = Duration::from_secs(300);
        let store = Arc::new(Recorder::default());
        store.revision.store(10, Ordering::SeqCst);
        let handle = spawn(store.clone(), interval);
        // The first tick is immediate: it only notes revision 10.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(store.compactions().is_empty());
        store.revision.store(20, Ordering::SeqCst);
        tokio::time::sleep(interval).await;
        assert_eq!(store.compactions(), [10]);
        store.revision.store(30, Ordering::SeqCst);
        tokio::time::sleep(interval).await;
        assert_eq!(store.compactions(), [10, 20]);
        // Nothing new: compacts to 30 once, then stays quiet.
        tokio::time::sleep(interval * 3).await;
        assert_eq!(store.compactions(), [10, 20, 30]);
        handle.abort();
    }
}
