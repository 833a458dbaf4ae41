//! Watches: replay from the revision log, then live batches from the writer, without gaps.

use std::sync::{Arc, Weak};
use std::time::Duration;

use redb::{Database, ReadableDatabase};
use tokio::sync::{broadcast, mpsc};
use tokio::time::{Instant, sleep_until};
use tokio_stream::wrappers::ReceiverStream;

use super::tables::{HISTORY, LOG, REVISION, check_readable, db_err, event_at, meta};
use super::writer::Batch;
use crate::{Event, StoreError, WatchItem, WatchStream};

/// Revisions read from the log per blocking read while catching up.
const CATCH_UP_CHUNK: i64 = 512;
/// Value bytes read from the log per blocking read while catching up (at least one revision).
const CATCH_UP_BYTES: usize = 16 << 20;
/// Items buffered between a watch task and its consumer.
const STREAM_BUFFER: usize = 256;

/// Starts the task feeding one watch; `live` must have been subscribed before `next` was
/// chosen so that no batch after it is missed.
pub(super) fn spawn(
    db: Weak<Database>,
    live: broadcast::Receiver<Arc<Batch>>,
    prefix: String,
    next: i64,
    progress: Duration,
) -> WatchStream {
    let (out, stream) = mpsc::channel(STREAM_BUFFER);
    let watch = Watch {
        db,
        live,
        prefix,
        next,
        progress,
        out,
        quiet_until: Instant::now() + progress,
    };
    tokio::spawn(watch.run());
    Box::pin(ReceiverStream::new(stream))
}

/// Why a watch task stops.
enum Stop {
    /// The consumer dropped the stream.
    Gone,
    /// The stream ends with this error.
    Failed(StoreError),
}

impl From<StoreError> for Stop {
    fn from(err: StoreError) -> Self {
        Stop::Failed(err)
    }
}

struct Watch {
    db: Weak<Database>,
    live: broadcast::Receiver<Arc<Batch>>,
    prefix: String,
    /// The next revision to deliver: everything before it has been delivered.
    next: i64,
    progress: Duration,
    out: mpsc::Sender<Result<WatchItem, StoreError>>,
    quiet_until: Instant,
}

impl Watch {
    async fn run(mut self) {
        if let Err(Stop::Failed(err)) = self.serve().await {
            let _ = self.out.send(Err(err)).await;
        }
    }

    async fn serve(&mut self) -> Result<(), Stop> {
        self.catch_up().await?;
        loop {
            tokio::select! {
                biased;
                () = self.out.closed() => return Err(Stop::Gone),
                received = self.live.recv() => match received {
                    Ok(batch) => self.deliver(&batch).await?,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "watch lagged behind live events, reading the log");
                        self.catch_up().await?;
                    }
                    Err(broadcast::error::RecvError::Closed) => return Err(StoreError::Closed.into()),
                },
                () = sleep_until(self.quiet_until), if !self.progress.is_zero() => {
                    let revision = self.next - 1;
                    self.send(WatchItem::Progress { revision }).await?;
                }
            }
        }
    }

    /// Delivers a live batch, from the log if revisions were missed before it.
    async fn deliver(&mut self, batch: &Batch) -> Result<(), Stop> {
        if batch.last < self.next {
            return Ok(());
        }
        let Some(events) = batch.events.as_ref().filter(|_| batch.first <= self.next) else {
            // Revisions were missed before this batch, or it was sent without its (big) values.
            // It was committed before being sent, so the log holds it.
            return self.catch_up().await;
        };
        for event in events {
            if event.revision() >= self.next && event.kv.key.starts_with(&self.prefix) {
                self.send(WatchItem::Event(event.clone())).await?;
            }
        }
        self.next = batch.last + 1;
        Ok(())
    }

    /// Delivers from the log everything from `next` to the current revision.
    async fn catch_up(&mut self) -> Result<(), Stop> {
        loop {
            let db = self.db.upgrade().ok_or(StoreError::Closed)?;
            let (prefix, from) = (self.prefix.clone(), self.next);
            let chunk = tokio::task::spawn_blocking(move || read_log(&db, &prefix, from))
                .await
                .map_err(|err| StoreError::Embedded(err.to_string()))??;
            for event in chunk.events {
                self.send(WatchItem::Event(event)).await?;
            }
            self.next = chunk.next;
            if chunk.caught_up {
                return Ok(());
            }
        }
    }

    async fn send(&mut self, item: WatchItem) -> Result<(), Stop> {
        self.out.send(Ok(item)).await.map_err(|_| Stop::Gone)?;
        self.quiet_until = Instant::now() + self.progress;
        Ok(())
    }
}

/// Events of up to [`CATCH_UP_CHUNK`] revisions of the log from `from`.
struct Chunk {
    events: Vec<Event>,
    /// The revision after the last one read.
    next: i64,
    /// `next` is past the current revision.
    caught_up: bool,
}

fn read_log(db: &Database, prefix: &str, from: i64) -> Result<Chunk, StoreError> {
    let rtx = db.begin_read().map_err(db_err)?;
    let current = meta(&rtx, REVISION)?;
    if from > current {
        return Ok(Chunk {
            events: Vec::new(),
            next: from,
            caught_up: true,
        });
    }
    check_readable(&rtx, from)?;
    let mut to = current.min(from + CATCH_UP_CHUNK - 1);
    let log = rtx.open_table(LOG).map_err(db_err)?;
    let history = rtx.open_table(HISTORY).map_err(db_err)?;
    let (mut events, mut bytes) = (Vec::new(), 0);
    for entry in log.range((from, 0)..=(to, u32::MAX)).map_err(db_err)? {
        let (at, key) = entry.map_err(db_err)?;
        let (revision, key) = (at.value().0, key.value());
        if bytes > CATCH_UP_BYTES && revision > events.last().map_or(from, Event::revision) {
            // Enough for one read: stop at a revision boundary.
            to = revision - 1;
            break;
        }
        if key.starts_with(prefix) {
            let event = event_at(&history, key, revision)?;
            bytes += event.kv.value.len() + event.prev.as_ref().map_or(0, |kv| kv.value.len());
            events.push(event);
        }
    }
    Ok(Chunk {
        events,
        next: to + 1,
        caught_up: to == current,
    })
}
