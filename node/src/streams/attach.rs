//! `/attach/{namespace}/{pod}/{container}`: the streams of a running container's own process
//! (kubectl attach, kubectl run -i), over the same WebSocket sessions as exec.

use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::session::{self, Options, Started};
use super::{StreamError, Streams, channel};
use crate::console::{Chunk, Stdin, Stream};
use crate::runtime::Runtime;

/// Checks the pod and container, then attaches to its console over a WebSocket.
pub async fn attach(
    State(streams): State<Arc<Streams>>,
    Path((namespace, name, container)): Path<(String, String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, StreamError> {
    let options = Options::parse(&query)?;
    let id = streams.running(&namespace, &name, &container).await?;
    let console = streams.consoles.get(&id).ok_or_else(|| {
        StreamError::BadRequest(format!(
            "container {container} in pod {name} is not running"
        ))
    })?;
    let upgrade = session::accept(upgrade, "attach")?;
    // Subscribed now: what the container writes from here on is the client's.
    let output = output(console.output.subscribe(), options);
    let process = Attach {
        runtime: streams.runtime.clone(),
        id,
        // A container without stdin ignores the client's input (kubectl warns about it).
        stdin: console.stdin.clone().filter(|_| options.stdin),
        // Whether there is a terminal is the container's, not the client's, to say.
        tty: console.tty,
    };
    let started = Started {
        output,
        process: Arc::new(process),
    };
    Ok(session::upgrade(upgrade, async move { Ok(started) }))
}

/// The container's output the client asked for, until its process ended and the last of it
/// was read. A client too slow to keep up misses what it fell behind by.
fn output(
    receiver: broadcast::Receiver<Chunk>,
    options: Options,
) -> futures::stream::BoxStream<'static, (u8, bytes::Bytes)> {
    futures::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(chunk) => return Some((chunk, receiver)),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "an attached client fell behind");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .filter_map(move |(stream, data)| async move {
        match stream {
            Stream::Stdout if options.stdout => Some((channel::STDOUT, data)),
            Stream::Stderr if options.stderr => Some((channel::STDERR, data)),
            _ => None,
        }
    })
    .boxed()
}

/// An attach to a container's own process.
struct Attach {
    runtime: Arc<dyn Runtime>,
    id: String,
    /// The container's stdin, when it has one and the client sends input.
    stdin: Option<Arc<Stdin>>,
    tty: bool,
}

impl Attach {
    /// `stdinOnce`: the container's stdin closes when the first client that used it is done.
    async fn close_once(&self) {
        if let Some(stdin) = self.stdin.as_ref().filter(|s| s.once)
            && stdin.close().await
        {
            let _ = self.runtime.close_stdin(&self.id).await;
        }
    }
}

#[async_trait::async_trait]
impl session::Process for Attach {
    async fn write(&self, data: &[u8]) -> bool {
        match &self.stdin {
            Some(stdin) => stdin.write(data).await,
            None => false,
        }
    }

    async fn close_stdin(&self) {
        // Without stdinOnce the container's stdin stays open for the next attach.
        self.close_once().await;
    }

    async fn resize(&self, width: u16, height: u16) {
        if self.tty {
            let _ = self
                .runtime
                .resize(&self.id, width.into(), height.into())
                .await;
        }
    }

    async fn abandoned(&self) -> bool {
        // Detaching leaves the container running.
        false
    }

    async fn finish(&self) -> Value {
        self.close_once().await;
        json!({"metadata": {}, "status": "Success"})
    }
}
