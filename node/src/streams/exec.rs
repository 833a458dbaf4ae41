//! `/exec/{namespace}/{pod}/{container}`: a command in a running container, its streams carried
//! over a WebSocket in the `v5.channel.k8s.io` protocol kubectl speaks (see `session`).

use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use super::session::{self, Options, Started};
use super::{StreamError, Streams, channel};
use crate::console::Stdin;
use crate::runtime::{Control, ExecRequest, Runtime, Session};

/// The command and streams of the query (`command` repeats, one per argument).
fn exec_request(query: &[(String, String)]) -> Result<ExecRequest, StreamError> {
    let options = Options::parse(query)?;
    let command: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    if command.is_empty() {
        return Err(StreamError::BadRequest(
            "you must specify at least 1 command".into(),
        ));
    }
    Ok(ExecRequest {
        command,
        tty: options.tty,
        stdin: options.stdin,
        stdout: options.stdout,
        stderr: options.stderr,
    })
}

/// Checks the pod and container, then upgrades to the WebSocket the session runs on.
pub async fn exec(
    State(streams): State<Arc<Streams>>,
    Path((namespace, name, container)): Path<(String, String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, StreamError> {
    let request = exec_request(&query)?;
    let id = streams.running(&namespace, &name, &container).await?;
    let upgrade = session::accept(upgrade, "exec")?;
    let runtime = streams.runtime.clone();
    Ok(session::upgrade(upgrade, start(runtime, id, request)))
}

/// Starts the command; its output is its stdout and stderr FIFOs until the shim closes them.
async fn start(
    runtime: Arc<dyn Runtime>,
    id: String,
    request: ExecRequest,
) -> Result<Started, String> {
    let Session {
        stdin,
        stdout,
        stderr,
        control,
    } = runtime
        .exec_session(&id, &request)
        .await
        .map_err(|e| e.to_string())?;
    let output = futures::stream::select(
        chunks(stdout, channel::STDOUT),
        chunks(stderr, channel::STDERR),
    );
    Ok(Started {
        output: output.boxed(),
        process: Arc::new(Exec {
            stdin: stdin.map(|pipe| Stdin::new(pipe, false)),
            control,
            command: request.command,
        }),
    })
}

/// What a FIFO gives, as chunks on `channel`, until its end.
fn chunks(pipe: Option<pipe::Receiver>, channel: u8) -> impl Stream<Item = (u8, Bytes)> {
    futures::stream::unfold(pipe, move |pipe| async move {
        let mut pipe = pipe?;
        let mut buffer = BytesMut::zeroed(32 << 10);
        let n = pipe.read(&mut buffer).await.ok().filter(|n| *n > 0)?;
        buffer.truncate(n);
        Some(((channel, buffer.freeze()), Some(pipe)))
    })
}

/// An exec'd process: our end of its stdin, its control (dropping it removes the process).
struct Exec {
    stdin: Option<Stdin>,
    control: Box<dyn Control>,
    command: Vec<String>,
}

#[async_trait::async_trait]
impl session::Process for Exec {
    async fn write(&self, data: &[u8]) -> bool {
        match &self.stdin {
            Some(stdin) => stdin.write(data).await,
            None => false,
        }
    }

    async fn close_stdin(&self) {
        // Our end goes first: the process reads to its end, then it is closed.
        if let Some(stdin) = &self.stdin
            && stdin.close().await
        {
            let _ = self.control.close_stdin().await;
        }
    }

    async fn resize(&self, width: u16, height: u16) {
        let _ = self.control.resize(width.into(), height.into()).await;
    }

    async fn abandoned(&self) -> bool {
        let _ = self.control.kill().await;
        true
    }

    async fn finish(&self) -> Value {
        match self.control.wait().await {
            Ok(code) => channel::exit_status(&self.command, code),
            Err(e) => channel::failure(&e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::session::tests::query;
    use super::*;

    #[test]
    fn the_query_names_the_command_and_streams() {
        let request = exec_request(&query(&[
            ("command", "sh"),
            ("command", "-c"),
            ("command", "echo hi"),
            ("stdout", "true"),
            ("stderr", "true"),
        ]))
        .expect("valid");
        assert_eq!(request.command, ["sh", "-c", "echo hi"]);
        assert!(request.stdout && request.stderr && !request.stdin && !request.tty);
        assert!(exec_request(&query(&[("stdout", "true")])).is_err());
        assert!(exec_request(&query(&[("command", "ls")])).is_err());
    }
}
