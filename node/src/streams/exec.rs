//! `/exec/{namespace}/{pod}/{container}`: a command in a running container, its streams carried
//! over a WebSocket in the `v5.channel.k8s.io` protocol kubectl speaks.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;

use super::channel::{self, Incoming};
use super::{StreamError, Streams, check_container, uid};
use crate::runtime::{Control, ExecRequest, Runtime, Session};

/// The command and streams of the query (`command` repeats, one per argument).
fn exec_request(query: &[(String, String)]) -> Result<ExecRequest, StreamError> {
    let flag = |name: &str| {
        query
            .iter()
            .any(|(k, v)| k == name && matches!(v.as_str(), "true" | "1"))
    };
    let request = ExecRequest {
        command: query
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.clone())
            .collect(),
        tty: flag("tty"),
        stdin: flag("stdin"),
        stdout: flag("stdout"),
        stderr: flag("stderr"),
    };
    if request.command.is_empty() {
        return Err(StreamError::BadRequest(
            "you must specify at least 1 command".into(),
        ));
    }
    if !(request.stdin || request.stdout || request.stderr) {
        return Err(StreamError::BadRequest(
            "you must specify at least 1 of stdin, stdout, stderr".into(),
        ));
    }
    Ok(request)
}

/// Checks the pod and container, then upgrades to the WebSocket the session runs on.
pub async fn exec(
    State(streams): State<Arc<Streams>>,
    Path((namespace, name, container)): Path<(String, String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, StreamError> {
    let request = exec_request(&query)?;
    let pod = streams.pod(&namespace, &name).await?;
    check_container(&pod, &container)?;
    let id = streams
        .containers(uid(&pod), &container)
        .await?
        .into_iter()
        .find(|c| c.exit.is_none())
        .map(|c| c.id)
        .ok_or_else(|| {
            StreamError::BadRequest(format!(
                "container {container} in pod {name} is not running"
            ))
        })?;
    let not_websocket = || {
        StreamError::BadRequest(format!(
            "exec is served over a WebSocket with the {} protocol",
            channel::PROTOCOL
        ))
    };
    let upgrade = upgrade
        .map_err(|_| not_websocket())?
        .protocols([channel::PROTOCOL]);
    if upgrade.selected_protocol().is_none() {
        return Err(not_websocket());
    }
    let runtime = streams.runtime.clone();
    Ok(upgrade.on_upgrade(move |socket| session(socket, runtime, id, request)))
}

/// Runs the command and carries its streams until it ended and its output was sent.
async fn session(socket: WebSocket, runtime: Arc<dyn Runtime>, id: String, request: ExecRequest) {
    let (mut sink, incoming) = socket.split();
    let status = match runtime.exec_session(&id, &request).await {
        Ok(Session {
            stdin,
            stdout,
            stderr,
            control,
        }) => {
            let control: Arc<dyn Control> = Arc::from(control);
            let input = tokio::spawn(forward_input(incoming, stdin, control.clone()));
            let status = forward_output(
                &mut sink,
                [stdout, stderr],
                control.as_ref(),
                input,
                &request,
            )
            .await;
            drop(control);
            status
        }
        Err(e) => channel::failure(&e.to_string()),
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
async fn forward_input(
    mut incoming: SplitStream<WebSocket>,
    mut stdin: Option<pipe::Sender>,
    control: Arc<dyn Control>,
) {
    while let Some(Ok(message)) = incoming.next().await {
        let data = match message {
            Message::Binary(data) => data,
            Message::Close(_) => break,
            _ => continue,
        };
        match channel::decode(&data) {
            Incoming::Stdin(bytes) => {
                if let Some(pipe) = stdin.as_mut()
                    && pipe.write_all(bytes).await.is_err()
                {
                    stdin = None;
                }
            }
            Incoming::Close(channel::STDIN) => {
                // Our end goes first: the process reads to its end, then it is closed.
                if stdin.take().is_some() {
                    let _ = control.close_stdin().await;
                }
            }
            Incoming::Resize { width, height } => {
                let _ = control.resize(width.into(), height.into()).await;
            }
            Incoming::Close(_) | Incoming::Ignored => {}
        }
    }
}

async fn read(pipe: &mut Option<pipe::Receiver>, buffer: &mut [u8]) -> usize {
    match pipe {
        Some(pipe) => pipe.read(buffer).await.unwrap_or(0),
        None => std::future::pending().await,
    }
}

/// Process to client: stdout and stderr until both end and the process exited; the final
/// status. The process is killed if the client goes first.
async fn forward_output(
    sink: &mut SplitSink<WebSocket, Message>,
    mut outputs: [Option<pipe::Receiver>; 2],
    control: &dyn Control,
    mut input: tokio::task::JoinHandle<()>,
    request: &ExecRequest,
) -> Value {
    let mut buffers = [vec![0u8; 32 << 10], vec![0u8; 32 << 10]];
    let wait = control.wait();
    tokio::pin!(wait);
    let mut exit = None;
    let mut client_gone = false;
    while exit.is_none() || outputs.iter().any(Option::is_some) {
        let [out, err] = &mut outputs;
        let [out_buffer, err_buffer] = &mut buffers;
        let (stream, n) = tokio::select! {
            n = read(out, out_buffer) => (0, n),
            n = read(err, err_buffer) => (1, n),
            code = &mut wait, if exit.is_none() => {
                exit = Some(code);
                continue;
            }
            _ = &mut input, if !client_gone => {
                client_gone = true;
                let _ = control.kill().await;
                continue;
            }
        };
        if n == 0 {
            outputs[stream] = None;
            continue;
        }
        let channel = [channel::STDOUT, channel::STDERR][stream];
        let message = channel::encode(channel, &buffers[stream][..n]);
        if sink.send(Message::Binary(message.into())).await.is_err() && !client_gone {
            client_gone = true;
            let _ = control.kill().await;
        }
    }
    input.abort();
    match exit {
        Some(Ok(code)) => channel::exit_status(&request.command, code),
        Some(Err(e)) => channel::failure(&e.to_string()),
        None => channel::failure("the process was lost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

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
