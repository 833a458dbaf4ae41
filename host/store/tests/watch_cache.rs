//! The watch cache over the embedded store: one upstream watch per resource, ordered delivery to
//! many watchers, resumes from the ring, too-old watches, slow watchers ended, and an upstream
//! watch that breaks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::watch;
use tokio::time::timeout;
use wasmkube_store::embedded::EmbeddedStore;
use wasmkube_store::watch_cache::{RingLimits, WATCHER_BUFFER, WatchCache, WatchCacheConfig};
use wasmkube_store::{
    Event, KeyValue, Op, Range, RangeResult, Store, StoreError, Txn, TxnResult, WatchItem,
    WatchStream,
};

const WAIT: Duration = Duration::from_secs(20);

/// The embedded store, counting the watches opened on it; while `down`, it refuses new watches,
/// and `cut` breaks every watch it has given out with an error.
struct Backend {
    store: Arc<EmbeddedStore>,
    watches: AtomicUsize,
    down: AtomicBool,
    cut: watch::Sender<u64>,
}

impl Backend {
    fn open(dir: &tempfile::TempDir) -> Arc<Self> {
        let store = EmbeddedStore::open(&dir.path().join("store.redb")).expect("open");
        Arc::new(Self {
            store,
            watches: AtomicUsize::new(0),
            down: AtomicBool::new(false),
            cut: watch::channel(0).0,
        })
    }

    fn watches(&self) -> usize {
        self.watches.load(Ordering::SeqCst)
    }

    fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

#[async_trait]
impl Store for Backend {
    async fn get(&self, key: &str) -> Result<(Option<KeyValue>, i64), StoreError> {
        self.store.get(key).await
    }
    async fn range(&self, range: Range) -> Result<RangeResult, StoreError> {
        self.store.range(range).await
    }
    async fn count(&self, prefix: &str) -> Result<i64, StoreError> {
        self.store.count(prefix).await
    }
    async fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError> {
        self.store.txn(txn).await
    }
    async fn watch(
        &self,
        prefix: &str,
        start: i64,
        progress: Duration,
    ) -> Result<WatchStream, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Embedded("down".into()));
        }
        let inner = self.store.watch(prefix, start, progress).await?;
        self.watches.fetch_add(1, Ordering::SeqCst);
        let mut cut = self.cut.subscribe();
        let cut = async move {
            let _ = cut.changed().await;
        };
        let broken = futures::stream::once(async { Err(StoreError::Embedded("cut".into())) });
        Ok(Box::pin(inner.take_until(cut).chain(broken)))
    }
    async fn compact(&self, revision: i64) -> Result<(), StoreError> {
        self.store.compact(revision).await
    }
    async fn revision(&self) -> Result<i64, StoreError> {
        self.store.revision().await
    }
}

fn cache(backend: &Arc<Backend>, events: usize) -> Arc<WatchCache> {
    let config = WatchCacheConfig {
        ring: RingLimits {
            events,
            bytes: 1 << 20,
        },
        upstream_progress: Duration::from_millis(100),
        ..WatchCacheConfig::default()
    };
    WatchCache::new(backend.clone(), config)
}

fn pod(ns: &str, name: &str) -> String {
    format!("/registry/core/pods/{ns}/{name}")
}

async fn write(store: &dyn Store, ops: Vec<Op>) -> i64 {
    let txn = Txn {
        compare: vec![],
        success: ops,
    };
    match store.txn(txn).await.expect("txn") {
        TxnResult::Succeeded { revision, .. } => revision,
        failed => panic!("{failed:?}"),
    }
}

fn put(key: &str, value: &str) -> Op {
    Op::Put {
        key: key.into(),
        value: Bytes::from(value.to_owned()),
    }
}

/// The next `n` events (progress skipped).
async fn events(stream: &mut WatchStream, n: usize) -> Vec<Event> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        match timeout(WAIT, stream.next()).await {
            Ok(Some(Ok(WatchItem::Event(e)))) => got.push(e),
            Ok(Some(Ok(WatchItem::Progress { .. }))) => {}
            other => panic!("after {} events: {other:?}", got.len()),
        }
    }
    got
}

/// A watch of every pod.
async fn pods(cache: &WatchCache, start: i64, progress: Duration) -> WatchStream {
    cache
        .watch("/registry/core/pods/", start, progress)
        .await
        .expect("watch")
}

/// The revisions of the next `n` events.
async fn revisions(stream: &mut WatchStream, n: usize) -> Vec<i64> {
    events(stream, n)
        .await
        .iter()
        .map(Event::revision)
        .collect()
}

fn ids(events: &[Event]) -> Vec<(i64, String)> {
    events
        .iter()
        .map(|e| (e.revision(), e.kv.key.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_watchers_share_one_upstream_and_see_every_event_once_in_order() {
    let dir = tempfile::tempdir().expect("dir");
    let backend = Backend::open(&dir);
    let cache = cache(&backend, 4096);
    let start = cache.revision().await.expect("revision") + 1;
    let mut all = Vec::new();
    let mut in_a = Vec::new();
    for _ in 0..50 {
        all.push(pods(&cache, start, Duration::ZERO).await);
        in_a.push(
            cache
                .watch("/registry/core/pods/a/", start, Duration::ZERO)
                .await
                .expect("watch"),
        );
    }
    let mut one = cache
        .watch(&pod("a", "p1"), start, Duration::ZERO)
        .await
        .expect("watch");
    // Another resource, its own upstream; a shorter prefix passes through.
    let _nodes = cache
        .watch("/registry/core/nodes/", 0, Duration::ZERO)
        .await
        .expect("watch");
    let _everything = cache
        .watch("/registry/", 0, Duration::ZERO)
        .await
        .expect("watch");
    assert_eq!(
        backend.watches(),
        3,
        "one upstream per resource, plus the pass-through"
    );

    for i in 0..100 {
        let ns = if i % 2 == 0 { "a" } else { "b" };
        write(
            &*cache,
            vec![put(&pod(ns, &format!("p{}", i % 7)), &i.to_string())],
        )
        .await;
    }
    // One transaction, two events at one revision.
    write(
        &*cache,
        vec![put(&pod("a", "p1"), "x"), put(&pod("b", "p1"), "y")],
    )
    .await;
    let expected = ids(&events(
        &mut backend
            .store
            .watch("/registry/core/pods/", start, Duration::ZERO)
            .await
            .expect("watch"),
        102,
    )
    .await);
    let expected_a: Vec<_> = expected
        .iter()
        .filter(|(_, k)| k.starts_with("/registry/core/pods/a/"))
        .cloned()
        .collect();
    let expected_one: Vec<_> = expected
        .iter()
        .filter(|(_, k)| *k == pod("a", "p1"))
        .cloned()
        .collect();
    for stream in &mut all {
        assert_eq!(ids(&events(stream, expected.len()).await), expected);
    }
    for stream in &mut in_a {
        assert_eq!(ids(&events(stream, expected_a.len()).await), expected_a);
    }
    assert_eq!(
        ids(&events(&mut one, expected_one.len()).await),
        expected_one
    );
    // Nothing more, not even twice.
    let more = timeout(Duration::from_millis(300), all[0].next()).await;
    assert!(more.is_err(), "{more:?}");
    assert_eq!(backend.watches(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_from_the_ring_and_older_watches_go_to_the_backend() {
    let dir = tempfile::tempdir().expect("dir");
    let backend = Backend::open(&dir);
    let cache = cache(&backend, 8);
    let before = write(&*cache, vec![put(&pod("a", "old"), "0")]).await;
    let _first = pods(&cache, 0, Duration::ZERO).await;
    let mut written = Vec::new();
    for i in 0..12 {
        written.push(write(&*cache, vec![put(&pod("a", "p"), &i.to_string())]).await);
    }
    let held = async {
        loop {
            let stats = cache.stats().await;
            if stats[0].events == 8 && stats[0].from == written[4] {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    timeout(WAIT, held)
        .await
        .expect("the ring holds the last 8 events");
    // Within the ring: from memory.
    let mut recent = cache
        .watch("/registry/core/pods/a/", written[6], Duration::ZERO)
        .await
        .expect("watch");
    let got: Vec<i64> = revisions(&mut recent, 6).await;
    assert_eq!(got, written[6..]);
    assert_eq!(backend.watches(), 1);
    // Older than the ring: the backend replays it, correctly.
    let mut older = pods(&cache, before, Duration::ZERO).await;
    let got: Vec<i64> = revisions(&mut older, 13).await;
    assert_eq!(got[0], before);
    assert_eq!(got[1..], written);
    assert_eq!(backend.watches(), 2);
    // Older than the ring and compacted: too old, as the backend says.
    cache.compact(written[2]).await.expect("compact");
    match cache
        .watch("/registry/core/pods/", written[1], Duration::ZERO)
        .await
    {
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            assert_eq!((requested, compacted), (written[1], written[2]))
        }
        Err(other) => panic!("expected Compacted, got {other:?}"),
        Ok(_) => panic!("a compacted revision was watched"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_falls_behind_the_ring_is_ended_as_too_old() {
    let dir = tempfile::tempdir().expect("dir");
    let backend = Backend::open(&dir);
    let ring = 4 * WATCHER_BUFFER.events;
    let cache = cache(&backend, ring);
    let mut slow = pods(&cache, 0, Duration::ZERO).await;
    let mut fast = pods(&cache, 0, Duration::ZERO).await;
    // The slow watcher reads one event, then stops reading.
    let first = write(&*cache, vec![put(&pod("a", "p"), "0")]).await;
    assert_eq!(events(&mut slow, 1).await[0].revision(), first);
    let total = 2 * ring;
    for i in 1..total {
        write(&*cache, vec![put(&pod("a", "p"), &i.to_string())]).await;
        if i % 16 == 0 {
            events(&mut fast, 16).await;
        }
    }
    let rest = total - 1 - (total - 1) / 16 * 16;
    events(&mut fast, rest + 1).await;
    // The slow watcher gets at most its buffer, then the end as too old.
    let mut delivered = 0;
    loop {
        match timeout(WAIT, slow.next()).await.expect("an answer") {
            Some(Ok(WatchItem::Event(_))) => delivered += 1,
            Some(Err(StoreError::Compacted {
                requested,
                compacted,
            })) => {
                assert!(requested < compacted, "{requested} {compacted}");
                break;
            }
            other => panic!("expected events then Compacted, got {other:?}"),
        }
    }
    assert!(
        delivered <= WATCHER_BUFFER.events,
        "{delivered} events buffered"
    );
    assert!(
        slow.next().await.is_none(),
        "the stream ends after the error"
    );
    assert_eq!(cache.stats().await[0].too_slow, 1);
    let stats = cache.stats().await;
    assert_eq!(stats[0].events, ring, "the ring stays bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_upstream_watch_is_re_established_without_gaps() {
    let dir = tempfile::tempdir().expect("dir");
    let backend = Backend::open(&dir);
    let cache = cache(&backend, 4096);
    let mut watcher = pods(&cache, 0, Duration::ZERO).await;
    let mut written = Vec::new();
    for round in 0..3 {
        for i in 0..5 {
            written.push(
                write(
                    &*cache,
                    vec![put(&pod("a", &format!("p{i}")), &round.to_string())],
                )
                .await,
            );
        }
        backend.cut();
    }
    let got: Vec<i64> = events(&mut watcher, written.len())
        .await
        .iter()
        .map(Event::revision)
        .collect();
    assert_eq!(got, written);
    let more = timeout(Duration::from_millis(500), watcher.next()).await;
    assert!(more.is_err(), "{more:?}");
    assert!(backend.watches() >= 2, "re-established");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_lost_while_the_upstream_was_down_ends_watchers_as_too_old() {
    let dir = tempfile::tempdir().expect("dir");
    let backend = Backend::open(&dir);
    let cache = cache(&backend, 4096);
    let mut watcher = pods(&cache, 0, Duration::ZERO).await;
    let seen = write(&*cache, vec![put(&pod("a", "p"), "0")]).await;
    assert_eq!(events(&mut watcher, 1).await[0].revision(), seen);
    backend.down.store(true, Ordering::SeqCst);
    backend.cut();
    for i in 1..5 {
        write(&*cache, vec![put(&pod("a", "p"), &i.to_string())]).await;
    }
    let now = cache.revision().await.expect("revision");
    cache.compact(now).await.expect("compact");
    backend.down.store(false, Ordering::SeqCst);
    match timeout(WAIT, watcher.next()).await.expect("an answer") {
        Some(Err(StoreError::Compacted { requested, .. })) => assert_eq!(requested, seen),
        other => panic!("expected Compacted, got {other:?}"),
    }
    // A new watch is served from the new ring.
    let mut again = pods(&cache, 0, Duration::ZERO).await;
    let next = write(&*cache, vec![put(&pod("a", "p"), "new")]).await;
    assert_eq!(events(&mut again, 1).await[0].revision(), next);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_watches_report_progress() {
    let dir = tempfile::tempdir().expect("dir");
    let backend = Backend::open(&dir);
    let cache = cache(&backend, 4096);
    let mut watcher = pods(&cache, 0, Duration::from_millis(200)).await;
    let elsewhere = write(&*cache, vec![put("/registry/core/nodes/n", "x")]).await;
    let reached = async {
        loop {
            match watcher.next().await {
                Some(Ok(WatchItem::Progress { revision })) if revision >= elsewhere => return,
                Some(Ok(WatchItem::Progress { .. })) => {}
                other => panic!("expected progress, got {other:?}"),
            }
        }
    };
    timeout(WAIT, reached)
        .await
        .expect("progress moves past writes elsewhere");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_watch_from_the_future_does_not_leave_the_present_uncached() {
    let dir = tempfile::tempdir().expect("dir");
    let backend = Backend::open(&dir);
    let cache = cache(&backend, 4096);
    let now = cache.revision().await.expect("revision");
    let mut future = pods(&cache, now + 3, Duration::ZERO).await;
    let mut present = pods(&cache, now + 1, Duration::ZERO).await;
    assert_eq!(backend.watches(), 1, "both from the ring");
    let mut written = Vec::new();
    for i in 0..4 {
        written.push(write(&*cache, vec![put(&pod("a", "p"), &i.to_string())]).await);
    }
    let got: Vec<i64> = revisions(&mut present, 4).await;
    assert_eq!(got, written);
    let got: Vec<i64> = revisions(&mut future, 2).await;
    assert_eq!(got, written[2..]);
}
