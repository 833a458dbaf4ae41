//! SPDY/3.1 framing as kubectl's port-forward speaks it: frames, and header blocks compressed
//! with one zlib stream per direction and the protocol's preset dictionary.

use std::collections::BTreeMap;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt};

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
/// The FIN flag of data and control frames: the sender will send nothing more on the stream.
const FLAG_FIN: u8 = 1;
/// RST_STREAM's status for a stream the receiver gave up on.
pub const CANCEL: u32 = 5;
/// The largest data frame we send.
pub const MAX_DATA: usize = 32 << 10;

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("reading a SPDY frame: {0}")]
    Io(#[from] std::io::Error),
    #[error("SPDY version {0} is not 3")]
    Version(u16),
    #[error("malformed SPDY {0} frame")]
    Malformed(&'static str),
    #[error("SPDY header block: {0}")]
    Compression(String),
}

/// The most bytes one header block may inflate to: a few headers name a stream, so a block
/// that inflates further is a compression bomb.
const MAX_HEADER_BLOCK: usize = 64 * 1024;

/// A stream's headers (names are lower case).
pub type Headers = BTreeMap<String, String>;

/// A frame as a port-forward server sees it.
#[derive(Debug, PartialEq)]
pub enum Frame {
    Data {
        stream: u32,
        fin: bool,
        data: Vec<u8>,
    },
    SynStream {
        stream: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        stream: u32,
    },
    Ping {
        id: u32,
    },
    GoAway,
    /// SETTINGS, WINDOW_UPDATE, SYN_REPLY, HEADERS: nothing a port-forward server acts on.
    Ignored,
}

/// The SPDY/3 header dictionary: length-prefixed header names and values, then common text.
fn dictionary() -> Vec<u8> {
    const WORDS: &[&str] = &[
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    const TEXT: &str = concat!(
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
        "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 ",
        "Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 ",
        "Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, ",
        "Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,",
        "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
        "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
    );
    let mut bytes = Vec::with_capacity(1423);
    for word in WORDS {
        bytes.extend_from_slice(&(word.len() as u32).to_be_bytes());
        bytes.extend_from_slice(word.as_bytes());
    }
    bytes.extend_from_slice(TEXT.as_bytes());
    bytes
}

fn be32(bytes: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[..4]);
    u32::from_be_bytes(word)
}

/// A header block: a count, then length-prefixed names and values.
fn parse_block(mut block: &[u8]) -> Result<Headers, SpdyError> {
    let mut take = |n: usize| -> Result<Vec<u8>, SpdyError> {
        let bytes = block
            .get(..n)
            .ok_or(SpdyError::Malformed("header block"))?
            .to_vec();
        block = &block[n..];
        Ok(bytes)
    };
    let count = be32(&take(4)?);
    let mut headers = Headers::new();
    for _ in 0..count {
        let length = be32(&take(4)?) as usize;
        let name = String::from_utf8_lossy(&take(length)?).to_lowercase();
        let length = be32(&take(4)?) as usize;
        // Several values are joined by NULs; the port-forward headers have one each.
        let value = String::from_utf8_lossy(&take(length)?).into_owned();
        headers.insert(
            name,
            value.split('\0').next().unwrap_or_default().to_string(),
        );
    }
    Ok(headers)
}

/// Reads frames off a connection, inflating header blocks.
pub struct Reader<R> {
    io: R,
    inflate: Decompress,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub fn new(io: R) -> Self {
        Reader {
            io,
            inflate: Decompress::new(true),
        }
    }

    /// The next frame; `None` when the connection ended between frames.
    pub async fn next(&mut self) -> Result<Option<Frame>, SpdyError> {
        let mut head = [0u8; 8];
        match self.io.read_exact(&mut head).await {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        let flags = head[4];
        let length = be32(&[0, head[5], head[6], head[7]]) as usize;
        let mut body = vec![0u8; length];
        self.io.read_exact(&mut body).await?;
        if head[0] & 0x80 == 0 {
            return Ok(Some(Frame::Data {
                stream: be32(&head) & 0x7fff_ffff,
                fin: flags & FLAG_FIN != 0,
                data: body,
            }));
        }
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        if version != 3 {
            return Err(SpdyError::Version(version));
        }
        let stream = || -> Result<u32, SpdyError> {
            body.get(..4)
                .map(|b| be32(b) & 0x7fff_ffff)
                .ok_or(SpdyError::Malformed("control"))
        };
        let frame = match u16::from_be_bytes([head[2], head[3]]) {
            SYN_STREAM => {
                let block = body.get(10..).ok_or(SpdyError::Malformed("SYN_STREAM"))?;
                Frame::SynStream {
                    stream: stream()?,
                    fin: flags & FLAG_FIN != 0,
                    headers: parse_block(&self.inflate(block)?)?,
                }
            }
            // Their header blocks are inflated all the same, to keep the zlib stream in step.
            SYN_REPLY | HEADERS => {
                self.inflate(body.get(4..).ok_or(SpdyError::Malformed("HEADERS"))?)?;
                Frame::Ignored
            }
            RST_STREAM => Frame::RstStream { stream: stream()? },
            PING => Frame::Ping { id: stream()? },
            GOAWAY => Frame::GoAway,
            _ => Frame::Ignored,
        };
        Ok(Some(frame))
    }

    /// Inflates one header block (a sync-flushed piece of the connection's zlib stream).
    fn inflate(&mut self, mut block: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(block.len() * 4 + 256);
        loop {
            let (consumed, produced) = (self.inflate.total_in(), self.inflate.total_out());
            match self
                .inflate
                .decompress_vec(block, &mut out, FlushDecompress::Sync)
            {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(&dictionary())
                        .map_err(|e| SpdyError::Compression(e.to_string()))?;
                }
                Err(e) => return Err(SpdyError::Compression(e.to_string())),
            }
            let used = usize::try_from(self.inflate.total_in() - consumed).unwrap_or(block.len());
            block = &block[used.min(block.len())..];
            let full = out.len() == out.capacity();
            if full && out.len() >= MAX_HEADER_BLOCK {
                return Err(SpdyError::Compression(format!(
                    "a header block inflates to more than {MAX_HEADER_BLOCK} bytes"
                )));
            }
            if full {
                out.reserve(out.capacity().min(MAX_HEADER_BLOCK));
            } else if block.is_empty() || (used == 0 && self.inflate.total_out() == produced) {
                return Ok(out);
            }
        }
    }
}

/// Encodes frames, deflating header blocks.
pub struct Writer {
    deflate: Compress,
}

fn control(kind: u16, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + body.len());
    frame.extend_from_slice(&[0x80, 3]);
    frame.extend_from_slice(&kind.to_be_bytes());
    frame.push(flags);
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(body);
    frame
}

impl Writer {
    pub fn new() -> Result<Writer, SpdyError> {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(&dictionary())
            .map_err(|e| SpdyError::Compression(e.to_string()))?;
        Ok(Writer { deflate })
    }

    /// The reply accepting a stream the peer opened, with no headers.
    pub fn syn_reply(&mut self, stream: u32) -> Result<Vec<u8>, SpdyError> {
        let block = self.deflate(&0u32.to_be_bytes())?;
        let mut body = stream.to_be_bytes().to_vec();
        body.extend_from_slice(&block);
        Ok(control(SYN_REPLY, 0, &body))
    }

    fn deflate(&mut self, mut block: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(block.len() + 64);
        loop {
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(block, &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Compression(e.to_string()))?;
            let used = usize::try_from(self.deflate.total_in() - before).unwrap_or(block.len());
            block = &block[used.min(block.len())..];
            if out.len() < out.capacity() && block.is_empty() {
                return Ok(out);
            }
            out.reserve(out.capacity().max(64));
        }
    }
}

/// A data frame; `fin` ends the stream in our direction.
pub fn data(stream: u32, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    frame.push(if fin { FLAG_FIN } else { 0 });
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(payload);
    frame
}

/// The answer to the peer's PING.
pub fn ping(id: u32) -> Vec<u8> {
    control(PING, 0, &id.to_be_bytes())
}

/// Abandons a stream.
pub fn rst_stream(stream: u32, status: u32) -> Vec<u8> {
    let mut body = stream.to_be_bytes().to_vec();
    body.extend_from_slice(&status.to_be_bytes());
    control(RST_STREAM, 0, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SYN_STREAM as a client writes it: headers deflated with the dictionary.
    fn syn_stream(deflate: &mut Compress, stream: u32, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut block = (headers.len() as u32).to_be_bytes().to_vec();
        for (name, value) in headers {
            for text in [name, value] {
                block.extend_from_slice(&(text.len() as u32).to_be_bytes());
                block.extend_from_slice(text.as_bytes());
            }
        }
        let mut compressed = Vec::with_capacity(1024);
        deflate
            .compress_vec(&block, &mut compressed, FlushCompress::Sync)
            .expect("deflate");
        let mut body = stream.to_be_bytes().to_vec();
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        body.extend_from_slice(&compressed);
        control(SYN_STREAM, FLAG_FIN, &body)
    }

    /// A compression bomb: one header of a megabyte deflates to about a kilobyte; inflating it
    /// stops at [`MAX_HEADER_BLOCK`] with an error instead of growing without bound.
    #[tokio::test]
    async fn a_header_block_bomb_is_refused() {
        let mut client = Compress::new(Compression::best(), true);
        client.set_dictionary(&dictionary()).expect("dictionary");
        let huge = "a".repeat(1 << 20);
        let wire = syn_stream(&mut client, 1, &[("streamtype", "data"), ("x", &huge)]);
        assert!(wire.len() < 8 * 1024, "the bomb is small on the wire");
        let mut reader = Reader::new(wire.as_slice());
        let err = reader.next().await.expect_err("refused");
        assert!(
            err.to_string()
                .contains("inflates to more than 65536 bytes"),
            "{err}"
        );
    }

    #[test]
    fn the_dictionary_is_the_protocols() {
        let dictionary = dictionary();
        assert_eq!(dictionary.len(), 1423);
        assert!(dictionary.starts_with(b"\0\0\0\x07options\0\0\0\x04head"));
        assert!(dictionary.ends_with(b",*,enq=0."));
    }

    #[tokio::test]
    async fn frames_round_trip_with_compressed_headers() {
        let mut client = Compress::new(Compression::best(), true);
        client.set_dictionary(&dictionary()).expect("dictionary");
        let mut wire = syn_stream(
            &mut client,
            1,
            &[("streamtype", "error"), ("port", "80"), ("requestid", "0")],
        );
        wire.extend(syn_stream(
            &mut client,
            3,
            &[("streamtype", "data"), ("port", "80"), ("requestid", "0")],
        ));
        wire.extend(data(3, true, b"GET / HTTP/1.0\r\n\r\n"));
        wire.extend(ping(7));
        wire.extend(rst_stream(3, CANCEL));
        let mut reader = Reader::new(wire.as_slice());
        let Some(Frame::SynStream {
            stream: 1,
            fin: true,
            headers,
        }) = reader.next().await.expect("frame")
        else {
            panic!("not the error stream");
        };
        assert_eq!(headers.get("streamtype").map(String::as_str), Some("error"));
        let Some(Frame::SynStream {
            stream: 3, headers, ..
        }) = reader.next().await.expect("frame")
        else {
            panic!("not the data stream");
        };
        assert_eq!(headers.get("port").map(String::as_str), Some("80"));
        assert_eq!(headers.get("requestid").map(String::as_str), Some("0"));
        assert_eq!(
            reader.next().await.expect("frame"),
            Some(Frame::Data {
                stream: 3,
                fin: true,
                data: b"GET / HTTP/1.0\r\n\r\n".to_vec()
            })
        );
        assert_eq!(
            reader.next().await.expect("frame"),
            Some(Frame::Ping { id: 7 })
        );
        assert_eq!(
            reader.next().await.expect("frame"),
            Some(Frame::RstStream { stream: 3 })
        );
        assert_eq!(reader.next().await.expect("end"), None);
    }

    #[tokio::test]
    async fn a_header_block_that_inflates_too_far_is_refused() {
        let mut client = Compress::new(Compression::best(), true);
        client.set_dictionary(&dictionary()).expect("dictionary");
        let huge = "x".repeat(4 * MAX_HEADER_BLOCK);
        let wire = syn_stream(&mut client, 1, &[("streamtype", &huge)]);
        assert!(
            wire.len() < MAX_HEADER_BLOCK / 16,
            "a bomb: small on the wire"
        );
        let mut reader = Reader::new(wire.as_slice());
        let err = reader.next().await.expect_err("refused");
        assert!(err.to_string().contains("inflates to more than"), "{err}");
    }

    #[tokio::test]
    async fn replies_inflate_with_the_dictionary() {
        let mut writer = Writer::new().expect("writer");
        let mut wire = writer.syn_reply(1).expect("reply");
        wire.extend(writer.syn_reply(3).expect("reply"));
        // Read back as a peer would: SYN_REPLY blocks advance the same zlib stream.
        let mut inflate = Decompress::new(true);
        let mut offset = 0;
        for stream in [1u32, 3] {
            let length = be32(&[0, wire[offset + 5], wire[offset + 6], wire[offset + 7]]) as usize;
            let body = &wire[offset + 8..offset + 8 + length];
            assert_eq!(be32(body), stream);
            let mut out = Vec::with_capacity(64);
            let mut block = &body[4..];
            while !block.is_empty() {
                let before = inflate.total_in();
                match inflate.decompress_vec(block, &mut out, FlushDecompress::Sync) {
                    Err(e) if e.needs_dictionary().is_some() => {
                        inflate.set_dictionary(&dictionary()).expect("dictionary");
                    }
                    other => {
                        other.expect("inflate");
                    }
                }
                block = &block[(inflate.total_in() - before) as usize..];
            }
            assert_eq!(out, vec![0, 0, 0, 0], "no headers");
            offset += 8 + length;
        }
    }
}
