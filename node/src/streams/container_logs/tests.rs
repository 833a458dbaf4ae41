use std::io::Write as _;

use super::*;

const T0: &str = "2025-01-01T00:00:00.000000001Z";
const T1: &str = "2025-01-01T00:00:01.000000000Z";
const T2: &str = "2025-01-01T00:00:02.500000000Z";

fn entry(stamp: &str, stream: &str, tag: &str, text: &str) -> String {
    format!("{stamp} {stream} {tag} {text}\n")
}

fn text(lines: &[Line]) -> String {
    lines
        .iter()
        .map(|l| String::from_utf8_lossy(&l.text))
        .collect()
}

fn at(stamp: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(stamp)
        .expect("stamp")
        .with_timezone(&Utc)
}

#[test]
fn partial_entries_join_per_stream_and_cut_entries_wait() {
    let mut parser = Parser::default();
    let input = [
        entry(T0, "stdout", "P", "hel"),
        entry(T1, "stderr", "F", "oops"),
        entry(T1, "stdout", "P", "lo "),
        entry(T2, "stdout", "F", "world"),
    ]
    .concat();
    let (head, tail) = input.split_at(input.len() - 4);
    let lines = parser.feed(head.as_bytes());
    assert_eq!(text(&lines), "oops\n");
    let lines = parser.feed(tail.as_bytes());
    assert_eq!(text(&lines), "hello world\n");
    assert_eq!(
        lines[0].stamp, T0,
        "a joined line keeps its first entry's time"
    );
    assert!(parser.feed(b"garbage without fields\n").is_empty());
}

#[test]
fn since_and_tail_select_lines() {
    let mut parser = Parser::default();
    let lines = parser.feed(
        [
            entry(T0, "stdout", "F", "a"),
            entry(T1, "stdout", "F", "b"),
            entry(T2, "stdout", "F", "c"),
        ]
        .concat()
        .as_bytes(),
    );
    assert_eq!(text(&select(lines.clone(), None, Some(2))), "b\nc\n");
    assert_eq!(text(&select(lines.clone(), Some(at(T1)), None)), "b\nc\n");
    assert_eq!(text(&select(lines.clone(), Some(at(T1)), Some(1))), "c\n");
    assert_eq!(text(&select(lines, None, Some(0))), "");
}

#[test]
fn options_are_checked() {
    let now = at(T2);
    let query = |f: fn(&mut LogQuery)| {
        let mut q = LogQuery::default();
        f(&mut q);
        LogOptions::parse(&q, now)
    };
    let options = query(|q| {
        q.follow = Some("true".into());
        q.tail_lines = Some("3".into());
        q.since_seconds = Some("2".into());
    })
    .expect("valid");
    assert!(options.follow && !options.previous);
    assert_eq!(options.tail, Some(3));
    assert_eq!(options.since, Some(at("2025-01-01T00:00:00.5Z")));
    assert_eq!(
        query(|q| q.tail_lines = Some("-1".into()))
            .expect("valid")
            .tail,
        None
    );
    assert!(query(|q| q.tail_lines = Some("x".into())).is_err());
    assert!(query(|q| q.limit_bytes = Some("0".into())).is_err());
    assert!(
        query(|q| {
            q.since_seconds = Some("1".into());
            q.since_time = Some(T0.into());
        })
        .is_err()
    );
    assert_eq!(
        query(|q| q.since_time = Some(T1.into()))
            .expect("valid")
            .since,
        Some(at(T1))
    );
    // Further back than chrono's range (a panic once): every line.
    assert_eq!(
        query(|q| q.since_seconds = Some(i64::MAX.to_string()))
            .expect("valid")
            .since,
        Some(DateTime::<Utc>::MIN_UTC)
    );
}

/// A pod log directory with the given files of container `main`.
fn pod_dir(files: &[(&str, String)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("main")).expect("mkdir");
    for (name, content) in files {
        std::fs::write(dir.path().join("main").join(name), content).expect("write");
    }
    dir
}

async fn read_all(dir: &Path, options: LogOptions) -> Result<String, LogsError> {
    let dir = dir.join("main");
    let attempt = attempt(&dir, options.previous, 0, "p", "main")?;
    let mut stream = LogStream::open(&dir, attempt, options, std::future::pending()).await?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend(chunk);
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn files_read_with_rotation_timestamps_limits_and_previous() {
    let dir = pod_dir(&[
        ("0.log", entry(T0, "stdout", "F", "first run")),
        ("1.log.1", entry(T0, "stdout", "F", "one")),
        (
            "1.log",
            [
                entry(T1, "stdout", "F", "two"),
                entry(T2, "stderr", "F", "three"),
            ]
            .concat(),
        ),
    ]);
    let all = LogOptions::default();
    assert_eq!(
        read_all(dir.path(), all.clone()).await.expect("read"),
        "one\ntwo\nthree\n"
    );
    let tail = LogOptions {
        tail: Some(1),
        timestamps: true,
        ..all.clone()
    };
    assert_eq!(
        read_all(dir.path(), tail).await.expect("read"),
        format!("{T2} three\n")
    );
    let limited = LogOptions {
        limit: Some(6),
        ..all.clone()
    };
    assert_eq!(
        read_all(dir.path(), limited).await.expect("read"),
        "one\ntw"
    );
    let previous = LogOptions {
        previous: true,
        follow: true,
        ..all.clone()
    };
    assert_eq!(
        read_all(dir.path(), previous).await.expect("read"),
        "first run\n"
    );

    let only_first = pod_dir(&[("0.log", entry(T0, "stdout", "F", "x"))]);
    let previous = LogOptions {
        previous: true,
        ..all.clone()
    };
    assert!(matches!(
        read_all(only_first.path(), previous).await,
        Err(LogsError::NoPrevious { .. })
    ));
    // A restarted container waiting to start again: its previous log is the one that ended.
    let waiting = only_first.path().join("main");
    assert_eq!(
        attempt(&waiting, true, 1, "p", "main").expect("previous"),
        0
    );
    assert_eq!(attempt(&waiting, false, 1, "p", "main").expect("latest"), 0);
    let empty = pod_dir(&[]);
    assert!(matches!(
        read_all(empty.path(), all).await,
        Err(LogsError::NotStarted { .. })
    ));
}

fn append(path: &Path, text: &str) {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open");
    file.write_all(text.as_bytes()).expect("append");
}

#[tokio::test]
async fn following_reads_appended_lines_until_the_next_attempt() {
    let dir = pod_dir(&[("0.log", entry(T0, "stdout", "F", "a"))]);
    let log = dir.path().join("main/0.log");
    let options = LogOptions {
        follow: true,
        ..LogOptions::default()
    };
    let mut stream = LogStream::open(&dir.path().join("main"), 0, options, std::future::pending())
        .await
        .expect("open");
    assert_eq!(stream.next().await, Some(b"a\n".to_vec()));
    append(&log, &entry(T1, "stdout", "P", "b"));
    append(&log, &entry(T1, "stdout", "F", "c"));
    assert_eq!(stream.next().await, Some(b"bc\n".to_vec()));
    // Rotation: the file is renamed away and a new one started.
    std::fs::rename(&log, dir.path().join("main/0.log.1")).expect("rotate");
    std::fs::write(&log, entry(T2, "stdout", "F", "d")).expect("new file");
    assert_eq!(stream.next().await, Some(b"d\n".to_vec()));
    std::fs::write(dir.path().join("main/1.log"), "").expect("next attempt");
    assert_eq!(stream.next().await, None);
}

#[tokio::test]
async fn following_ends_after_the_process_exits() {
    let dir = pod_dir(&[("0.log", entry(T0, "stdout", "F", "a"))]);
    let options = LogOptions {
        follow: true,
        ..LogOptions::default()
    };
    let (exit, exited) = tokio::sync::oneshot::channel::<()>();
    let exited = async move {
        let _ = exited.await;
    };
    let mut stream = LogStream::open(&dir.path().join("main"), 0, options, exited)
        .await
        .expect("open");
    assert_eq!(stream.next().await, Some(b"a\n".to_vec()));
    let _ = exit.send(());
    let started = Instant::now();
    assert_eq!(stream.next().await, None);
    assert!(started.elapsed() >= EXIT_GRACE);
}
