//! Container output: FIFOs read into per-container log files in the CRI format the kubelet
//! writes (`<RFC3339Nano> <stream> <P|F> <text>`), rotated at a size limit.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::broadcast;

use crate::console::{Chunk, Stream};

/// A log file is rotated (to `<file>.1`) when it grows past this.
pub const MAX_LOG_BYTES: u64 = 10 << 20;
/// Lines longer than this are split into partial (`P`) entries.
const MAX_LINE: usize = 16 << 10;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The FIFO paths of a container's stdout and stderr.
pub fn fifos(dir: &Path, id: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{id}.stdout")),
        dir.join(format!("{id}.stderr")),
    )
}

/// Makes the container's FIFOs (kept if they exist, so a restarted agent reads them again).
pub async fn make_fifos(dir: &Path, id: &str) -> Result<(PathBuf, PathBuf), LogError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let (out, err) = fifos(dir, id);
    for path in [&out, &err] {
        if !path.exists() {
            mkfifo(path).map_err(io(path))?;
        }
    }
    Ok((out, err))
}

/// Makes a FIFO only its owner may open (a system call, not a process: pods start in bursts).
pub fn mkfifo(path: &Path) -> Result<(), std::io::Error> {
    use rustix::fs::{CWD, FileType, Mode, mknodat};
    Ok(mknodat(
        CWD,
        path,
        FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )?)
}

/// The FIFO of the standard input of a container whose spec asks for one (`stdin: true`).
pub fn stdin_fifo(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.stdin"))
}

/// Makes the container's stdin FIFO (kept if it exists).
pub fn make_stdin_fifo(dir: &Path, id: &str) -> Result<PathBuf, LogError> {
    let path = stdin_fifo(dir, id);
    if !path.exists() {
        mkfifo(&path).map_err(io(&path))?;
    }
    Ok(path)
}

/// Removes the container's FIFOs.
pub fn remove_fifos(dir: &Path, id: &str) {
    let (out, err) = fifos(dir, id);
    let _ = std::fs::remove_file(out);
    let _ = std::fs::remove_file(err);
    let _ = std::fs::remove_file(stdin_fifo(dir, id));
}

/// One log file written by both streams of a container.
struct LogFile {
    path: PathBuf,
    file: tokio::fs::File,
    size: u64,
}

impl LogFile {
    async fn open(path: &Path) -> Result<LogFile, LogError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .map_err(io(path))?;
        let size = file.metadata().await.map_err(io(path))?.len();
        Ok(LogFile {
            path: path.to_path_buf(),
            file,
            size,
        })
    }

    async fn write(&mut self, stream: &str, text: &[u8], complete: bool) -> Result<(), LogError> {
        let stamp = Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true);
        let tag = if complete { 'F' } else { 'P' };
        let mut line = format!("{stamp} {stream} {tag} ").into_bytes();
        line.extend_from_slice(text);
        line.push(b'\n');
        self.file.write_all(&line).await.map_err(io(&self.path))?;
        self.size += line.len() as u64;
        if self.size > MAX_LOG_BYTES {
            let rotated = self.path.with_extension("log.1");
            std::fs::rename(&self.path, &rotated).map_err(io(&self.path))?;
            *self = LogFile::open(&self.path).await?;
        }
        Ok(())
    }
}

/// Copies the container's two FIFOs into `log` until `done` fires and both are drained; what
/// is read is also sent to the attached clients through `tap`.
pub async fn copy(
    stdout: PathBuf,
    stderr: PathBuf,
    log: PathBuf,
    mut done: tokio::sync::watch::Receiver<bool>,
    tap: broadcast::Sender<Chunk>,
) -> Result<(), LogError> {
    let mut file = LogFile::open(&log).await?;
    // Read-write keeps the FIFOs open with no writer, so they never report end of file.
    let open = |path: &Path| {
        pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(path)
            .map_err(io(path))
    };
    let mut out = open(&stdout)?;
    let mut err = open(&stderr)?;
    let (mut out_buf, mut err_buf) = (Vec::new(), Vec::new());
    let mut chunk_out = vec![0u8; 8192];
    let mut chunk_err = vec![0u8; 8192];
    let mut finishing = *done.borrow();
    loop {
        let quiet = tokio::time::sleep(std::time::Duration::from_millis(if finishing {
            50
        } else {
            3_600_000
        }));
        tokio::select! {
            n = out.read(&mut chunk_out) => {
                let n = n.map_err(io(&stdout))?;
                // No client attached is no error.
                let _ = tap.send((Stream::Stdout, Bytes::copy_from_slice(&chunk_out[..n])));
                out_buf.extend_from_slice(&chunk_out[..n]);
                flush_lines(&mut file, "stdout", &mut out_buf, false).await?;
            }
            n = err.read(&mut chunk_err) => {
                let n = n.map_err(io(&stderr))?;
                let _ = tap.send((Stream::Stderr, Bytes::copy_from_slice(&chunk_err[..n])));
                err_buf.extend_from_slice(&chunk_err[..n]);
                flush_lines(&mut file, "stderr", &mut err_buf, false).await?;
            }
            changed = done.changed(), if !finishing => {
                finishing = changed.is_err() || *done.borrow();
            }
            () = quiet => break,
        }
    }
    flush_lines(&mut file, "stdout", &mut out_buf, true).await?;
    flush_lines(&mut file, "stderr", &mut err_buf, true).await?;
    Ok(())
}

/// Writes the complete lines in `buffer` (and, at the end, what is left).
async fn flush_lines(
    file: &mut LogFile,
    stream: &str,
    buffer: &mut Vec<u8>,
    end: bool,
) -> Result<(), LogError> {
    while let Some(at) = buffer.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = buffer.drain(..=at).collect();
        file.write(stream, &line[..line.len() - 1], true).await?;
    }
    while buffer.len() >= MAX_LINE {
        let part: Vec<u8> = buffer.drain(..MAX_LINE).collect();
        file.write(stream, &part, false).await?;
    }
    if end && !buffer.is_empty() {
        let rest = std::mem::take(buffer);
        file.write(stream, &rest, true).await?;
    }
    Ok(())
}

/// The log file of a container's `attempt`:
/// `<log dir>/<namespace>_<pod>_<uid>/<container>/<attempt>.log`, as the kubelet lays them out.
pub fn log_path(
    log_dir: &Path,
    namespace: &str,
    pod: &str,
    uid: &str,
    container: &str,
    attempt: u32,
) -> PathBuf {
    log_dir
        .join(format!("{namespace}_{pod}_{uid}"))
        .join(container)
        .join(format!("{attempt}.log"))
}
