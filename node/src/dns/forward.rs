//! Forwarding: questions outside the cluster domain go to the node's upstream resolvers as a
//! fresh query (never the client's own bytes), over UDP, and over TCP when the answer is
//! truncated.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_server::proto::op::{Edns, Message, Query, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Semaphore;

/// How long one upstream has to answer.
const TIMEOUT: Duration = Duration::from_secs(2);
/// The UDP payload size asked of upstreams (the DNS flag day's 1232 bytes).
pub const PAYLOAD: u16 = 1232;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no upstream resolver is configured")]
    NoUpstream,
    #[error("too many questions are being forwarded at once")]
    Busy,
    #[error("upstream {upstream}: {message}")]
    Upstream {
        upstream: SocketAddr,
        message: String,
    },
}

/// The node's upstream resolvers, tried in order.
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    /// How many questions may wait on upstreams at once: a pod flooding the server with
    /// outside names gets SERVFAIL, not an unbounded pile of sockets.
    permits: Semaphore,
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>, at_once: usize) -> Forwarder {
        Forwarder {
            upstreams,
            permits: Semaphore::new(at_once),
        }
    }

    /// The upstream's answer to `query`: its first answer that is not SERVFAIL or REFUSED,
    /// or the last one.
    pub async fn forward(&self, query: &Query) -> Result<Message, ForwardError> {
        let _permit = self.permits.try_acquire().map_err(|_| ForwardError::Busy)?;
        let mut last = Err(ForwardError::NoUpstream);
        for upstream in &self.upstreams {
            last = exchange(*upstream, query).await;
            if let Ok(answer) = &last
                && !matches!(
                    answer.metadata.response_code,
                    ResponseCode::ServFail | ResponseCode::Refused
                )
            {
                break;
            }
        }
        last
    }
}

/// The upstream resolvers of a resolv.conf: its `nameserver` lines, on port 53.
pub fn upstreams(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// One question to one upstream, with a deadline.
pub(super) async fn exchange(upstream: SocketAddr, query: &Query) -> Result<Message, ForwardError> {
    let failed = |message: String| ForwardError::Upstream { upstream, message };
    let mut request = Message::query();
    request.metadata.recursion_desired = true;
    request.add_query(query.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(PAYLOAD);
    request.set_edns(edns);
    let bytes = request.to_vec().map_err(|e| failed(e.to_string()))?;
    let answer = tokio::time::timeout(TIMEOUT, async {
        let answer = udp(upstream, &bytes).await?;
        if answer.metadata.truncation {
            return tcp(upstream, &bytes).await;
        }
        Ok(answer)
    })
    .await
    .map_err(|_| failed("no answer in time".into()))?
    .map_err(|e| failed(e.to_string()))?;
    if answer.metadata.id != request.metadata.id || answer.queries != request.queries {
        return Err(failed("an answer to another question".into()));
    }
    Ok(answer)
}

#[derive(Debug, thiserror::Error)]
pub(super) enum ExchangeError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("an answer that does not decode: {0}")]
    Decode(String),
}

fn decode(bytes: &[u8]) -> Result<Message, ExchangeError> {
    Message::from_vec(bytes).map_err(|e| ExchangeError::Decode(e.to_string()))
}

/// Over UDP, from a fresh socket (a random source port per question).
async fn udp(upstream: SocketAddr, request: &[u8]) -> Result<Message, ExchangeError> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        SocketAddr::V6(_) => ([0u16; 8], 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(request).await?;
    let mut buffer = vec![0; usize::from(PAYLOAD)];
    let read = socket.recv(&mut buffer).await?;
    decode(&buffer[..read])
}

/// Over TCP: each message preceded by its length in two bytes (RFC 1035 4.2.2).
pub(super) async fn tcp(upstream: SocketAddr, request: &[u8]) -> Result<Message, ExchangeError> {
    let mut stream = TcpStream::connect(upstream).await?;
    let length = u16::try_from(request.len()).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "a query over 64 KiB")
    })?;
    stream.write_all(&length.to_be_bytes()).await?;
    stream.write_all(request).await?;
    let length = stream.read_u16().await?;
    let mut buffer = vec![0; usize::from(length)];
    stream.read_exact(&mut buffer).await?;
    decode(&buffer)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use hickory_server::proto::rr::rdata::A;
    use hickory_server::proto::rr::{Name, RData, Record, RecordType};

    use super::*;

    /// An upstream on 127.0.0.1 that answers every A question with 192.0.2.7 (a documentation
    /// address; nothing is sent to it) and `nx.test.` with NXDOMAIN.
    async fn upstream() -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("a socket");
        let address = socket.local_addr().expect("an address");
        tokio::spawn(async move {
            let mut buffer = vec![0; 1500];
            loop {
                let (read, from) = socket.recv_from(&mut buffer).await.expect("a question");
                let request = Message::from_vec(&buffer[..read]).expect("a message");
                let mut answer = Message::response(request.metadata.id, request.metadata.op_code);
                answer.add_queries(request.queries.clone());
                let name = request.queries[0].name().clone();
                if name.to_string() == "nx.test." {
                    answer.metadata.response_code = ResponseCode::NXDomain;
                } else {
                    let data = RData::A(A([192, 0, 2, 7].into()));
                    answer.add_answer(Record::from_rdata(name, 30, data));
                }
                socket
                    .send_to(&answer.to_vec().expect("an encoded answer"), from)
                    .await
                    .expect("an answer sent");
            }
        });
        address
    }

    fn question(name: &str) -> Query {
        Query::query(Name::from_str(name).expect("a name"), RecordType::A)
    }

    #[tokio::test]
    async fn answers_come_from_the_upstream() {
        let forwarder = Forwarder::new(vec![upstream().await], 4);
        let answer = forwarder
            .forward(&question("example.test."))
            .await
            .expect("an answer");
        assert_eq!(answer.answers.len(), 1);
        assert_eq!(answer.answers[0].data.to_string(), "192.0.2.7");
        let answer = forwarder
            .forward(&question("nx.test."))
            .await
            .expect("an answer");
        assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
    }

    #[tokio::test]
    async fn a_silent_upstream_is_skipped_for_the_next() {
        // Bound and never read: questions to it go unanswered.
        let silent = UdpSocket::bind("127.0.0.1:0").await.expect("a socket");
        let forwarder = Forwarder::new(
            vec![silent.local_addr().expect("an address"), upstream().await],
            4,
        );
        let answer = forwarder
            .forward(&question("example.test."))
            .await
            .expect("an answer");
        assert_eq!(answer.answers.len(), 1);
    }

    #[tokio::test]
    async fn forwarding_is_bounded() {
        let forwarder = Forwarder::new(vec![upstream().await], 0);
        let refused = forwarder.forward(&question("example.test.")).await;
        assert!(matches!(refused, Err(ForwardError::Busy)));
        let none = Forwarder::new(Vec::new(), 1);
        let refused = none.forward(&question("example.test.")).await;
        assert!(matches!(refused, Err(ForwardError::NoUpstream)));
    }

    #[test]
    fn upstreams_are_the_nameservers_of_resolv_conf() {
        let text = "search example.com\nnameserver 10.0.0.2\nnameserver ::1\nnameserver bogus\n";
        let found: Vec<String> = upstreams(text).iter().map(|a| a.to_string()).collect();
        assert_eq!(found, ["10.0.0.2:53", "[::1]:53"]);
    }
}
