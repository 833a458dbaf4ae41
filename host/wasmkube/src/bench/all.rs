//! `wasmkube bench all`: every benchmark in turn as a child process, then one table of each figure against its target.

use std::fmt::Write as _;
use std::process::{ExitStatus, Stdio};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

#[derive(clap::Args)]
pub struct AllArgs {
    /// Run only these benchmarks (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Bench>,
    /// Run every benchmark but these (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', conflicts_with = "only")]
    skip: Vec<Bench>,
    /// Shorter settings (fewer objects, nodes, pods and seconds) to check a run end to end; its
    /// figures are not taken at the targets' settings and are not to be recorded.
    #[arg(long)]
    quick: bool,
}

#[derive(Clone, Copy, PartialEq, Debug, clap::ValueEnum)]
enum Bench {
    Api,
    Controllers,
    Scheduler,
    Node,
    Memory,
    Dns,
    Services,
}

/// One `wasmkube bench …` command line and the rows taken from its JSON last line.
struct Run {
    bench: Bench,
    /// The documented settings.
    args: &'static [&'static str],
    /// The settings of `--quick`.
    quick: &'static [&'static str],
    rows: &'static [Row],
}

/// One figure of the table.
struct Row {
    name: &'static str,
    figure: Figure,
    target: Target,
}

/// How a figure is read from a bench's JSON: each `&str` is a JSON pointer.
#[derive(Clone, Copy)]
enum Figure {
    Field(&'static str),
    /// The first field divided by the second.
    Ratio(&'static str, &'static str),
    /// The first field less the second.
    Difference(&'static str, &'static str),
    /// The largest number of an array.
    Max(&'static str),
}

/// The target of DESIGN.md §3 a figure is held to, if any.
#[derive(Clone, Copy)]
enum Target {
    AtMost(f64),
    AtLeast(f64),
    /// Shown for information: DESIGN.md sets no target for it.
    None,
}

/// Every run in order, with its rows: the targets of DESIGN.md §3.
const RUNS: &[Run] = &[
    Run {
        bench: Bench::Api,
        args: &["api", "--store", "embedded"],
        quick: &[
            "api",
            "--store",
            "embedded",
            "--objects",
            "500",
            "--duration-secs",
            "1",
        ],
        rows: &[
            Row {
                name: "API create @ 1000/s, embedded store: p99 µs",
                figure: Figure::Field("/api/embedded/create_at_1000_per_s/p99_us"),
                target: Target::AtMost(5000.0),
            },
            Row {
                name: "API create @ 1000/s: RBAC on/off p99",
                figure: Figure::Ratio(
                    "/api/embedded/create_at_1000_per_s_bound_user/p99_us",
                    "/api/embedded/create_at_1000_per_s/p99_us",
                ),
                target: Target::AtMost(1.1),
            },
        ],
    },
    Run {
        bench: Bench::Controllers,
        args: &["controllers", "--replicas", "1000", "--nodes", "100"],
        quick: &["controllers", "--replicas", "100", "--nodes", "10"],
        rows: &[
            Row {
                name: "controllers: Deployment scaled up, s",
                figure: Figure::Field("/scale_up_s"),
                target: Target::None,
            },
            Row {
                name: "controllers: hot swap in force, ms",
                figure: Figure::Field("/swap_in_force_ms"),
                target: Target::None,
            },
        ],
    },
    Run {
        bench: Bench::Scheduler,
        args: &[
            "scheduler",
            "--nodes",
            "5000",
            "--pods",
            "10000",
            "--policy",
            "both",
        ],
        quick: &[
            "scheduler",
            "--nodes",
            "200",
            "--pods",
            "1000",
            "--policy",
            "both",
        ],
        rows: &[
            Row {
                name: "scheduler plain, 5000 nodes, Wasm: pods/s",
                figure: Figure::Field("/pods_per_sec"),
                target: Target::AtLeast(2000.0),
            },
            Row {
                name: "scheduler plain: Wasm/native time",
                figure: Figure::Field("/wasm_native_ratio"),
                target: Target::AtMost(1.15),
            },
            Row {
                name: "scheduler plain: Wasm/native latency p50",
                figure: Figure::Ratio("/p50_ms", "/native_p50_ms"),
                target: Target::AtMost(1.2),
            },
            Row {
                name: "scheduler plain: Wasm/native latency p99",
                figure: Figure::Ratio("/p99_ms", "/native_p99_ms"),
                target: Target::AtMost(1.3),
            },
        ],
    },
    Run {
        bench: Bench::Scheduler,
        args: &[
            "scheduler",
            "--nodes",
            "5000",
            "--pods",
            "10000",
            "--policy",
            "wasm",
            "--workload",
            "spread",
        ],
        quick: &[
            "scheduler",
            "--nodes",
            "200",
            "--pods",
            "1000",
            "--policy",
            "wasm",
            "--workload",
            "spread",
        ],
        rows: &[Row {
            name: "scheduler spread, 5000 nodes, Wasm: pods/s",
            figure: Figure::Field("/pods_per_sec"),
            target: Target::AtLeast(1200.0),
        }],
    },
    Run {
        bench: Bench::Scheduler,
        args: &[
            "scheduler",
            "--nodes",
            "1000",
            "--pods",
            "10000",
            "--policy",
            "wasm",
            "--rate",
            "1000",
            "--swap",
        ],
        quick: &[
            "scheduler",
            "--nodes",
            "200",
            "--pods",
            "2000",
            "--policy",
            "wasm",
            "--rate",
            "1000",
            "--swap",
        ],
        rows: &[
            Row {
                name: "policy swap @ 1000 pods/s: in force, ms",
                figure: Figure::Max("/swap_in_force_ms"),
                target: Target::AtMost(100.0),
            },
            Row {
                name: "policy swap: pods not bound",
                figure: Figure::Difference("/pods", "/bound"),
                target: Target::AtMost(0.0),
            },
            Row {
                name: "policy swap: bindings refused",
                figure: Figure::Field("/errors"),
                target: Target::AtMost(0.0),
            },
        ],
    },
    Run {
        bench: Bench::Node,
        args: &["node"],
        quick: &["node", "--pods", "10", "--idle-seconds", "2"],
        rows: &[
            Row {
                name: "pod start: machine CPU per pod, ms",
                figure: Figure::Field("/cpu_ms_per_pod"),
                target: Target::AtMost(40.0),
            },
            Row {
                name: "pod start, 100 at once: p50 ms",
                figure: Figure::Field("/at_once_p50_ms"),
                target: Target::AtMost(1500.0),
            },
            Row {
                name: "pod start, 100 at once: p99 ms",
                figure: Figure::Field("/at_once_p99_ms"),
                target: Target::AtMost(2500.0),
            },
            Row {
                name: "pod start, one by one: p50 ms",
                figure: Figure::Field("/one_by_one_p50_ms"),
                target: Target::AtMost(80.0),
            },
            Row {
                name: "node agent RSS, 100 pods: MB",
                figure: Figure::Field("/idle_rss_mb"),
                target: Target::AtMost(30.0),
            },
        ],
    },
    Run {
        bench: Bench::Memory,
        args: &["memory"],
        quick: &["memory", "--pods", "10", "--idle-seconds", "5"],
        rows: &[
            Row {
                name: "wasmkube up RSS, idle: MB",
                figure: Figure::Field("/rss_idle_mb"),
                target: Target::AtMost(64.0),
            },
            Row {
                name: "wasmkube up RSS, 100 pods: MB",
                figure: Figure::Field("/rss_100_pods_mb"),
                target: Target::AtMost(100.0),
            },
        ],
    },
    Run {
        bench: Bench::Dns,
        args: &["dns"],
        quick: &["dns", "--services", "100", "--duration-secs", "1"],
        rows: &[
            Row {
                name: "DNS: queries/s",
                figure: Figure::Field("/queries_per_second"),
                target: Target::None,
            },
            Row {
                name: "DNS: p99 ms",
                figure: Figure::Field("/p99_ms"),
                target: Target::None,
            },
        ],
    },
    Run {
        bench: Bench::Services,
        args: &["services"],
        quick: &["services", "--services", "100", "--changes", "10"],
        rows: &[Row {
            name: "Service change in force, 1000 × 10: p99 ms",
            figure: Figure::Field("/change_p99_ms"),
            target: Target::AtMost(1000.0),
        }],
    },
];

impl Figure {
    fn read(self, json: &Value) -> Option<f64> {
        let number = |pointer: &str| json.pointer(pointer).and_then(Value::as_f64);
        match self {
            Figure::Field(field) => number(field),
            Figure::Ratio(over, under) => {
                Some(number(over)? / number(under)?).filter(|ratio| ratio.is_finite())
            }
            Figure::Difference(from, less) => Some(number(from)? - number(less)?),
            Figure::Max(field) => json
                .pointer(field)?
                .as_array()?
                .iter()
                .map(Value::as_f64)
                .collect::<Option<Vec<f64>>>()?
                .into_iter()
                .reduce(f64::max),
        }
    }
}

impl Target {
    fn met(self, measured: f64) -> Option<bool> {
        match self {
            Target::AtMost(limit) => Some(measured <= limit),
            Target::AtLeast(limit) => Some(measured >= limit),
            Target::None => None,
        }
    }

    fn json(self) -> Value {
        match self {
            Target::AtMost(limit) => json!(format!("<= {limit}")),
            Target::AtLeast(limit) => json!(format!(">= {limit}")),
            Target::None => Value::Null,
        }
    }

    fn text(self) -> String {
        match self {
            Target::AtMost(limit) => format!("≤ {limit}"),
            Target::AtLeast(limit) => format!("≥ {limit}"),
            Target::None => "—".to_owned(),
        }
    }
}

/// One line of the result: a row's figure, or the error that kept its bench from giving one.
struct Outcome {
    row: &'static Row,
    measured: Result<f64, String>,
}

impl Outcome {
    /// Met is `None` for a row without a target; a row not measured has missed its target.
    fn met(&self) -> Option<bool> {
        match (&self.measured, self.row.target) {
            (_, Target::None) => None,
            (Ok(measured), target) => target.met(*measured),
            (Err(_), _) => Some(false),
        }
    }

    fn json(&self) -> Value {
        let mut row = json!({
            "name": self.row.name,
            "measured": self.measured.as_ref().ok(),
            "target": self.row.target.json(),
            "met": self.met(),
        });
        if let Err(error) = &self.measured {
            row["error"] = json!(error);
        }
        row
    }
}

/// The outcomes of a run's rows from its JSON last line, or the run's error for each row.
fn outcomes(run: &'static Run, result: &Result<Value, String>) -> Vec<Outcome> {
    run.rows
        .iter()
        .map(|row| Outcome {
            row,
            measured: match result {
                Ok(json) => row
                    .figure
                    .read(json)
                    .ok_or_else(|| "not in the bench's JSON line".to_owned()),
                Err(error) => Err(error.clone()),
            },
        })
        .collect()
}

/// What a child printed on one stream that `bench all` keeps.
#[derive(Default)]
struct Seen {
    /// The last line that is not blank.
    last: Option<String>,
    /// The last line that starts with `Error: `, as `main` reports a failure.
    error: Option<String>,
}

/// Passes a child's lines through to stderr, keeping what [`Seen`] names.
async fn pass_through(stream: impl AsyncRead + Unpin) -> std::io::Result<Seen> {
    let mut lines = BufReader::new(stream).lines();
    let mut seen = Seen::default();
    while let Some(line) = lines.next_line().await? {
        eprintln!("{line}");
        if line.starts_with("Error: ") {
            seen.error = Some(line.clone());
        }
        if !line.trim().is_empty() {
            seen.last = Some(line);
        }
    }
    Ok(seen)
}

/// Runs `wasmkube bench <args>` and returns its JSON last line.
async fn run_child(args: &[&str]) -> anyhow::Result<Value> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("bench")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the bench")?;
    let stdout = child.stdout.take().context("the bench's stdout")?;
    let stderr = child.stderr.take().context("the bench's stderr")?;
    let (out, err, status) = tokio::join!(pass_through(stdout), pass_through(stderr), child.wait());
    let status: ExitStatus = status?;
    if !status.success() {
        let err = err?;
        bail!("{status}: {}", err.error.or(err.last).unwrap_or_default());
    }
    let last = out?.last.context("it printed nothing")?;
    serde_json::from_str(&last).context("its last line is not JSON")
}

/// The checked-out commit of the working directory (`-dirty` if changed), when it is a git one.
async fn commit() -> Option<String> {
    let output = Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=7"])
        .stderr(Stdio::null())
        .output()
        .await
        .ok()?;
    let commit = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && !commit.is_empty()).then_some(commit)
}

/// Formats a figure with the precision its size calls for.
fn number(value: f64) -> String {
    match value.abs() {
        v if v >= 100.0 || value.fract() == 0.0 => format!("{value:.0}"),
        v if v >= 10.0 => format!("{value:.1}"),
        _ => format!("{value:.2}"),
    }
}

/// The aligned table: figure, measured, target, met.
fn table(outcomes: &[Outcome]) -> String {
    let width = outcomes
        .iter()
        .map(|o| o.row.name.chars().count())
        .max()
        .unwrap_or(0)
        .max("figure".len());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<width$}  {:>10}  {:>8}  met",
        "figure", "measured", "target"
    );
    for outcome in outcomes {
        let measured = match &outcome.measured {
            Ok(value) => number(*value),
            Err(_) => "-".to_owned(),
        };
        let met = match outcome.met() {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "",
        };
        let padding = width - outcome.row.name.chars().count();
        let _ = writeln!(
            out,
            "{}",
            format!(
                "{}{:padding$}  {measured:>10}  {:>8}  {met}",
                outcome.row.name,
                "",
                outcome.row.target.text()
            )
            .trim_end()
        );
    }
    out
}

pub async fn run(args: AllArgs) -> anyhow::Result<()> {
    let selected = |bench: Bench| {
        (args.only.is_empty() || args.only.contains(&bench)) && !args.skip.contains(&bench)
    };
    let mut all = Vec::new();
    let mut failed = Vec::new();
    for run in RUNS.iter().filter(|run| selected(run.bench)) {
        let command = if args.quick { run.quick } else { run.args };
        let line = command.join(" ");
        eprintln!("bench all: wasmkube bench {line}");
        let result = run_child(command).await.map_err(|e| format!("{e:#}"));
        if let Err(error) = &result {
            eprintln!("bench all: `wasmkube bench {line}` failed: {error}");
            failed.push(line);
        }
        all.extend(outcomes(run, &result));
    }
    if args.quick {
        println!("quick settings: these figures are not taken at the targets' settings");
    }
    println!("{}", table(&all).trim_end());
    let mut summary = json!({
        "targets": all.iter().map(Outcome::json).collect::<Vec<_>>(),
        "date": chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        "quick": args.quick,
    });
    if let Some(commit) = commit().await {
        summary["commit"] = json!(commit);
    }
    println!("{summary}");
    if !failed.is_empty() {
        bail!("{} bench(es) failed: {}", failed.len(), failed.join("; "));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The rows of `bench`'s runs read from `json`, by name.
    fn measured(bench: Bench, json: &str) -> Vec<(&'static str, Option<f64>, Option<bool>)> {
        let json: Value = serde_json::from_str(json).unwrap();
        RUNS.iter()
            .filter(|run| run.bench == bench)
            .flat_map(|run| outcomes(run, &Ok(json.clone())))
            .map(|o| (o.row.name, o.measured.as_ref().ok().copied(), o.met()))
            .collect()
    }

    fn find(rows: &[(&str, Option<f64>, Option<bool>)], name: &str) -> (Option<f64>, Option<bool>) {
        let (_, value, met) = rows.iter().find(|(n, _, _)| *n == name).unwrap();
        (*value, *met)
    }

    // The last lines below are copied from docs/benchmarks.md.

    #[test]
    fn api_rows() {
        let line = r#"{"parameters":{"objects":5000,"concurrency":32,"duration_secs":5,"rate_per_sec":1000,"cores":2},"store":{"embedded":{"create_at_1000_per_s":{"ops":5000,"ops_per_sec":999.4,"p50_us":487,"p99_us":991,"errors":0},"watch_delivery":{"ops":5000,"ops_per_sec":999.4,"p50_us":499,"p99_us":1026,"errors":0},"create_32_clients":{"ops":69946,"ops_per_sec":13983.7,"p50_us":2279,"p99_us":3327,"errors":0},"get_32_clients":{"ops":673666,"ops_per_sec":134559.6,"p50_us":166,"p99_us":1201,"errors":0},"range_of_1000_keys":{"ops":4381,"ops_per_sec":876.0,"p50_us":1071,"p99_us":2221,"errors":0}},"etcd":{"create_at_1000_per_s":{"ops":5000,"ops_per_sec":999.6,"p50_us":773,"p99_us":2400,"errors":0},"watch_delivery":{"ops":5000,"ops_per_sec":999.6,"p50_us":810,"p99_us":2434,"errors":0},"create_32_clients":{"ops":45380,"ops_per_sec":9074.0,"p50_us":2970,"p99_us":12160,"errors":0},"get_32_clients":{"ops":71942,"ops_per_sec":14373.9,"p50_us":1787,"p99_us":8281,"errors":0},"range_of_1000_keys":{"ops":1824,"ops_per_sec":364.6,"p50_us":2377,"p99_us":8952,"errors":0}}},"api":{"embedded":{"create_32_clients":{"ops":5000,"ops_per_sec":8388.5,"p50_us":3766,"p99_us":6323,"errors":0},"get_32_clients":{"ops":5000,"ops_per_sec":19049.2,"p50_us":1668,"p99_us":2756,"errors":0},"list_all_5000":{"ops":5,"ops_per_sec":8.7,"p50_us":107548,"p99_us":144241,"errors":0},"list_page_of_500":{"ops":50,"ops_per_sec":121.3,"p50_us":8103,"p99_us":10479,"errors":0},"update_32_clients":{"ops":5000,"ops_per_sec":6620.1,"p50_us":4780,"p99_us":7666,"errors":0},"delete_32_clients":{"ops":5000,"ops_per_sec":10916.4,"p50_us":2921,"p99_us":4546,"errors":0},"create_at_1000_per_s":{"ops":5000,"ops_per_sec":999.3,"p50_us":1800,"p99_us":3809,"errors":0},"watch_delivery_at_1000_per_s":{"ops":5000,"ops_per_sec":999.4,"p50_us":1776,"p99_us":3786,"errors":0}},"etcd":{"create_32_clients":{"ops":5000,"ops_per_sec":3408.3,"p50_us":9093,"p99_us":16258,"errors":0},"get_32_clients":{"ops":5000,"ops_per_sec":9244.4,"p50_us":3256,"p99_us":8669,"errors":0},"list_all_5000":{"ops":5,"ops_per_sec":7.8,"p50_us":133162,"p99_us":137632,"errors":0},"list_page_of_500":{"ops":50,"ops_per_sec":94.3,"p50_us":10248,"p99_us":14489,"errors":0},"update_32_clients":{"ops":5000,"ops_per_sec":2933.2,"p50_us":10711,"p99_us":18254,"errors":0},"delete_32_clients":{"ops":5000,"ops_per_sec":4206.4,"p50_us":7189,"p99_us":14217,"errors":0},"create_at_1000_per_s":{"ops":5000,"ops_per_sec":999.0,"p50_us":3217,"p99_us":11122,"errors":0},"watch_delivery_at_1000_per_s":{"ops":5000,"ops_per_sec":999.3,"p50_us":3142,"p99_us":11055,"errors":0}}},"target":{"name":"api create p99 at 1000/s on the embedded store","limit_us":5000,"p99_us":3809,"met":true}}"#;
        let rows = measured(Bench::Api, line);
        assert_eq!(
            find(&rows, "API create @ 1000/s, embedded store: p99 µs"),
            (Some(3809.0), Some(true))
        );
        // That line predates the RBAC rows: not measured, so not met.
        assert_eq!(
            find(&rows, "API create @ 1000/s: RBAC on/off p99"),
            (None, Some(false))
        );
        let with_rbac = r#"{"api":{"embedded":{"create_at_1000_per_s":{"p99_us":14356},"create_at_1000_per_s_bound_user":{"p99_us":13645}}}}"#;
        let (ratio, met) = find(
            &measured(Bench::Api, with_rbac),
            "API create @ 1000/s: RBAC on/off p99",
        );
        assert!((ratio.unwrap() - 13645.0 / 14356.0).abs() < 1e-9);
        assert_eq!(met, Some(true));
    }

    #[test]
    fn memory_rows() {
        let line = r#"{"pods":100,"idle_seconds":30,"rss_idle_mb":93.65625,"rss_anon_idle_mb":36.88671875,"rss_file_idle_mb":56.76953125,"rss_idle_peak_mb":170.0625,"rss_100_pods_mb":108.96875,"rss_anon_100_pods_mb":50.140625,"rss_file_100_pods_mb":58.828125,"rss_100_pods_peak_mb":112.38671875,"rss_after_delete_mb":109.8984375,"ready_secs":31.632028538,"rss_restart_idle_mb":100.97265625,"rss_anon_restart_idle_mb":49.44921875,"rss_file_restart_idle_mb":51.5234375,"rss_restart_idle_peak_mb":117.93359375}"#;
        let rows = measured(Bench::Memory, line);
        assert_eq!(
            find(&rows, "wasmkube up RSS, idle: MB"),
            (Some(93.65625), Some(false))
        );
        assert_eq!(
            find(&rows, "wasmkube up RSS, 100 pods: MB"),
            (Some(108.96875), Some(false))
        );
    }

    #[test]
    fn scheduler_rows() {
        // Shaped as `bench scheduler` prints them; figures of the 5000-node runs at `798efe6`.
        let plain = r#"{"nodes":5000,"pods":10000,"workload":"plain pods","policy":"wasm","pods_per_sec":1435.0,"p50_ms":10.2,"p99_ms":32.0,"bound":10000,"errors":0,"native_pods_per_sec":1660.0,"native_p50_ms":6.9,"native_p99_ms":17.2,"wasm_native_ratio":1.16}"#;
        let rows = measured(Bench::Scheduler, plain);
        assert_eq!(
            find(&rows, "scheduler plain, 5000 nodes, Wasm: pods/s"),
            (Some(1435.0), Some(false))
        );
        assert_eq!(
            find(&rows, "scheduler plain: Wasm/native time"),
            (Some(1.16), Some(false))
        );
        let (p50, met) = find(&rows, "scheduler plain: Wasm/native latency p50");
        assert!((p50.unwrap() - 10.2 / 6.9).abs() < 1e-9);
        assert_eq!(met, Some(false));
        let swap = r#"{"nodes":5000,"pods":10000,"policy":"wasm","pods_per_sec":998.0,"bound":10000,"errors":0,"swap_in_force_ms":[32.6,6.1],"preferred_during_swap":3652}"#;
        let rows = measured(Bench::Scheduler, swap);
        assert_eq!(
            find(&rows, "policy swap @ 1000 pods/s: in force, ms"),
            (Some(32.6), Some(true))
        );
        assert_eq!(
            find(&rows, "policy swap: pods not bound"),
            (Some(0.0), Some(true))
        );
        assert_eq!(
            find(&rows, "policy swap: bindings refused"),
            (Some(0.0), Some(true))
        );
        // A run with no native policy has no ratio to give.
        assert_eq!(
            find(&rows, "scheduler plain: Wasm/native time"),
            (None, Some(false))
        );
    }

    #[test]
    fn node_and_services_rows() {
        let node = r#"{"pods":100,"at_once_p50_ms":3285.0,"at_once_p99_ms":5145.0,"cpu_ms_per_pod":80.0,"one_by_one_p50_ms":95.3,"one_by_one_p99_ms":109.7,"idle_rss_mb":27.7,"idle_cpu_percent":0.1,"adopted":100,"adopt_ms":129.0}"#;
        let rows = measured(Bench::Node, node);
        assert_eq!(
            find(&rows, "pod start, one by one: p50 ms"),
            (Some(95.3), Some(false))
        );
        assert_eq!(
            find(&rows, "node agent RSS, 100 pods: MB"),
            (Some(27.7), Some(true))
        );
        let services = r#"{"bench":"services","services":1000,"endpoints":10,"change_p50_ms":51.9,"change_p99_ms":66.1}"#;
        assert_eq!(
            find(
                &measured(Bench::Services, services),
                "Service change in force, 1000 × 10: p99 ms"
            ),
            (Some(66.1), Some(true))
        );
    }

    #[test]
    fn a_failed_bench_gives_null_rows_that_missed() {
        let run = RUNS.iter().find(|run| run.bench == Bench::Memory).unwrap();
        let rows = outcomes(run, &Err("exit status: 1: not root".to_owned()));
        assert_eq!(rows.len(), 2);
        for row in &rows {
            assert_eq!(
                row.json(),
                json!({"name": row.row.name, "measured": null, "target": row.row.target.json(),
                    "met": false, "error": "exit status: 1: not root"})
            );
        }
        let text = table(&rows);
        assert!(text.lines().nth(1).unwrap().ends_with("NO"), "{text}");
    }

    #[test]
    fn rows_without_a_target_are_never_met_nor_missed() {
        let dns = r#"{"bench":"dns","services":1000,"queries_per_second":78068.0,"p99_ms":0.366}"#;
        assert_eq!(
            find(&measured(Bench::Dns, dns), "DNS: queries/s"),
            (Some(78068.0), None)
        );
    }
}
