//! The conformance suite: one set of tests run against every backend (embedded and a real etcd),
//! and against each behind the watch cache.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::time::timeout;
use wasmkube_store::embedded::EmbeddedStore;
use wasmkube_store::etcd::EtcdStore;
use wasmkube_store::etcd::testing::EtcdServer;
use wasmkube_store::watch_cache::{WatchCache, WatchCacheConfig};
use wasmkube_store::{
    Compare, Event, EventKind, KeyValue, Op, Range, Store, StoreError, Txn, TxnResult, WatchItem,
    WatchStream,
};

/// A store under test and whatever must live as long as it (a temp dir, an etcd process).
struct Env {
    store: Arc<dyn Store>,
    _guard: Box<dyn Any + Send>,
}

async fn embedded_env() -> Env {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).expect("open embedded store");
    Env {
        store,
        _guard: Box::new(dir),
    }
}

async fn etcd_env() -> Env {
    let server = EtcdServer::start()
        .await
        .expect("starting etcd for the conformance suite (is etcd installed? run scripts/etcd.sh)");
    // A namespace checks that keys are prefixed on the way in and stripped on the way out.
    let store = EtcdStore::connect_with_prefix(&server.endpoints(), "/conformance")
        .await
        .expect("connect to etcd");
    Env {
        store,
        _guard: Box::new(server),
    }
}

/// `env`'s store behind a watch cache whose resources are the keys' first segment, so that the
/// suite's watches are served from it.
fn behind_cache(env: Env) -> Env {
    let config = WatchCacheConfig {
        depth: 1,
        ..WatchCacheConfig::default()
    };
    Env {
        store: WatchCache::new(env.store, config),
        _guard: env._guard,
    }
}

async fn cached_env() -> Env {
    behind_cache(embedded_env().await)
}

/// A real etcd behind a watch cache: what `wasmkube server --store etcd://` runs.
async fn cached_etcd_env() -> Env {
    behind_cache(etcd_env().await)
}

macro_rules! conformance {
    (@backend $module:ident, $env:ident, $($name:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let env = super::$env().await;
                    super::$name(env.store.clone()).await;
                }
            )*
        }
    };
    ($($name:ident),* $(,)?) => {
        conformance!(@backend embedded, embedded_env, $($name),*);
        conformance!(@backend etcd, etcd_env, $($name),*);
        conformance!(@backend cached, cached_env, $($name),*);
        conformance!(@backend cached_etcd, cached_etcd_env, $($name),*);
    };
}

conformance!(
    revisions_are_monotonic,
    create_and_mod_revisions_and_versions,
    create_if_absent_conflicts,
    cas_update_conflict_returns_current,
    delete_with_compare,
    multi_op_txn_is_atomic,
    range_prefix_start_limit_more,
    range_at_old_revision,
    compacted_range_and_watch,
    compaction_keeps_latest_versions,
    watch_replays_then_goes_live,
    watch_from_zero_sees_only_new,
    watch_filters_by_prefix,
    delete_events_carry_prev,
    watch_progress,
    watch_long_replay_and_slow_consumer,
    large_value_round_trip,
    concurrent_cas_increments,
);

const WAIT: Duration = Duration::from_secs(20);

fn put_op(key: &str, value: &str) -> Op {
    Op::Put {
        key: key.into(),
        value: Bytes::from(value.to_owned()),
    }
}

/// Unconditional put; returns the new revision.
async fn put(store: &Arc<dyn Store>, key: &str, value: &str) -> i64 {
    let txn = Txn {
        compare: vec![],
        success: vec![put_op(key, value)],
    };
    match store.txn(txn).await.expect("put") {
        TxnResult::Succeeded { revision, .. } => revision,
        failed => panic!("unconditional put failed: {failed:?}"),
    }
}

async fn cas(store: &Arc<dyn Store>, key: &str, expected: i64, op: Op) -> TxnResult {
    let txn = Txn {
        compare: vec![Compare::ModRevision {
            key: key.into(),
            revision: expected,
        }],
        success: vec![op],
    };
    store.txn(txn).await.expect("txn")
}

async fn get(store: &Arc<dyn Store>, key: &str) -> Option<KeyValue> {
    store.get(key).await.expect("get").0
}

async fn next_item(stream: &mut WatchStream) -> WatchItem {
    match timeout(WAIT, stream.next()).await {
        Ok(Some(Ok(item))) => item,
        other => panic!("expected a watch item, got {other:?}"),
    }
}

/// The next `n` events, skipping progress items.
async fn events(stream: &mut WatchStream, n: usize) -> Vec<Event> {
    let mut events = Vec::with_capacity(n);
    while events.len() < n {
        if let WatchItem::Event(event) = next_item(stream).await {
            events.push(event);
        }
    }
    events
}

/// Fails if an event arrives within a short while.
async fn assert_no_event(stream: &mut WatchStream) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    while let Ok(item) = tokio::time::timeout_at(deadline, stream.next()).await {
        match item {
            Some(Ok(WatchItem::Progress { .. })) => {}
            other => panic!("unexpected watch item {other:?}"),
        }
    }
}

fn keys(kvs: &[KeyValue]) -> Vec<&str> {
    kvs.iter().map(|kv| kv.key.as_str()).collect()
}

fn range(prefix: &str) -> Range {
    Range {
        prefix: prefix.into(),
        ..Range::default()
    }
}

async fn revisions_are_monotonic(store: Arc<dyn Store>) {
    let mut last = store.revision().await.expect("revision");
    for i in 0..10 {
        let revision = put(&store, &format!("/m/{i}"), "v").await;
        assert!(revision > last, "revision {revision} after {last}");
        last = revision;
        assert_eq!(store.revision().await.expect("revision"), revision);
    }
    let (_, at) = store.get("/m/0").await.expect("get");
    assert_eq!(at, last);
}

async fn create_and_mod_revisions_and_versions(store: Arc<dyn Store>) {
    let r1 = put(&store, "/k", "a").await;
    let kv = get(&store, "/k").await.expect("created");
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r1, r1, 1)
    );
    assert_eq!(kv.value, Bytes::from("a"));
    let r2 = put(&store, "/k", "b").await;
    let kv = get(&store, "/k").await.expect("updated");
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r1, r2, 2)
    );
    let TxnResult::Succeeded { prev, .. } =
        cas(&store, "/k", r2, Op::Delete { key: "/k".into() }).await
    else {
        panic!("delete failed")
    };
    assert_eq!(prev[0].as_ref().map(|kv| kv.version), Some(2));
    assert_eq!(get(&store, "/k").await, None);
    let r4 = put(&store, "/k", "c").await;
    let kv = get(&store, "/k").await.expect("recreated");
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r4, r4, 1)
    );
}

async fn create_if_absent_conflicts(store: Arc<dyn Store>) {
    let first = cas(&store, "/c", 0, put_op("/c", "one")).await;
    let TxnResult::Succeeded { revision, prev } = first else {
        panic!("create failed: {first:?}")
    };
    assert_eq!(prev, vec![None]);
    let second = cas(&store, "/c", 0, put_op("/c", "two")).await;
    let TxnResult::Failed { current, .. } = second else {
        panic!("second create succeeded: {second:?}")
    };
    let current = current[0].clone().expect("current value");
    assert_eq!(
        (current.value, current.mod_revision),
        (Bytes::from("one"), revision)
    );
}

async fn cas_update_conflict_returns_current(store: Arc<dyn Store>) {
    let r1 = put(&store, "/u", "v1").await;
    let r2 = put(&store, "/u", "v2").await;
    let stale = cas(&store, "/u", r1, put_op("/u", "v3")).await;
    let TxnResult::Failed { revision, current } = stale else {
        panic!("stale update succeeded: {stale:?}")
    };
    assert_eq!(revision, r2);
    let current = current[0].clone().expect("current");
    assert_eq!(
        (current.value, current.mod_revision, current.version),
        (Bytes::from("v2"), r2, 2)
    );
    let fresh = cas(&store, "/u", r2, put_op("/u", "v3")).await;
    let TxnResult::Succeeded { revision, prev } = fresh else {
        panic!("fresh update failed: {fresh:?}")
    };
    assert!(revision > r2);
    assert_eq!(
        prev[0].as_ref().map(|kv| kv.value.clone()),
        Some(Bytes::from("v2"))
    );
    assert_eq!(
        get(&store, "/u").await.map(|kv| kv.value),
        Some(Bytes::from("v3"))
    );
}

async fn delete_with_compare(store: Arc<dyn Store>) {
    let r1 = put(&store, "/d", "v").await;
    let delete = || Op::Delete { key: "/d".into() };
    let wrong = cas(&store, "/d", r1 + 100, delete()).await;
    assert!(matches!(wrong, TxnResult::Failed { .. }), "{wrong:?}");
    assert!(get(&store, "/d").await.is_some());
    let right = cas(&store, "/d", r1, delete()).await;
    let TxnResult::Succeeded { revision, prev } = right else {
        panic!("delete failed: {right:?}")
    };
    assert!(revision > r1);
    assert_eq!(prev[0].as_ref().map(|kv| kv.mod_revision), Some(r1));
    assert_eq!(get(&store, "/d").await, None);
    // Deleting what is absent succeeds with no previous value and changes nothing.
    let again = cas(&store, "/d", 0, delete()).await;
    assert!(
        matches!(&again, TxnResult::Succeeded { prev, .. } if prev == &vec![None]),
        "{again:?}"
    );
}

async fn multi_op_txn_is_atomic(store: Arc<dyn Store>) {
    let guard = put(&store, "/t/guard", "g").await;
    let ops = || {
        vec![
            put_op("/t/a", "1"),
            put_op("/t/b", "2"),
            Op::Delete {
                key: "/t/guard".into(),
            },
        ]
    };
    let failing = Txn {
        compare: vec![
            Compare::ModRevision {
                key: "/t/guard".into(),
                revision: guard,
            },
            Compare::ModRevision {
                key: "/t/a".into(),
                revision: 12345,
            },
        ],
        success: ops(),
    };
    let TxnResult::Failed { current, .. } = store.txn(failing).await.expect("txn") else {
        panic!("txn with a false compare succeeded")
    };
    assert_eq!(current.len(), 2);
    assert_eq!(current[0].as_ref().map(|kv| kv.mod_revision), Some(guard));
    assert_eq!(current[1], None);
    assert_eq!(store.count("/t/").await.expect("count"), 1);
    let succeeding = Txn {
        compare: vec![Compare::ModRevision {
            key: "/t/guard".into(),
            revision: guard,
        }],
        success: ops(),
    };
    let TxnResult::Succeeded { revision, prev } = store.txn(succeeding).await.expect("txn") else {
        panic!("txn with true compares failed")
    };
    assert_eq!(prev.len(), 3);
    assert!(prev[0].is_none() && prev[1].is_none() && prev[2].is_some());
    let all = store.range(range("/t/")).await.expect("range");
    assert_eq!(keys(&all.kvs), ["/t/a", "/t/b"]);
    assert!(all.kvs.iter().all(|kv| kv.mod_revision == revision));
}

async fn range_prefix_start_limit_more(store: Arc<dyn Store>) {
    for key in [
        "/a/1", "/a/2", "/a/3", "/a/4", "/a/5", "/ab/x", "/b/1", "/a",
    ] {
        put(&store, key, key).await;
    }
    let all = store.range(range("/a/")).await.expect("range");
    assert_eq!(keys(&all.kvs), ["/a/1", "/a/2", "/a/3", "/a/4", "/a/5"]);
    assert!(!all.more);
    assert_eq!(all.revision, store.revision().await.expect("revision"));
    let limited = store
        .range(Range {
            limit: 2,
            ..range("/a/")
        })
        .await
        .expect("range");
    assert_eq!(
        (keys(&limited.kvs), limited.more),
        (vec!["/a/1", "/a/2"], true)
    );
    let page = Range {
        start: Some("/a/3".into()),
        limit: 2,
        ..range("/a/")
    };
    let page = store.range(page).await.expect("range");
    assert_eq!((keys(&page.kvs), page.more), (vec!["/a/3", "/a/4"], true));
    let last = Range {
        start: Some("/a/4".into()),
        limit: 2,
        ..range("/a/")
    };
    let last = store.range(last).await.expect("range");
    assert_eq!((keys(&last.kvs), last.more), (vec!["/a/4", "/a/5"], false));
    assert_eq!(store.count("/a/").await.expect("count"), 5);
    assert_eq!(store.count("/a").await.expect("count"), 7);
    assert_eq!(store.count("").await.expect("count"), 8);
    assert_eq!(store.range(range("")).await.expect("range").kvs.len(), 8);
    assert!(
        store
            .range(range("/zzz/"))
            .await
            .expect("range")
            .kvs
            .is_empty()
    );
}

async fn range_at_old_revision(store: Arc<dyn Store>) {
    let r1 = put(&store, "/o/a", "a1").await;
    let r2 = put(&store, "/o/b", "b1").await;
    let r3 = put(&store, "/o/a", "a2").await;
    let TxnResult::Succeeded { revision: r4, .. } =
        cas(&store, "/o/b", r2, Op::Delete { key: "/o/b".into() }).await
    else {
        panic!("delete failed")
    };
    let at = |revision| Range {
        revision,
        ..range("/o/")
    };
    let values = |kvs: &[KeyValue]| {
        kvs.iter()
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
            .collect::<Vec<_>>()
    };
    let old = store.range(at(r1)).await.expect("range at r1");
    assert_eq!(
        (values(&old.kvs), old.revision),
        (vec!["a1".to_owned()], r1)
    );
    let old = store.range(at(r2)).await.expect("range at r2");
    assert_eq!(values(&old.kvs), ["a1", "b1"]);
    assert_eq!(old.kvs[0].mod_revision, r1);
    let old = store.range(at(r3)).await.expect("range at r3");
    assert_eq!(values(&old.kvs), ["a2", "b1"]);
    assert_eq!((old.kvs[0].version, old.kvs[0].create_revision), (2, r1));
    let limited = store
        .range(Range { limit: 1, ..at(r3) })
        .await
        .expect("limited range at r3");
    assert_eq!(
        (values(&limited.kvs), limited.more),
        (vec!["a2".to_owned()], true)
    );
    let paged = store
        .range(Range {
            start: Some("/o/b".into()),
            ..at(r3)
        })
        .await
        .expect("range from /o/b at r3");
    assert_eq!(values(&paged.kvs), ["b1"]);
    let now = store.range(at(r4)).await.expect("range at r4");
    assert_eq!(values(&now.kvs), ["a2"]);
    let future = store.range(at(r4 + 10)).await;
    assert!(
        matches!(future, Err(StoreError::FutureRevision { .. })),
        "{future:?}"
    );
}

async fn compacted_range_and_watch(store: Arc<dyn Store>) {
    let mut revisions = Vec::new();
    for i in 0..5 {
        revisions.push(put(&store, "/x/k", &format!("v{i}")).await);
    }
    let compact_at = revisions[3];
    store.compact(compact_at).await.expect("compact");
    // Compacting again at or below is harmless.
    store.compact(revisions[1]).await.expect("compact again");
    let below = Range {
        revision: revisions[2],
        ..range("/x/")
    };
    match store.range(below).await {
        Err(StoreError::Compacted { requested, .. }) => assert_eq!(requested, revisions[2]),
        other => panic!("expected Compacted, got {other:?}"),
    }
    let at = store
        .range(Range {
            revision: compact_at,
            ..range("/x/")
        })
        .await
        .expect("range at the compacted revision");
    assert_eq!(at.kvs[0].value, Bytes::from("v3"));
    match store.watch("/x/", revisions[2], Duration::ZERO).await {
        Err(StoreError::Compacted { requested, .. }) => assert_eq!(requested, revisions[2]),
        Err(other) => panic!("expected Compacted, got {other:?}"),
        Ok(_) => panic!("watch below the compacted revision started"),
    }
    let mut watch = store
        .watch("/x/", compact_at, Duration::ZERO)
        .await
        .expect("watch");
    let got = events(&mut watch, 2).await;
    assert_eq!(got[0].revision(), revisions[3]);
    assert_eq!(got[1].revision(), revisions[4]);
    // The value at the compacted revision is kept, so the next event still has its previous
    // value. (etcd drops the one before the compacted revision, so the first event's `prev` may
    // be missing there; the embedded store keeps it.)
    assert_eq!(
        got[1].prev.as_ref().map(|kv| kv.value.clone()),
        Some(Bytes::from("v3"))
    );
    let future = store.compact(revisions[4] + 100).await;
    assert!(
        matches!(future, Err(StoreError::FutureRevision { .. })),
        "{future:?}"
    );
}

async fn compaction_keeps_latest_versions(store: Arc<dyn Store>) {
    let stable = put(&store, "/y/stable", "s").await;
    let TxnResult::Succeeded { .. } = cas(&store, "/y/gone", 0, put_op("/y/gone", "g")).await
    else {
        panic!("create failed")
    };
    let (gone, _) = store.get("/y/gone").await.expect("get");
    let gone = gone.expect("created").mod_revision;
    cas(
        &store,
        "/y/gone",
        gone,
        Op::Delete {
            key: "/y/gone".into(),
        },
    )
    .await;
    for i in 0..20 {
        put(&store, "/y/hot", &format!("{i}")).await;
    }
    let current = store.revision().await.expect("revision");
    store.compact(current).await.expect("compact");
    // Writes after the compaction give the store a chance to purge in the background.
    for i in 0..3 {
        put(&store, "/z/after", &format!("{i}")).await;
    }
    let all = store.range(range("/y/")).await.expect("range");
    assert_eq!(keys(&all.kvs), ["/y/hot", "/y/stable"]);
    assert_eq!(all.kvs[0].value, Bytes::from("19"));
    assert_eq!((all.kvs[1].mod_revision, all.kvs[1].version), (stable, 1));
    let at = store
        .range(Range {
            revision: current,
            ..range("/y/")
        })
        .await
        .expect("range at the compacted revision");
    assert_eq!(keys(&at.kvs), ["/y/hot", "/y/stable"]);
    assert_eq!(all.kvs[0].version, 20);
}

async fn watch_replays_then_goes_live(store: Arc<dyn Store>) {
    let mut revisions = Vec::new();
    for i in 0..5 {
        revisions.push(put(&store, &format!("/w/{i}"), "old").await);
    }
    let mut watch = store
        .watch("/w/", revisions[1], Duration::ZERO)
        .await
        .expect("watch");
    let replayed = events(&mut watch, 4).await;
    let replayed: Vec<i64> = replayed.iter().map(Event::revision).collect();
    assert_eq!(replayed, revisions[1..]);
    let mut live = Vec::new();
    for i in 5..10 {
        live.push(put(&store, &format!("/w/{i}"), "new").await);
    }
    let got: Vec<i64> = events(&mut watch, 5)
        .await
        .iter()
        .map(Event::revision)
        .collect();
    assert_eq!(got, live);
    assert_no_event(&mut watch).await;
}

async fn watch_from_zero_sees_only_new(store: Arc<dyn Store>) {
    put(&store, "/n/old", "old").await;
    let mut watch = store.watch("/n/", 0, Duration::ZERO).await.expect("watch");
    let revision = put(&store, "/n/new", "new").await;
    let got = events(&mut watch, 1).await;
    assert_eq!(
        (got[0].kv.key.as_str(), got[0].revision()),
        ("/n/new", revision)
    );
    assert_eq!(got[0].kind, EventKind::Put);
    assert_eq!(got[0].prev, None);
    assert_eq!(
        (got[0].kv.version, got[0].kv.create_revision),
        (1, revision)
    );
}

async fn watch_filters_by_prefix(store: Arc<dyn Store>) {
    let mut watch = store
        .watch("/p/in/", 0, Duration::ZERO)
        .await
        .expect("watch");
    put(&store, "/p/out/1", "x").await;
    put(&store, "/p/inside", "x").await;
    let wanted = put(&store, "/p/in/1", "x").await;
    put(&store, "/q/in/1", "x").await;
    let got = events(&mut watch, 1).await;
    assert_eq!(
        (got[0].kv.key.as_str(), got[0].revision()),
        ("/p/in/1", wanted)
    );
    assert_no_event(&mut watch).await;
}

async fn delete_events_carry_prev(store: Arc<dyn Store>) {
    let created = put(&store, "/e/k", "v1").await;
    let updated = put(&store, "/e/k", "v2").await;
    let mut watch = store
        .watch("/e/", created, Duration::ZERO)
        .await
        .expect("watch");
    let TxnResult::Succeeded {
        revision: deleted, ..
    } = cas(&store, "/e/k", updated, Op::Delete { key: "/e/k".into() }).await
    else {
        panic!("delete failed")
    };
    let got = events(&mut watch, 3).await;
    assert_eq!(got[0].prev, None);
    assert_eq!(
        got[1].prev.as_ref().map(|kv| kv.value.clone()),
        Some(Bytes::from("v1"))
    );
    assert_eq!(got[2].kind, EventKind::Delete);
    let expected_kv = KeyValue {
        key: "/e/k".into(),
        value: Bytes::new(),
        create_revision: 0,
        mod_revision: deleted,
        version: 0,
    };
    assert_eq!(got[2].kv, expected_kv);
    let prev = got[2]
        .prev
        .clone()
        .expect("delete carries the previous value");
    assert_eq!(
        (prev.value, prev.mod_revision, prev.version),
        (Bytes::from("v2"), updated, 2)
    );
}

async fn watch_progress(store: Arc<dyn Store>) {
    let before = put(&store, "/g/a", "x").await;
    let mut watch = store
        .watch("/g/", 0, Duration::from_millis(200))
        .await
        .expect("watch");
    match next_item(&mut watch).await {
        WatchItem::Progress { revision } => assert!(revision >= before, "{revision} < {before}"),
        other => panic!("expected progress, got {other:?}"),
    }
    // Changes elsewhere move the progress revision forward.
    let elsewhere = put(&store, "/h/b", "x").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match next_item(&mut watch).await {
            WatchItem::Progress { revision } if revision >= elsewhere => break,
            WatchItem::Progress { .. } => {}
            other => panic!("expected progress, got {other:?}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "progress never reached {elsewhere}"
        );
    }
}

async fn watch_long_replay_and_slow_consumer(store: Arc<dyn Store>) {
    let start = store.revision().await.expect("revision") + 1;
    let mut slow = store.watch("/s/", 0, Duration::ZERO).await.expect("watch");
    // Concurrent writers, so both backends see many revisions quickly.
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..200 {
                    put(&store, &format!("/s/{w}/{i}"), &"x".repeat(64)).await;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
    // More sequential writes than the live buffer holds, while `slow` is not read.
    for i in 0..1300 {
        put(&store, &format!("/s/seq/{}", i % 10), "y").await;
    }
    let end = store.revision().await.expect("revision");
    let expected = usize::try_from(end - start + 1).expect("count");
    let mut replay = store
        .watch("/s/", start, Duration::ZERO)
        .await
        .expect("replay");
    for stream in [&mut slow, &mut replay] {
        let got = events(stream, expected).await;
        let revisions: Vec<i64> = got.iter().map(Event::revision).collect();
        assert_eq!(revisions, (start..=end).collect::<Vec<_>>());
    }
}

async fn large_value_round_trip(store: Arc<dyn Store>) {
    let value: Bytes = (0..16 << 20)
        .map(|i: u32| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let mut watch = store
        .watch("/big/", 0, Duration::ZERO)
        .await
        .expect("watch");
    let revision = cas(
        &store,
        "/big/module",
        0,
        Op::Put {
            key: "/big/module".into(),
            value: value.clone(),
        },
    )
    .await;
    assert!(
        matches!(revision, TxnResult::Succeeded { .. }),
        "{revision:?}"
    );
    assert_eq!(
        get(&store, "/big/module").await.map(|kv| kv.value),
        Some(value.clone())
    );
    let listed = store.range(range("/big/")).await.expect("range");
    assert_eq!(listed.kvs[0].value, value);
    let got = events(&mut watch, 1).await;
    assert_eq!(got[0].kv.value, value);
}

async fn concurrent_cas_increments(store: Arc<dyn Store>) {
    const TASKS: usize = 8;
    const INCREMENTS: usize = 200;
    put(&store, "/counter", "0").await;
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut current = get(&store, "/counter").await.expect("counter");
                for _ in 0..INCREMENTS {
                    loop {
                        let n: u64 = String::from_utf8_lossy(&current.value)
                            .parse()
                            .expect("number");
                        let next = put_op("/counter", &(n + 1).to_string());
                        match cas(&store, "/counter", current.mod_revision, next).await {
                            TxnResult::Succeeded { .. } => {
                                current = get(&store, "/counter").await.expect("counter");
                                break;
                            }
                            TxnResult::Failed { current: now, .. } => {
                                current = now[0].clone().expect("counter");
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("incrementer");
    }
    let total = get(&store, "/counter").await.expect("counter");
    assert_eq!(total.value, Bytes::from((TASKS * INCREMENTS).to_string()));
    assert_eq!(total.version, (TASKS * INCREMENTS + 1) as i64);
}
