//! `/portForward/{namespace}/{pod}`: kubectl's port-forward protocol (`portforward.k8s.io`), SPDY
//! streams in pairs (error, data) per forwarded connection, each data stream joined to a TCP
//! connection to the pod's IP. SPDY runs on the upgraded connection itself, or tunnelled in
//! WebSocket binary messages (`SPDY/3.1+portforward.k8s.io`, kubectl's default since 1.31).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::spdy::{self, Frame, Headers};
use super::{StreamError, Streams, uid};

/// The port-forward protocol, as negotiated on a SPDY upgrade.
const PROTOCOL: &str = "portforward.k8s.io";
/// The same, tunnelled through a WebSocket.
const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// How long the other direction of a connection may go on once one direction ended.
const LINGER: Duration = Duration::from_secs(1);

fn header_has(headers: &HeaderMap, name: impl header::AsHeaderName, value: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case(value))
}

/// Upgrades to SPDY (directly or in a WebSocket) and forwards to the pod's IP.
pub async fn port_forward(
    State(streams): State<Arc<Streams>>,
    Path((namespace, name)): Path<(String, String)>,
    request: Request,
) -> Result<Response, StreamError> {
    let pod = streams.pod(&namespace, &name).await?;
    let ip = pod
        .pointer("/status/podIP")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| streams.runtime.address(uid(&pod)))
        .ok_or_else(|| StreamError::BadRequest(format!("pod {name} has no IP yet")))?;
    let (mut parts, body) = request.into_parts();
    if header_has(&parts.headers, header::UPGRADE, "websocket") {
        let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &())
            .await
            .map_err(|e| StreamError::BadRequest(e.to_string()))?
            .protocols([TUNNEL_PROTOCOL]);
        if upgrade.selected_protocol().is_none() {
            return Err(StreamError::BadRequest(format!(
                "port-forward over a WebSocket needs the {TUNNEL_PROTOCOL} protocol"
            )));
        }
        return Ok(upgrade.on_upgrade(move |socket| async move {
            let (ours, theirs) = tokio::io::duplex(64 << 10);
            tokio::spawn(tunnel(socket, theirs));
            serve(ours, ip).await;
        }));
    }
    if !header_has(&parts.headers, header::UPGRADE, "SPDY/3.1")
        || !header_has(&parts.headers, "x-stream-protocol-version", PROTOCOL)
    {
        return Err(StreamError::BadRequest(format!(
            "port-forward needs an upgrade to SPDY/3.1 ({PROTOCOL}) or to a WebSocket ({TUNNEL_PROTOCOL})"
        )));
    }
    let mut request = Request::from_parts(parts, body);
    let upgraded = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match upgraded.await {
            Ok(io) => serve(TokioIo::new(io), ip).await,
            Err(e) => tracing::debug!(error = %e, "port-forward upgrade failed"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1")
        .header("X-Stream-Protocol-Version", PROTOCOL)
        .body(Body::empty())
        .map_err(|e| StreamError::BadRequest(e.to_string()))
}

/// Carries a byte stream in WebSocket binary messages, both ways, until either side ends.
async fn tunnel(socket: WebSocket, io: DuplexStream) {
    let (mut sink, mut incoming) = socket.split();
    let (mut reader, mut writer) = tokio::io::split(io);
    let inbound = async move {
        while let Some(Ok(message)) = incoming.next().await {
            match message {
                Message::Binary(data) if writer.write_all(&data).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = writer.shutdown().await;
    };
    let outbound = async move {
        let mut buffer = vec![0u8; 32 << 10];
        while let Ok(n @ 1..) = reader.read(&mut buffer).await {
            let data = bytes::Bytes::copy_from_slice(&buffer[..n]);
            if sink.send(Message::Binary(data)).await.is_err() {
                return;
            }
        }
        let close = CloseFrame {
            code: close_code::NORMAL,
            reason: "".into(),
        };
        let _ = sink.send(Message::Close(Some(close))).await;
    };
    tokio::join!(inbound, outbound);
}

/// What the client sends on a data stream.
enum Input {
    Data(Vec<u8>),
    /// It sends nothing more (FIN).
    End,
}

/// A forwarded connection waiting for both its streams.
#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<u32>,
}

/// Runs a port-forward SPDY session on `io` until the client goes.
async fn serve<IO: AsyncRead + AsyncWrite + Send + 'static>(io: IO, ip: String) {
    let (reader, mut writer) = tokio::io::split(io);
    let (frames, mut outgoing) = mpsc::channel::<Vec<u8>>(64);
    let write = tokio::spawn(async move {
        while let Some(frame) = outgoing.recv().await {
            if writer.write_all(&frame).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    if let Err(e) = session(spdy::Reader::new(reader), &frames, &ip).await {
        tracing::debug!(error = %e, "port-forward session ended");
    }
    drop(frames);
    let _ = write.await;
}

async fn session<R: AsyncRead + Unpin>(
    mut reader: spdy::Reader<R>,
    frames: &mpsc::Sender<Vec<u8>>,
    ip: &str,
) -> Result<(), spdy::SpdyError> {
    let mut replies = spdy::Writer::new()?;
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut inputs: HashMap<u32, mpsc::Sender<Input>> = HashMap::new();
    while let Some(frame) = reader.next().await? {
        match frame {
            Frame::SynStream {
                stream, headers, ..
            } => {
                let _ = frames.send(replies.syn_reply(stream)?).await;
                let request = headers.get("requestid").cloned().unwrap_or_default();
                let pair = pairs.entry(request.clone()).or_default();
                match headers.get("streamtype").map(String::as_str) {
                    Some("error") => pair.error = Some(stream),
                    Some("data") => pair.data = Some(stream),
                    _ => {
                        let _ = frames.send(spdy::rst_stream(stream, spdy::CANCEL)).await;
                        continue;
                    }
                }
                if let Some(Pair {
                    error: Some(error),
                    data: Some(data),
                }) = pairs.get(&request)
                {
                    let (input, received) = mpsc::channel(16);
                    inputs.insert(*data, input);
                    let connection = Connection {
                        ip: ip.to_string(),
                        error: *error,
                        data: *data,
                        frames: frames.clone(),
                    };
                    tokio::spawn(connection.forward(port(&headers), received));
                    pairs.remove(&request);
                }
            }
            Frame::Data { stream, fin, data } => {
                if let Some(input) = inputs.get(&stream) {
                    if !data.is_empty() {
                        let _ = input.send(Input::Data(data)).await;
                    }
                    if fin {
                        let _ = input.send(Input::End).await;
                        inputs.remove(&stream);
                    }
                }
            }
            // Dropping the input tells the connection the client gave up on it.
            Frame::RstStream { stream } => drop(inputs.remove(&stream)),
            Frame::Ping { id } => {
                let _ = frames.send(spdy::ping(id)).await;
            }
            Frame::GoAway => break,
            Frame::Ignored => {}
        }
    }
    Ok(())
}

fn port(headers: &Headers) -> Option<u16> {
    headers
        .get("port")
        .and_then(|p| p.parse().ok())
        .filter(|p| *p > 0)
}

/// One forwarded connection: its two streams and where their frames go.
struct Connection {
    ip: String,
    error: u32,
    data: u32,
    frames: mpsc::Sender<Vec<u8>>,
}

impl Connection {
    /// Joins the data stream to a connection to the pod's `port`; errors go on the error stream.
    /// Both streams are finished when the connection ends.
    async fn forward(self, port: Option<u16>, input: mpsc::Receiver<Input>) {
        let connected = match port {
            Some(port) => TcpStream::connect((self.ip.as_str(), port))
                .await
                .map_err(|e| format!("error forwarding port {port} to pod {}: {e}", self.ip)),
            None => Err("invalid port".to_string()),
        };
        let outcome = match connected {
            Ok(tcp) => self.copy(tcp, input).await,
            Err(message) => Some(message),
        };
        if let Some(message) = outcome {
            let _ = self
                .frames
                .send(spdy::data(self.error, false, message.as_bytes()))
                .await;
        }
        let _ = self.frames.send(spdy::data(self.data, true, &[])).await;
        let _ = self.frames.send(spdy::data(self.error, true, &[])).await;
    }

    /// Copies both ways until one direction ends and the other had [`LINGER`] to finish; an
    /// error message if the copy failed.
    async fn copy(&self, tcp: TcpStream, mut input: mpsc::Receiver<Input>) -> Option<String> {
        let (mut from_pod, mut to_pod) = tcp.into_split();
        let upstream = async move {
            while let Some(item) = input.recv().await {
                match item {
                    Input::Data(data) => {
                        if to_pod.write_all(&data).await.is_err() {
                            return;
                        }
                    }
                    Input::End => {
                        let _ = to_pod.shutdown().await;
                        return;
                    }
                }
            }
        };
        let downstream = async move {
            let mut buffer = vec![0u8; spdy::MAX_DATA];
            loop {
                match from_pod.read(&mut buffer).await {
                    Ok(0) => return None,
                    Ok(n) => {
                        if self
                            .frames
                            .send(spdy::data(self.data, false, &buffer[..n]))
                            .await
                            .is_err()
                        {
                            return None;
                        }
                    }
                    Err(e) => return Some(format!("reading from pod {}: {e}", self.ip)),
                }
            }
        };
        tokio::pin!(upstream, downstream);
        tokio::select! {
            () = &mut upstream => tokio::time::timeout(LINGER, downstream).await.ok().flatten(),
            outcome = &mut downstream => {
                let _ = tokio::time::timeout(LINGER, upstream).await;
                outcome
            }
        }
    }
}
