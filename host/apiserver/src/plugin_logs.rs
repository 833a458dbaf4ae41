//! Plugins' recent log lines, kept in memory per Plugin: the guest's own and the host's about it (started, swapped, trapped, rolled back), each labelled with the version that wrote it, for `plugins/NAME/log`.
//!
//! Writers never wait: a line is escaped and cut before the buffer's lock is taken, the lock is
//! held only to push it and drop the oldest past the bounds, and followers are woken through a
//! `watch` channel that holds one number. A follower that falls behind loses the lines pushed out
//! and is told how many.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, SecondsFormat, Utc};
use tokio::sync::watch;
use wasmkube_model::printable::printable;

/// Lines kept per plugin, at most.
pub const MAX_LINES: usize = 1000;
/// Bytes kept per plugin, at most (messages and labels, with a fixed cost per line).
pub const MAX_BYTES: usize = 1 << 20;
/// The longest message kept, in bytes; the rest is cut with `…`.
pub const LINE_BYTES: usize = 4096;
/// What a line costs besides its message: its time, kind, label and bookkeeping.
const LINE_OVERHEAD: usize = 64;
/// Hex digits of a module digest in a line's label.
const DIGEST_CHARS: usize = 12;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a version is to its plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The version in force.
    Active,
    /// A candidate run beside it whose results are only compared (a scheduling policy in a
    /// SchedulerProfile's `spec.shadow`).
    Shadow,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Active => "active",
            Role::Shadow => "shadow",
        })
    }
}

/// Which version wrote a line: its role and the short form of its module digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub role: Role,
    /// The first 12 hex digits of the module's sha256 (`native` for a policy linked in).
    pub digest: String,
}

impl Version {
    /// The version of `digest` (with or without `sha256:`) in `role`.
    pub fn new(role: Role, digest: &str) -> Version {
        let digest = digest.strip_prefix("sha256:").unwrap_or(digest);
        Version {
            role,
            digest: printable(&digest.chars().take(DIGEST_CHARS).collect::<String>(), 64),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.role, self.digest)
    }
}

/// What a line is: a guest's line at its level, or the host's about the plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    /// The module began to run.
    Started,
    /// The module took over from another one, keeping its queue.
    Swapped,
    /// An instance trapped, ran past its deadline or its memory, and was dropped.
    Trapped,
    /// The module kept trapping after a swap; the one before it is back.
    RolledBack,
    /// The module kept trapping after a swap, and the one before it could not run again.
    RollbackFailed,
}

impl fmt::Display for Kind {
    /// Guest levels in capitals, host lines as their Event reasons: a guest cannot write a host
    /// line, since its text only ever follows the kind.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Trace => "TRACE",
            Kind::Debug => "DEBUG",
            Kind::Info => "INFO",
            Kind::Warn => "WARN",
            Kind::Error => "ERROR",
            Kind::Started => "Started",
            Kind::Swapped => "Swapped",
            Kind::Trapped => "Trapped",
            Kind::RolledBack => "RolledBack",
            Kind::RollbackFailed => "RollbackFailed",
        })
    }
}

/// One line of a plugin's log.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub time: DateTime<Utc>,
    pub kind: Kind,
    pub version: Version,
    /// Escaped (no control characters) and at most [`LINE_BYTES`].
    pub message: String,
}

impl Line {
    /// `[TIME ]ROLE@DIGEST KIND MESSAGE\n`, the time in RFC 3339 with nanoseconds.
    pub fn render(&self, timestamps: bool) -> String {
        let time = match timestamps {
            true => format!("{} ", self.time.to_rfc3339_opts(SecondsFormat::Nanos, true)),
            false => String::new(),
        };
        format!("{time}{} {} {}\n", self.version, self.kind, self.message)
    }

    fn cost(&self) -> usize {
        self.message.len() + self.version.digest.len() + LINE_OVERHEAD
    }
}

/// The lines kept, numbered from the first ever written.
#[derive(Default)]
struct Ring {
    lines: VecDeque<Arc<Line>>,
    bytes: usize,
    /// The number the next line gets; the first kept is `next - lines.len()`.
    next: u64,
    /// The plugin is gone: no more lines.
    closed: bool,
}

impl Ring {
    fn first(&self) -> u64 {
        self.next - self.lines.len() as u64
    }
}

/// What a reader gets from a position on.
#[derive(Debug, Default)]
pub struct Batch {
    /// Lines it missed: pushed out before it read them.
    pub missed: u64,
    pub lines: Vec<Arc<Line>>,
}

/// One plugin's recent lines.
pub struct PluginLog {
    ring: Mutex<Ring>,
    /// The number of the next line, for followers to wait on.
    written: watch::Sender<u64>,
}

impl Default for PluginLog {
    fn default() -> Self {
        PluginLog {
            ring: Mutex::default(),
            written: watch::Sender::new(0),
        }
    }
}

impl PluginLog {
    /// Adds a line by `version`, dropping the oldest past [`MAX_LINES`] or [`MAX_BYTES`]. Never
    /// waits; does nothing once the plugin is gone.
    pub fn write(&self, version: &Version, kind: Kind, message: &str) {
        let line = Arc::new(Line {
            time: Utc::now(),
            kind,
            version: version.clone(),
            message: printable(message, LINE_BYTES),
        });
        let next = {
            let mut ring = lock(&self.ring);
            if ring.closed {
                return;
            }
            ring.bytes += line.cost();
            ring.lines.push_back(line);
            ring.next += 1;
            while ring.lines.len() > MAX_LINES || ring.bytes > MAX_BYTES {
                let Some(old) = ring.lines.pop_front() else {
                    break;
                };
                ring.bytes -= old.cost();
            }
            ring.next
        };
        self.written.send_replace(next);
    }

    /// The last `tail` lines (all kept when `None`), and the position after them.
    pub fn tail(&self, tail: Option<usize>) -> (Vec<Arc<Line>>, u64) {
        let ring = lock(&self.ring);
        let skip = tail.map_or(0, |n| ring.lines.len().saturating_sub(n));
        (ring.lines.iter().skip(skip).cloned().collect(), ring.next)
    }

    /// The lines from position `from` on, the position after them, and whether the plugin is
    /// gone.
    fn since(&self, from: u64) -> (Batch, u64, bool) {
        let ring = lock(&self.ring);
        let first = ring.first();
        let start = from.max(first);
        let skip = usize::try_from(start - first).unwrap_or(usize::MAX);
        let batch = Batch {
            missed: start - from.min(start),
            lines: ring.lines.iter().skip(skip).cloned().collect(),
        };
        (batch, ring.next, ring.closed)
    }

    /// A reader of the lines written from position `from` on (see [`PluginLog::tail`]).
    pub fn follow(self: &Arc<Self>, from: u64) -> Follower {
        Follower {
            log: self.clone(),
            written: self.written.subscribe(),
            at: from,
        }
    }

    /// No more lines; followers end once they have read what is there.
    fn close(&self) {
        lock(&self.ring).closed = true;
        self.written.send_modify(|_| {});
    }
}

/// Reads a plugin's lines as they are written.
pub struct Follower {
    log: Arc<PluginLog>,
    written: watch::Receiver<u64>,
    at: u64,
}

impl Follower {
    /// The lines written since the last batch, waiting until there is one; `None` once the
    /// plugin is gone and its last lines were read.
    pub async fn next(&mut self) -> Option<Batch> {
        loop {
            // Marked seen before reading: a line written after the read wakes the wait below.
            self.written.borrow_and_update();
            let (batch, next, closed) = self.log.since(self.at);
            self.at = next;
            if batch.missed > 0 || !batch.lines.is_empty() {
                return Some(batch);
            }
            if closed {
                return None;
            }
            // The sender lives in the log this follower holds: it cannot go first.
            self.written.changed().await.ok()?;
        }
    }
}

/// Where a plugin's host writes its lines: its log and the version it runs.
#[derive(Clone)]
pub struct Writer {
    log: Arc<PluginLog>,
    version: Version,
}

impl Writer {
    pub fn write(&self, kind: Kind, message: &str) {
        self.log.write(&self.version, kind, message);
    }

    pub fn version(&self) -> &Version {
        &self.version
    }
}

/// Every plugin's log, by Plugin name.
#[derive(Default)]
pub struct PluginLogs {
    logs: Mutex<HashMap<String, Arc<PluginLog>>>,
}

impl PluginLogs {
    /// The log of the Plugin `plugin`, made when it has none.
    pub fn open(&self, plugin: &str) -> Arc<PluginLog> {
        lock(&self.logs)
            .entry(plugin.to_string())
            .or_default()
            .clone()
    }

    /// The log of the Plugin `plugin`, if something was written or followed there.
    pub fn get(&self, plugin: &str) -> Option<Arc<PluginLog>> {
        lock(&self.logs).get(plugin).cloned()
    }

    /// A writer to the log of the Plugin `plugin` for `version`.
    pub fn writer(&self, plugin: &str, version: Version) -> Writer {
        Writer {
            log: self.open(plugin),
            version,
        }
    }

    /// Drops the log of a Plugin that is gone; its followers end, its writers write nowhere.
    pub fn remove(&self, plugin: &str) {
        let removed = lock(&self.logs).remove(plugin);
        if let Some(log) = removed {
            log.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn active() -> Version {
        Version::new(Role::Active, "sha256:0123456789abcdef0123")
    }

    fn messages(lines: &[Arc<Line>]) -> Vec<&str> {
        lines.iter().map(|l| l.message.as_str()).collect()
    }

    #[test]
    fn a_line_is_labelled_with_its_version_and_kind() {
        let log = PluginLog::default();
        log.write(&active(), Kind::Info, "reconciled default/a");
        log.write(&active(), Kind::Trapped, "wasm trap: unreachable");
        let (lines, next) = log.tail(None);
        assert_eq!(next, 2);
        assert_eq!(
            lines[0].render(false),
            "active@0123456789ab INFO reconciled default/a\n"
        );
        assert_eq!(
            lines[1].render(false),
            "active@0123456789ab Trapped wasm trap: unreachable\n"
        );
        let stamped = lines[0].render(true);
        let (time, rest) = stamped.split_once(' ').expect("a time first");
        assert!(DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
        assert_eq!(rest, "active@0123456789ab INFO reconciled default/a\n");
        let shadow = Version::new(Role::Shadow, "fedcba9876543210");
        assert_eq!(shadow.to_string(), "shadow@fedcba987654");
    }

    #[test]
    fn messages_are_escaped_and_cut() {
        let log = PluginLog::default();
        log.write(&active(), Kind::Warn, "one\nactive@x Started forged");
        log.write(&active(), Kind::Info, &"x".repeat(10 * LINE_BYTES));
        let (lines, _) = log.tail(None);
        assert_eq!(lines[0].message, "one\\nactive@x Started forged");
        assert!(lines[1].message.len() <= LINE_BYTES);
        assert!(lines[1].message.ends_with('…'));
    }

    #[test]
    fn the_oldest_lines_go_past_the_line_and_byte_bounds() {
        let log = PluginLog::default();
        for i in 0..MAX_LINES + 10 {
            log.write(&active(), Kind::Info, &i.to_string());
        }
        let (lines, next) = log.tail(None);
        assert_eq!(lines.len(), MAX_LINES);
        assert_eq!(lines[0].message, "10");
        assert_eq!(next, (MAX_LINES + 10) as u64);

        let log = PluginLog::default();
        let big = "y".repeat(LINE_BYTES);
        for _ in 0..MAX_LINES {
            log.write(&active(), Kind::Info, &big);
        }
        let (lines, _) = log.tail(None);
        let bytes: usize = lines.iter().map(|l| l.cost()).sum();
        assert!(bytes <= MAX_BYTES, "{bytes}");
        assert_eq!(lines.len(), MAX_BYTES / (LINE_BYTES + 12 + LINE_OVERHEAD));
    }

    #[test]
    fn tail_takes_the_last_lines() {
        let log = PluginLog::default();
        for i in 0..5 {
            log.write(&active(), Kind::Info, &i.to_string());
        }
        assert_eq!(messages(&log.tail(Some(2)).0), ["3", "4"]);
        assert_eq!(messages(&log.tail(Some(0)).0), Vec::<&str>::new());
        assert_eq!(log.tail(Some(100)).0.len(), 5);
    }

    #[tokio::test]
    async fn a_follower_sees_new_lines_and_ends_when_the_plugin_goes() {
        let logs = PluginLogs::default();
        let writer = logs.writer("p", active());
        writer.write(Kind::Info, "before");
        let log = logs.get("p").expect("made by the writer");
        let (_, at) = log.tail(Some(0));
        let mut follower = log.follow(at);
        let waiting = tokio::spawn(async move {
            let batch = follower.next().await.expect("a line");
            (follower, batch)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        writer.write(Kind::Info, "after");
        let (mut follower, batch) = waiting.await.expect("task");
        assert_eq!(messages(&batch.lines), ["after"]);
        assert_eq!(batch.missed, 0);

        logs.remove("p");
        assert!(follower.next().await.is_none());
        // Late writes of an instance still at work go nowhere.
        writer.write(Kind::Info, "late");
        assert!(logs.get("p").is_none());
    }

    #[tokio::test]
    async fn a_slow_follower_does_not_hold_up_writers_and_learns_what_it_missed() {
        let logs = PluginLogs::default();
        let writer = logs.writer("p", active());
        let mut follower = logs.open("p").follow(0);
        // Nobody reads while the writer goes far past the bounds: it never waits.
        let written = tokio::time::timeout(Duration::from_secs(5), async {
            for i in 0..3 * MAX_LINES {
                writer.write(Kind::Info, &i.to_string());
            }
        })
        .await;
        assert!(written.is_ok());
        let batch = follower.next().await.expect("lines");
        assert_eq!(batch.missed, 2 * MAX_LINES as u64);
        assert_eq!(batch.lines.len(), MAX_LINES);
        assert_eq!(batch.lines[0].message, (2 * MAX_LINES).to_string());
    }
}
