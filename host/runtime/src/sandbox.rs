//! The sandbox around one instance: an empty WASI context, a memory limiter, and a bounded capture of the guest's stderr.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmkube_model::printable::printable;
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// How much of the guest's stderr is kept: enough for a panic message.
const STDERR_TAIL_BYTES: usize = 4096;

/// What one table element counts for against the memory limit: a pointer, as wasmtime stores it.
const TABLE_ELEMENT_BYTES: usize = size_of::<usize>();

/// The most core instances, memories and tables one plugin instance may create (wasmtime's
/// defaults are 10 000 each; a Rust component has a few of each). Each memory reserves address
/// space, so their number is capped as well as their size.
const MAX_CORE_INSTANCES: usize = 64;
const MAX_MEMORIES: usize = 16;
const MAX_TABLES: usize = 64;

/// A WASI context that grants nothing: no preopened directories, no environment variables, no
/// arguments, no network, an empty stdin and a discarded stdout. Stderr goes to `stderr`, a small
/// buffer the host reads to explain a trap (a Rust guest prints its panic message there); the
/// guest's real logging goes through the host API's `log`. Clocks and random numbers stay
/// available, as WASI always provides them.
pub(crate) fn empty_wasi(stderr: &StderrTail) -> WasiCtx {
    WasiCtx::builder()
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

/// Refuses growth past a byte limit counted over every memory and table of the instance
/// together, and remembers that it did.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    limit: usize,
    /// Bytes of all memories and tables, as grown so far.
    used: usize,
    /// What the last growth allowed added, taken back if wasmtime then fails to grow.
    last_growth: usize,
    /// Set when a growth was refused; cleared at the start of each call.
    pub(crate) hit: bool,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: usize) -> Self {
        MemoryLimiter {
            limit,
            used: 0,
            last_growth: 0,
            hit: false,
        }
    }

    /// Allows a memory or table to grow from `current` to `desired` bytes if the instance's total
    /// stays within the limit.
    fn grow(&mut self, current: usize, desired: usize) -> bool {
        let growth = desired.saturating_sub(current);
        let used = self.used.saturating_add(growth);
        if used > self.limit {
            self.hit = true;
            return false;
        }
        self.used = used;
        self.last_growth = growth;
        true
    }

    fn grow_failed(&mut self) {
        self.used = self
            .used
            .saturating_sub(std::mem::take(&mut self.last_growth));
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(current, desired))
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failed();
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(
            current.saturating_mul(TABLE_ELEMENT_BYTES),
            desired.saturating_mul(TABLE_ELEMENT_BYTES),
        ))
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failed();
        Ok(())
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// The last few KiB the guest wrote to stderr. Clones share the buffer.
#[derive(Debug, Clone, Default)]
pub(crate) struct StderrTail(Arc<Mutex<VecDeque<u8>>>);

impl StderrTail {
    fn push(&self, bytes: &[u8]) {
        let mut buf = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let bytes = &bytes[bytes.len().saturating_sub(STDERR_TAIL_BYTES)..];
        let excess = (buf.len() + bytes.len()).saturating_sub(STDERR_TAIL_BYTES);
        buf.drain(..excess);
        buf.extend(bytes);
    }

    /// Empties the buffer.
    pub(crate) fn clear(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The last [`STDERR_TAIL_BYTES`] of what the buffer holds, as trimmed text with its lines
    /// joined by `; ` and control characters escaped ([`printable`]), without Rust's hint about
    /// `RUST_BACKTRACE` (the guest has no environment to set it in).
    pub(crate) fn text(&self) -> String {
        let buf = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let bytes: Vec<u8> = buf.iter().copied().collect();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with("note: run with `RUST_BACKTRACE"))
            .collect();
        let text = printable(&lines.join("; "), usize::MAX);
        let start = text.ceil_char_boundary(text.len().saturating_sub(STDERR_TAIL_BYTES));
        text[start..].to_string()
    }
}

impl IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StderrTail {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl OutputStream for StderrTail {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for StderrTail {
    async fn ready(&mut self) {}
}

impl AsyncWrite for StderrTail {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_keeps_the_tail_escaped() {
        let tail = StderrTail::default();
        tail.push(&vec![b'a'; STDERR_TAIL_BYTES]);
        tail.push(b"panicked: boom");
        let text = tail.text();
        assert!(text.len() <= STDERR_TAIL_BYTES);
        assert!(text.ends_with("panicked: boom"), "{text}");
        tail.clear();
        tail.push(b"panicked: \x1b[2J\x1b]0;pwned\x07boom\nsecond line\n");
        assert_eq!(
            tail.text(),
            "panicked: \\u{1b}[2J\\u{1b}]0;pwned\\u{7}boom; second line"
        );
        tail.clear();
        assert_eq!(tail.text(), "");
    }

    #[test]
    fn limiter_counts_every_memory_and_table_together() {
        use wasmtime::ResourceLimiter;
        let mut limiter = MemoryLimiter::new(1 << 20);
        // Two memories of 600 KiB each: each is under the limit, together they are not.
        assert!(matches!(
            limiter.memory_growing(0, 600 << 10, None),
            Ok(true)
        ));
        assert!(!limiter.hit);
        assert!(matches!(
            limiter.memory_growing(0, 600 << 10, None),
            Ok(false)
        ));
        assert!(limiter.hit);
        // Growing the first one within the rest is fine; a table counts too.
        assert!(matches!(
            limiter.memory_growing(600 << 10, 900 << 10, None),
            Ok(true)
        ));
        let elements = (200 << 10) / TABLE_ELEMENT_BYTES;
        assert!(matches!(
            limiter.table_growing(0, elements, None),
            Ok(false)
        ));
        // A growth wasmtime could not make is not counted.
        let elements = (100 << 10) / TABLE_ELEMENT_BYTES;
        assert!(matches!(limiter.table_growing(0, elements, None), Ok(true)));
        assert!(
            limiter
                .table_grow_failed(wasmtime::Error::msg("no"))
                .is_ok()
        );
        assert!(matches!(limiter.table_growing(0, elements, None), Ok(true)));
    }
}
