//! Tests of the embedded backend beyond the conformance suite: persistence, bounded file size,
//! and the periodic compactor.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::time::timeout;
use wasmkube_store::embedded::EmbeddedStore;
use wasmkube_store::{Op, Range, Store, StoreError, Txn, TxnResult, WatchItem, compactor};

async fn put_all(
    store: &Arc<EmbeddedStore>,
    keys: impl Iterator<Item = String>,
    value: &Bytes,
) -> i64 {
    let success = keys
        .map(|key| Op::Put {
            key,
            value: value.clone(),
        })
        .collect();
    let txn = Txn {
        compare: vec![],
        success,
    };
    match store.txn(txn).await.expect("txn") {
        TxnResult::Succeeded { revision, .. } => revision,
        failed => panic!("{failed:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_everything() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let value = Bytes::from("v");
    let (revisions, compacted) = {
        let store = EmbeddedStore::open(&path).expect("open");
        let mut revisions = Vec::new();
        for i in 0..10 {
            revisions.push(
                put_all(
                    &store,
                    [format!("/r/{}", i % 3)].into_iter(),
                    &Bytes::from(i.to_string()),
                )
                .await,
            );
        }
        put_all(&store, ["/r/big".to_owned()].into_iter(), &value).await;
        store.compact(revisions[4]).await.expect("compact");
        let compacted = revisions[4];
        (revisions, compacted)
    };
    let store = EmbeddedStore::open(&path).expect("reopen");
    let current = store.revision().await.expect("revision");
    assert_eq!(current, revisions[9] + 1);
    let all = store
        .range(Range {
            prefix: "/r/".into(),
            ..Range::default()
        })
        .await
        .expect("range");
    assert_eq!(all.kvs.len(), 4);
    assert_eq!(all.kvs[0].value, Bytes::from("9"));
    assert_eq!(all.kvs[0].version, 4);
    let old = Range {
        prefix: "/r/".into(),
        revision: revisions[5],
        ..Range::default()
    };
    let old = store.range(old).await.expect("old range");
    assert_eq!(
        old.kvs
            .iter()
            .map(|kv| kv.value.clone())
            .collect::<Vec<_>>(),
        ["3", "4", "5"]
    );
    let below = Range {
        prefix: "/r/".into(),
        revision: compacted - 1,
        ..Range::default()
    };
    assert!(matches!(
        store.range(below).await,
        Err(StoreError::Compacted { .. })
    ));
    let mut watch = store
        .watch("/r/", compacted, Duration::ZERO)
        .await
        .expect("watch");
    for expected in compacted..=current {
        match timeout(Duration::from_secs(10), watch.next()).await {
            Ok(Some(Ok(WatchItem::Event(event)))) => assert_eq!(event.revision(), expected),
            other => panic!("expected event {expected}, got {other:?}"),
        }
    }
    let next = put_all(&store, ["/r/0".to_owned()].into_iter(), &value).await;
    assert_eq!(next, current + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_size_stays_bounded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let store = EmbeddedStore::open(&path).expect("open");
    let value = Bytes::from(vec![b'x'; 512]);
    let keys = || (0..100).map(|k| format!("/f/{k:03}"));
    let mut size_after_warmup = 0;
    let rounds = 3000;
    for round in 1..=rounds {
        let revision = put_all(&store, keys(), &value).await;
        if round % 100 == 0 {
            store.compact(revision).await.expect("compact");
        }
        if round == 500 {
            size_after_warmup = std::fs::metadata(&path).expect("size").len();
        }
    }
    // Let the writer finish purging what the last compaction released.
    for _ in 0..20 {
        put_all(&store, keys().take(1), &value).await;
    }
    let size = std::fs::metadata(&path).expect("size").len();
    println!("file size after 500 rounds: {size_after_warmup}, after {rounds}: {size}");
    assert!(
        size <= size_after_warmup * 2,
        "file grew from {size_after_warmup} to {size} bytes"
    );
    assert_eq!(store.count("/f/").await.expect("count"), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compactor_compacts_a_real_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).expect("open");
    let first = put_all(&store, ["/c/a".to_owned()].into_iter(), &Bytes::from("1")).await;
    let second = put_all(&store, ["/c/a".to_owned()].into_iter(), &Bytes::from("2")).await;
    let handle = compactor::spawn(store.clone(), Duration::from_millis(50));
    let at = |revision| Range {
        prefix: "/c/".into(),
        revision,
        ..Range::default()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !matches!(
        store.range(at(first)).await,
        Err(StoreError::Compacted { .. })
    ) {
        assert!(tokio::time::Instant::now() < deadline, "never compacted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let latest = store
        .range(at(second))
        .await
        .expect("the latest revision stays readable");
    assert_eq!(latest.kvs[0].value, Bytes::from("2"));
    handle.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_big_values_is_chunked_and_complete() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).expect("open");
    let mut revisions = Vec::new();
    for i in 0..4u8 {
        let value = Bytes::from(vec![i; 10 << 20]);
        revisions.push(put_all(&store, [format!("/big/{i}")].into_iter(), &value).await);
    }
    let mut watch = store
        .watch("/big/", revisions[0], Duration::ZERO)
        .await
        .expect("watch");
    for (i, expected) in revisions.iter().enumerate() {
        match timeout(Duration::from_secs(20), watch.next()).await {
            Ok(Some(Ok(WatchItem::Event(event)))) => {
                assert_eq!(event.revision(), *expected);
                assert_eq!(event.kv.value.len(), 10 << 20);
                assert!(event.kv.value.iter().all(|&b| usize::from(b) == i));
            }
            other => panic!("expected event {expected}, got {other:?}"),
        }
    }
}

/// Batches holding a big value are broadcast without it and read from the log: a live watch
/// still gets them in order between the small ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_watch_gets_big_values_from_the_log_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).expect("open");
    let mut watch = store.watch("/m/", 0, Duration::ZERO).await.expect("watch");
    let sizes = [10, 700 << 10, 20, 65 << 10, 30];
    let mut revisions = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        let value = Bytes::from(vec![b'x'; *size]);
        revisions.push(put_all(&store, [format!("/m/{i}")].into_iter(), &value).await);
    }
    for (size, expected) in sizes.iter().zip(&revisions) {
        match timeout(Duration::from_secs(10), watch.next()).await {
            Ok(Some(Ok(WatchItem::Event(event)))) => {
                assert_eq!(event.revision(), *expected);
                assert_eq!(event.kv.value.len(), *size);
            }
            other => panic!("expected event {expected}, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_watch_ends_with_compacted_when_its_history_is_gone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).expect("open");
    let value = Bytes::from("v");
    let first = put_all(&store, ["/l/0".to_owned()].into_iter(), &value).await;
    for i in 1..2000 {
        put_all(&store, [format!("/l/{}", i % 7)].into_iter(), &value).await;
    }
    // The watch replays part of the history into its buffer, then waits for the consumer.
    let mut watch = store
        .watch("/l/", first, Duration::ZERO)
        .await
        .expect("watch");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let current = store.revision().await.expect("revision");
    store.compact(current).await.expect("compact");
    let mut next = first;
    loop {
        match timeout(Duration::from_secs(10), watch.next()).await {
            Ok(Some(Ok(WatchItem::Event(event)))) => {
                assert_eq!(event.revision(), next, "no gap before the error");
                next += 1;
            }
            Ok(Some(Err(StoreError::Compacted { requested, .. }))) => {
                assert_eq!(requested, next);
                break;
            }
            other => panic!("expected events then Compacted, got {other:?}"),
        }
    }
    assert!(
        next < current,
        "the watch could not have delivered everything"
    );
}

/// Every live key of a store, as a range read at the latest revision gives them.
async fn everything(store: &Arc<EmbeddedStore>) -> Vec<wasmkube_store::KeyValue> {
    store.range(Range::default()).await.expect("range").kvs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_restores_every_key_at_its_revision() {
    use wasmkube_store::snapshot::Snapshot;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).expect("open");
    // 1200 keys (more than a page of the snapshot's reads), each written twice, some deleted.
    put_all(
        &store,
        (0..1200).map(|i| format!("/k/{i:04}")),
        &Bytes::from("one"),
    )
    .await;
    put_all(
        &store,
        (0..600).map(|i| format!("/k/{i:04}")),
        &Bytes::from("two"),
    )
    .await;
    let deletes = (0..100)
        .map(|i| Op::Delete {
            key: format!("/k/{:04}", i * 7),
        })
        .collect();
    let txn = Txn {
        compare: vec![],
        success: deletes,
    };
    store.txn(txn).await.expect("deleted");
    let revision = store.revision().await.expect("revision");

    let snapshot = Snapshot::take(store.as_ref()).await.expect("taken");
    assert_eq!(snapshot.revision, revision);
    assert_eq!(snapshot.kvs.len(), 1100);
    let bytes = snapshot.encode();
    let expected = everything(&store).await;
    drop(store);

    let restored_path = dir.path().join("restored.redb");
    let read = Snapshot::decode(&bytes).expect("decodes");
    EmbeddedStore::restore(&restored_path, &read).expect("restored");
    assert!(
        EmbeddedStore::restore(&restored_path, &read).is_err(),
        "a restore never overwrites a store"
    );
    let restored = EmbeddedStore::open(&restored_path).expect("opens");
    assert_eq!(restored.revision().await.expect("revision"), revision);
    assert_eq!(everything(&restored).await, expected);

    // Writes go on after the snapshot's revision; a watch from there sees them, one from
    // before it is told the history is gone.
    let mut watch = restored
        .watch("/k/", revision + 1, Duration::from_secs(60))
        .await
        .expect("watch");
    let next = put_all(
        &restored,
        std::iter::once("/k/0001".to_string()),
        &Bytes::from("three"),
    )
    .await;
    assert_eq!(next, revision + 1);
    let item = timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("in time");
    assert!(matches!(item, Some(Ok(WatchItem::Event(_)))), "{item:?}");
    let old = restored
        .watch("/k/", revision - 1, Duration::from_secs(60))
        .await;
    assert!(
        matches!(old, Err(StoreError::Compacted { .. })),
        "{:?}",
        old.err()
    );
}
