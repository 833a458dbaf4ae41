//! The DNS server: answers from the current zone, forwards the rest, on UDP and TCP with
//! bounds on what one client may hold (TCP connections, their idle time, forwarded questions).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::StreamExt;
use hickory_server::Server;
use hickory_server::net::runtime::iocompat::AsyncIoTokioAsStd;
use hickory_server::net::runtime::{Time, TokioTime};
use hickory_server::net::tcp::TcpStream;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::{DNSClass, Record};
use hickory_server::server::{
    Request, RequestHandler, ResponseHandle, ResponseHandler, ResponseInfo, TimeoutStream,
};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;

use super::forward::{Forwarder, PAYLOAD};
use super::zone::{Answer, Zone};

/// The most TCP connections open at once; more are closed as they come.
const MAX_TCP_CONNECTIONS: usize = 64;
/// How long a TCP connection may sit without a question (RFC 7766 suggests seconds).
const TCP_IDLE: Duration = Duration::from_secs(5);

/// Answers questions: the cluster's names from the zone, the rest from upstream.
#[derive(Clone)]
pub struct Handler {
    zone: Arc<ArcSwap<Zone>>,
    forwarder: Arc<Forwarder>,
}

impl Handler {
    pub fn new(zone: Arc<ArcSwap<Zone>>, forwarder: Forwarder) -> Handler {
        Handler {
            zone,
            forwarder: Arc::new(forwarder),
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = true;
        let edns = request.edns.as_ref().map(|_| {
            let mut edns = Edns::new();
            edns.set_max_payload(PAYLOAD);
            edns
        });
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let query = match request.request_info() {
            Ok(info) if request.metadata.op_code == OpCode::Query => info.query,
            Ok(_) => return send_error(response, builder, metadata, ResponseCode::NotImp).await,
            Err(_) => return send_error(response, builder, metadata, ResponseCode::FormErr).await,
        };
        if query.query_class() != DNSClass::IN {
            return send_error(response, builder, metadata, ResponseCode::Refused).await;
        }
        let zone = self.zone.load();
        let soa = [zone.soa()];
        let no_records: [Record; 0] = [];
        let sent = match zone.answer(query.original().name(), query.query_type()) {
            Answer::Found {
                answers,
                additionals,
            } => {
                metadata.authoritative = true;
                let message =
                    builder.build(metadata, &answers, &no_records, &no_records, &additionals);
                response.send_response(message).await
            }
            Answer::NoData | Answer::NxDomain if !zone.synced() => {
                return send_error(response, builder, metadata, ResponseCode::ServFail).await;
            }
            negative @ (Answer::NoData | Answer::NxDomain) => {
                metadata.authoritative = true;
                if negative == Answer::NxDomain {
                    metadata.response_code = ResponseCode::NXDomain;
                }
                let message = builder.build(metadata, &no_records, &no_records, &soa, &no_records);
                response.send_response(message).await
            }
            Answer::Elsewhere => match self.forwarder.forward(query.original()).await {
                Ok(upstream) => {
                    metadata.response_code = upstream.metadata.response_code;
                    metadata.truncation = upstream.metadata.truncation;
                    let message = builder.build(
                        metadata,
                        &upstream.answers,
                        &upstream.authorities,
                        &no_records,
                        &upstream.additionals,
                    );
                    response.send_response(message).await
                }
                Err(e) => {
                    tracing::debug!(error = %e, "forwarding a question");
                    return send_error(response, builder, metadata, ResponseCode::ServFail).await;
                }
            },
        };
        sent.unwrap_or_else(|e| {
            tracing::debug!(error = %e, "sending a DNS answer");
            failed(metadata)
        })
    }
}

async fn send_error(
    mut response: impl ResponseHandler,
    builder: MessageResponseBuilder<'_>,
    metadata: Metadata,
    code: ResponseCode,
) -> ResponseInfo {
    let mut error = metadata;
    error.response_code = code;
    let message = builder.build_no_records(error);
    response
        .send_response(message)
        .await
        .unwrap_or_else(|_| failed(error))
}

fn failed(mut metadata: Metadata) -> ResponseInfo {
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

/// Binds UDP and TCP on `address`, even before the address is on an interface (the pod
/// bridge gets its gateway address with its first pod), and serves until the process ends.
pub fn serve(address: SocketAddr, handler: Handler) -> std::io::Result<()> {
    let (udp, tcp) = bind(address)?;
    let mut server = Server::new(handler.clone());
    server.register_socket(udp);
    tokio::spawn(async move {
        // The server's tasks run until the process ends; keep it alive with them.
        if let Err(e) = server.block_until_done().await {
            tracing::error!(error = %e, "the cluster DNS stopped serving UDP");
        }
    });
    tokio::spawn(serve_tcp(tcp, handler));
    Ok(())
}

fn bind(address: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    use socket2::{Domain, Socket, Type};
    let domain = Domain::for_address(address);
    let socket = |kind: Type| -> std::io::Result<Socket> {
        let socket = Socket::new(domain, kind, None)?;
        match address {
            SocketAddr::V4(_) => socket.set_freebind_v4(true)?,
            SocketAddr::V6(_) => socket.set_freebind_v6(true)?,
        }
        // A restarted agent binds TCP again while its old connections wait; UDP must stay
        // exclusive, or a second server on the address would silently share the questions.
        if kind == Type::STREAM {
            socket.set_reuse_address(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&address.into())?;
        Ok(socket)
    };
    let udp = UdpSocket::from_std(socket(Type::DGRAM)?.into())?;
    let tcp = socket(Type::STREAM)?;
    tcp.listen(128)?;
    let tcp = TcpListener::from_std(tcp.into())?;
    Ok((udp, tcp))
}

/// Accepts TCP connections, at most [`MAX_TCP_CONNECTIONS`] at once, each closed after
/// [`TCP_IDLE`] without a question; questions on one connection are answered in turn.
async fn serve_tcp(listener: TcpListener, handler: Handler) {
    let connections = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::debug!(error = %e, "accepting a DNS connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many DNS connections: closing one");
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let (messages, sender) = TcpStream::from_stream(AsyncIoTokioAsStd(stream), peer);
            let mut messages = TimeoutStream::new(messages, TCP_IDLE);
            while let Some(Ok(message)) = messages.next().await {
                let (bytes, from) = message.into_parts();
                let Ok(request) = Request::from_bytes(bytes, from, Protocol::Tcp) else {
                    return;
                };
                if request.metadata.message_type != MessageType::Query {
                    continue;
                }
                let response = ResponseHandle::new(from, sender.clone(), Protocol::Tcp);
                handler
                    .handle_request::<_, TokioTime>(&request, response)
                    .await;
            }
        });
    }
}

#[cfg(test)]
mod tests;
