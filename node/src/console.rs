//! Running containers' consoles for `kubectl attach`: their output fanned out to the attached
//! clients as the log copier reads it, their standard input kept open between attaches.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::broadcast;

/// How many chunks of output an attached client may fall behind before it misses some.
const BACKLOG: usize = 256;

/// Which output stream a chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A piece of a container's output.
pub type Chunk = (Stream, Bytes);

/// The agent's end of a container's stdin FIFO. Kept open (so the process sees no end of input
/// between attaches) until closed for good.
pub struct Stdin {
    pipe: tokio::sync::Mutex<Option<pipe::Sender>>,
    /// `stdinOnce`: closed when the first attach that used it ends.
    pub once: bool,
}

impl Stdin {
    /// Opens the FIFO at `path` for writing without waiting for a reader (read-write never
    /// blocks; the reader is the container's shim).
    pub fn open(path: &Path, once: bool) -> std::io::Result<Stdin> {
        let pipe = pipe::OpenOptions::new()
            .read_write(true)
            .open_sender(path)?;
        Ok(Stdin::new(pipe, once))
    }

    /// Our end of a FIFO already open.
    pub fn new(pipe: pipe::Sender, once: bool) -> Stdin {
        Stdin {
            pipe: tokio::sync::Mutex::new(Some(pipe)),
            once,
        }
    }

    /// Writes to the process; false once stdin is closed (also when a write fails).
    pub async fn write(&self, data: &[u8]) -> bool {
        let mut pipe = self.pipe.lock().await;
        let written = match pipe.as_mut() {
            Some(sender) => sender.write_all(data).await.is_ok(),
            None => false,
        };
        if !written {
            *pipe = None;
        }
        written
    }

    /// Closes it for good: the process reads to the end of its input. False if it already was.
    pub async fn close(&self) -> bool {
        self.pipe.lock().await.take().is_some()
    }
}

/// What an attach reaches of one running container.
pub struct Console {
    pub output: broadcast::Sender<Chunk>,
    /// None when the container has no stdin (`stdin: false`).
    pub stdin: Option<Arc<Stdin>>,
    pub tty: bool,
}

impl Console {
    pub fn new(stdin: Option<Stdin>, tty: bool) -> Console {
        Console {
            output: broadcast::channel(BACKLOG).0,
            stdin: stdin.map(Arc::new),
            tty,
        }
    }
}

/// The consoles of the node's running containers, by container id.
#[derive(Default)]
pub struct Consoles {
    consoles: Mutex<HashMap<String, Arc<Console>>>,
}

impl Consoles {
    pub fn insert(&self, id: &str, console: Arc<Console>) {
        self.lock().insert(id.to_string(), console);
    }

    /// Forgets the console of a container that ended: its output ends for attached clients
    /// once the log copier has sent the last of it.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    pub fn get(&self, id: &str) -> Option<Arc<Console>> {
        self.lock().get(id).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Console>>> {
        // A panic elsewhere while holding it leaves a map that is still whole.
        self.consoles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_ends_for_subscribers_when_the_last_sender_goes() {
        let consoles = Consoles::default();
        let console = Arc::new(Console::new(None, false));
        consoles.insert("c1", console.clone());
        let copier = console.output.clone();
        let mut attached = consoles.get("c1").expect("registered").output.subscribe();
        drop(console);
        consoles.remove("c1");
        assert!(consoles.get("c1").is_none());
        copier
            .send((Stream::Stdout, Bytes::from_static(b"last words")))
            .expect("a subscriber");
        drop(copier);
        assert_eq!(
            attached.recv().await.expect("the output").1,
            Bytes::from_static(b"last words")
        );
        assert!(attached.recv().await.is_err(), "then the end");
    }

    #[tokio::test]
    async fn stdin_stays_open_until_closed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("c.stdin");
        crate::logs::mkfifo(&path).expect("fifo");
        let mut reader = pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(&path)
            .expect("reader");
        let stdin = Stdin::open(&path, true).expect("writer");
        assert!(stdin.write(b"echo hi\n").await);
        let mut buffer = [0u8; 16];
        let n = tokio::io::AsyncReadExt::read(&mut reader, &mut buffer)
            .await
            .expect("read");
        assert_eq!(&buffer[..n], b"echo hi\n");
        assert!(stdin.close().await);
        assert!(!stdin.write(b"more").await);
        assert!(!stdin.close().await);
    }
}
