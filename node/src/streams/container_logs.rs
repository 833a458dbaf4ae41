//! A container's CRI log files read back as `kubectl logs` shows them: partial lines joined,
//! filtered by time, tailed, limited in bytes, and followed while the container runs.

use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

/// How often a followed file is checked for more.
const POLL: Duration = Duration::from_millis(200);
/// How long output is still read after the container's process ended (the copier's last flush).
const EXIT_GRACE: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error("{0}")]
    BadOption(String),
    #[error("container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating")]
    NotStarted { pod: String, container: String },
    #[error("previous terminated container \"{container}\" in pod \"{pod}\" not found")]
    NoPrevious { pod: String, container: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The query of `containerLogs`, as the apiserver passes kubectl's on.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogQuery {
    pub follow: Option<String>,
    pub previous: Option<String>,
    pub timestamps: Option<String>,
    pub tail_lines: Option<String>,
    pub since_seconds: Option<String>,
    pub since_time: Option<String>,
    pub limit_bytes: Option<String>,
}

/// What to show, checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail: Option<usize>,
    pub since: Option<DateTime<Utc>>,
    pub limit: Option<usize>,
}

fn truthy(value: &Option<String>) -> bool {
    matches!(value.as_deref(), Some("true" | "1"))
}

impl LogOptions {
    pub fn parse(query: &LogQuery, now: DateTime<Utc>) -> Result<LogOptions, LogsError> {
        let number = |name: &str, value: &Option<String>| -> Result<Option<i64>, LogsError> {
            value
                .as_deref()
                .map(|v| {
                    v.parse::<i64>()
                        .map_err(|_| LogsError::BadOption(format!("{name}: invalid value {v:?}")))
                })
                .transpose()
        };
        let tail = number("tailLines", &query.tail_lines)?;
        let limit = number("limitBytes", &query.limit_bytes)?;
        if limit.is_some_and(|l| l < 1) {
            return Err(LogsError::BadOption(
                "limitBytes: must be greater than 0".into(),
            ));
        }
        let since = match (
            number("sinceSeconds", &query.since_seconds)?,
            &query.since_time,
        ) {
            (Some(_), Some(_)) => {
                return Err(LogsError::BadOption(
                    "at most one of sinceTime or sinceSeconds may be specified".into(),
                ));
            }
            (Some(seconds), None) if seconds < 1 => {
                return Err(LogsError::BadOption(
                    "sinceSeconds: must be greater than 0".into(),
                ));
            }
            // Further back than time goes: every line.
            (Some(seconds), None) => Some(
                chrono::TimeDelta::try_seconds(seconds)
                    .and_then(|back| now.checked_sub_signed(back))
                    .unwrap_or(DateTime::<Utc>::MIN_UTC),
            ),
            (None, Some(time)) => Some(
                DateTime::parse_from_rfc3339(time)
                    .map_err(|_| LogsError::BadOption(format!("sinceTime: invalid time {time:?}")))?
                    .with_timezone(&Utc),
            ),
            (None, None) => None,
        };
        Ok(LogOptions {
            follow: truthy(&query.follow),
            previous: truthy(&query.previous),
            timestamps: truthy(&query.timestamps),
            // A negative tail shows everything, as the kubelet does.
            tail: tail.and_then(|t| usize::try_from(t).ok()),
            since,
            limit: limit.and_then(|l| usize::try_from(l).ok()),
        })
    }
}

/// One line of output: when it was written and its text, newline included.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub stamp: String,
    pub time: DateTime<Utc>,
    pub text: Vec<u8>,
}

impl Line {
    fn render(&self, timestamps: bool, out: &mut Vec<u8>) {
        if timestamps {
            out.extend_from_slice(self.stamp.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&self.text);
    }
}

/// Turns log file bytes into lines: `<stamp> <stream> <P|F> <text>` entries, a stream's
/// partial (`P`) entries joined with the rest of their line.
#[derive(Default)]
pub struct Parser {
    unfinished: Vec<u8>,
    /// The partial line of stdout and of stderr.
    partial: [Option<Line>; 2],
}

impl Parser {
    /// The lines completed by `bytes`; an entry cut off at the end waits for the rest.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Line> {
        self.unfinished.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(end) = self.unfinished.iter().position(|b| *b == b'\n') {
            let entry: Vec<u8> = self.unfinished.drain(..=end).collect();
            if let Some(line) = self.entry(&entry[..entry.len() - 1]) {
                lines.push(line);
            }
        }
        lines
    }

    fn entry(&mut self, entry: &[u8]) -> Option<Line> {
        let mut fields = entry.splitn(4, |b| *b == b' ');
        let stamp = std::str::from_utf8(fields.next()?).ok()?;
        let stream = match fields.next()? {
            b"stdout" => 0,
            b"stderr" => 1,
            _ => return None,
        };
        let complete = match fields.next()? {
            b"F" => true,
            b"P" => false,
            _ => return None,
        };
        let text = fields.next().unwrap_or_default();
        let time = DateTime::parse_from_rfc3339(stamp)
            .ok()?
            .with_timezone(&Utc);
        let line = self.partial[stream].get_or_insert_with(|| Line {
            stamp: stamp.to_string(),
            time,
            text: Vec::new(),
        });
        line.text.extend_from_slice(text);
        if !complete {
            return None;
        }
        let mut line = self.partial[stream].take()?;
        line.text.push(b'\n');
        Some(line)
    }
}

/// The lines at or after `since`, then the last `tail` of them.
pub fn select(lines: Vec<Line>, since: Option<DateTime<Utc>>, tail: Option<usize>) -> Vec<Line> {
    let mut lines: Vec<Line> = lines
        .into_iter()
        .filter(|l| since.is_none_or(|s| l.time >= s))
        .collect();
    if let Some(tail) = tail {
        lines.drain(..lines.len().saturating_sub(tail));
    }
    lines
}

/// The attempts (restart counts) that have a log file in a container's log directory.
pub fn attempts(dir: &Path) -> Vec<u32> {
    let mut found: Vec<u32> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let number = name
                .strip_suffix(".log.1")
                .or_else(|| name.strip_suffix(".log"))?;
            number.parse().ok()
        })
        .collect();
    found.sort_unstable();
    found.dedup();
    found
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogsError + '_ {
    move |source| LogsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The attempt whose log to read in a container's log directory: the latest one there (while
/// a restarted container waits, the one that ended), or for `previous` the one before the
/// `restart_count` the pod's status reports (or before the latest, if the status lags).
pub fn attempt(
    dir: &Path,
    previous: bool,
    restart_count: u32,
    pod: &str,
    container: &str,
) -> Result<u32, LogsError> {
    let attempts = attempts(dir);
    let latest = attempts.last().copied();
    if !previous {
        return latest.ok_or_else(|| LogsError::NotStarted {
            pod: pod.to_string(),
            container: container.to_string(),
        });
    }
    restart_count
        .max(latest.unwrap_or(0))
        .checked_sub(1)
        .filter(|a| attempts.contains(a))
        .ok_or_else(|| LogsError::NoPrevious {
            pod: pod.to_string(),
            container: container.to_string(),
        })
}

/// Reads on in the current file as it grows, until the container's next attempt begins, its pod
/// directory goes, or its process ended and what it wrote last was read.
struct Follow {
    file: tokio::fs::File,
    inode: u64,
    path: PathBuf,
    next_attempt: PathBuf,
    pod_dir: PathBuf,
    exited: Pin<Box<dyn Future<Output = ()> + Send>>,
    exited_at: Option<Instant>,
}

impl Follow {
    /// The next bytes written; `None` when the container is done.
    async fn next(&mut self, buffer: &mut [u8]) -> Option<usize> {
        loop {
            let n = self.file.read(buffer).await.ok()?;
            if n > 0 {
                return Some(n);
            }
            // At the end of what is written: rotated to `.log.1` and started afresh?
            if let Ok(meta) = std::fs::metadata(&self.path)
                && meta.ino() != self.inode
            {
                self.file = tokio::fs::File::open(&self.path).await.ok()?;
                self.inode = meta.ino();
                continue;
            }
            if self.next_attempt.exists() || !self.pod_dir.exists() {
                return None;
            }
            if self.exited_at.is_some_and(|at| at.elapsed() >= EXIT_GRACE) {
                return None;
            }
            tokio::select! {
                () = &mut self.exited, if self.exited_at.is_none() => {
                    self.exited_at = Some(Instant::now());
                }
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }
}

/// A container's log as it is read: what is there, then what follows.
pub struct LogStream {
    first: Option<Vec<u8>>,
    follow: Option<Follow>,
    parser: Parser,
    options: LogOptions,
    /// Bytes still allowed by `limitBytes`.
    remaining: Option<usize>,
}

impl LogStream {
    /// Opens the log of `attempt` in the container's log directory `dir`. `exited` resolves when
    /// that attempt's process has ended.
    pub async fn open(
        dir: &Path,
        attempt: u32,
        options: LogOptions,
        exited: impl Future<Output = ()> + Send + 'static,
    ) -> Result<LogStream, LogsError> {
        let path = dir.join(format!("{attempt}.log"));
        let mut parser = Parser::default();
        let mut lines = Vec::new();
        let rotated = dir.join(format!("{attempt}.log.1"));
        if let Ok(bytes) = tokio::fs::read(&rotated).await {
            lines.extend(parser.feed(&bytes));
        }
        let mut file = tokio::fs::File::open(&path).await.map_err(io(&path))?;
        let inode = file.metadata().await.map_err(io(&path))?.ino();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).await.map_err(io(&path))?;
        lines.extend(parser.feed(&bytes));
        let mut first = Vec::new();
        for line in select(lines, options.since, options.tail) {
            line.render(options.timestamps, &mut first);
        }
        let follow = (options.follow && !options.previous).then(|| Follow {
            file,
            inode,
            path,
            next_attempt: dir.join(format!("{}.log", attempt + 1)),
            pod_dir: dir.parent().map(Path::to_path_buf).unwrap_or_default(),
            exited: Box::pin(exited),
            exited_at: None,
        });
        Ok(LogStream {
            first: Some(first),
            follow,
            parser,
            remaining: options.limit,
            options,
        })
    }

    /// The next piece of output; `None` at the end.
    pub async fn next(&mut self) -> Option<Vec<u8>> {
        if self.remaining == Some(0) {
            return None;
        }
        let mut out = self.first.take().unwrap_or_default();
        let mut buffer = vec![0u8; 64 << 10];
        while out.is_empty() {
            let n = self.follow.as_mut()?.next(&mut buffer).await?;
            for line in self.parser.feed(&buffer[..n]) {
                if self.options.since.is_none_or(|s| line.time >= s) {
                    line.render(self.options.timestamps, &mut out);
                }
            }
        }
        if let Some(remaining) = self.remaining.as_mut() {
            out.truncate(*remaining);
            *remaining -= out.len();
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests;
