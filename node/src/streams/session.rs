//! One exec or attach session over a `v5.channel.k8s.io` WebSocket: the client's input and
//! terminal sizes to the process, its output to the client, then the final `Status`.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use bytes::Bytes;
use futures::stream::{BoxStream, SplitStream};
use futures::{SinkExt, StreamExt};
use serde_json::Value;

use super::StreamError;
use super::channel::{self, Incoming};

/// Which streams the client asked for (`stdin`, `stdout`, `stderr`, `tty` in the query).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Options {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Options {
    pub fn parse(query: &[(String, String)]) -> Result<Options, StreamError> {
        let flag = |name: &str| {
            query
                .iter()
                .any(|(k, v)| k == name && matches!(v.as_str(), "true" | "1"))
        };
        let options = Options {
            stdin: flag("stdin"),
            stdout: flag("stdout"),
            stderr: flag("stderr"),
            tty: flag("tty"),
        };
        if !(options.stdin || options.stdout || options.stderr) {
            return Err(StreamError::BadRequest(
                "you must specify at least 1 of stdin, stdout, stderr".into(),
            ));
        }
        Ok(options)
    }
}

/// The process end of a session: where the client's input goes, and how the session ends.
#[async_trait::async_trait]
pub trait Process: Send + Sync {
    /// Writes to its stdin; false once that is closed.
    async fn write(&self, data: &[u8]) -> bool;
    /// The client's input ended.
    async fn close_stdin(&self);
    async fn resize(&self, width: u16, height: u16);
    /// The client went away before the output ended: true to read the output to its end still
    /// (exec kills its process), false to end the session now (attach leaves the container).
    async fn abandoned(&self) -> bool;
    /// The output ended (or the client went): the session's final status.
    async fn finish(&self) -> Value;
}

/// A started session: the process's output, each chunk with its channel, and the process.
pub struct Started {
    pub output: BoxStream<'static, (u8, Bytes)>,
    pub process: Arc<dyn Process>,
}

/// Accepts the upgrade to a WebSocket in the protocol kubectl speaks, or says why not.
pub fn accept(
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    what: &str,
) -> Result<WebSocketUpgrade, StreamError> {
    let not_websocket = || {
        StreamError::BadRequest(format!(
            "{what} is served over a WebSocket with the {} protocol",
            channel::PROTOCOL
        ))
    };
    let upgrade = upgrade
        .map_err(|_| not_websocket())?
        .protocols([channel::PROTOCOL]);
    if upgrade.selected_protocol().is_none() {
        return Err(not_websocket());
    }
    Ok(upgrade)
}

/// Upgrades and runs the session `start` makes once the WebSocket is up.
pub fn upgrade<F>(upgrade: WebSocketUpgrade, start: F) -> Response
where
    F: Future<Output = Result<Started, String>> + Send + 'static,
{
    upgrade.on_upgrade(move |socket| async move { run(socket, start.await).await })
}

/// Carries the session until its output ended or the client left, then sends the status.
async fn run(socket: WebSocket, started: Result<Started, String>) {
    let (mut sink, incoming) = socket.split();
    let status = match started {
        Ok(Started {
            mut output,
            process,
        }) => {
            let mut input = tokio::spawn(forward_input(incoming, process.clone()));
            let mut client_gone = false;
            loop {
                tokio::select! {
                    chunk = output.next() => {
                        let Some((channel, data)) = chunk else { break };
                        let message = Message::Binary(channel::encode(channel, &data).into());
                        if sink.send(message).await.is_err() && !client_gone {
                            client_gone = true;
                            if !process.abandoned().await {
                                break;
                            }
                        }
                    }
                    _ = &mut input, if !client_gone => {
                        client_gone = true;
                        if !process.abandoned().await {
                            break;
                        }
                    }
                }
            }
            input.abort();
            process.finish().await
        }
        Err(message) => channel::failure(&message),
    };
    let _ = sink
        .send(Message::Binary(
            channel::encode(channel::ERROR, status.to_string().as_bytes()).into(),
        ))
        .await;
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code: close_code::NORMAL,
            reason: "".into(),
        })))
        .await;
    let _ = sink.close().await;
}

/// Client to process: standard input and its end, terminal sizes. Returns when the client is gone.
async fn forward_input(mut incoming: SplitStream<WebSocket>, process: Arc<dyn Process>) {
    let mut stdin_open = true;
    while let Some(Ok(message)) = incoming.next().await {
        let data = match message {
            Message::Binary(data) => data,
            Message::Close(_) => break,
            _ => continue,
        };
        match channel::decode(&data) {
            Incoming::Stdin(bytes) => {
                if stdin_open && !process.write(bytes).await {
                    stdin_open = false;
                }
            }
            Incoming::Close(channel::STDIN) => {
                if std::mem::take(&mut stdin_open) {
                    process.close_stdin().await;
                }
            }
            Incoming::Resize { width, height } => process.resize(width, height).await,
            Incoming::Close(_) | Incoming::Ignored => {}
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A query of `(name, value)` pairs.
    pub fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_query_names_the_streams() {
        let options = Options::parse(&query(&[("stdin", "true"), ("tty", "1")])).expect("valid");
        assert!(options.stdin && options.tty && !options.stdout && !options.stderr);
        assert!(Options::parse(&query(&[("tty", "true")])).is_err());
        assert!(Options::parse(&query(&[("stdout", "false")])).is_err());
    }
}
