//! `wasmkube bench all`: every benchmark in turn as a child process, then one table of each figure against its target.

use std::fmt::Write as _;
use std::process::Stdio;

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
    /// The arguments of `wasmkube bench` at the documented settings, split at spaces.
    args: &'static str,
    /// The same at the settings of `--quick`.
    quick: &'static str,
    rows: &'static [Row],
}

/// One figure of the table.
struct Row {
    name: &'static str,
    figure: Figure,
    target: Target,
}

const fn row(name: &'static str, figure: Figure, target: Target) -> Row {
    Row {
        name,
        figure,
        target,
    }
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
        args: "api --store embedded",
        quick: "api --store embedded --objects 500 --duration-secs 1",
        rows: &[
            row(
                "API create @ 1000/s, embedded store: p99 µs",
                Figure::Field("/api/embedded/create_at_1000_per_s/p99_us"),
                Target::AtMost(5000.0),
            ),
            row(
                "API create @ 1000/s: RBAC on/off p99",
                Figure::Ratio(
                    "/api/embedded/create_at_1000_per_s_bound_user/p99_us",
                    "/api/embedded/create_at_1000_per_s/p99_us",
                ),
                Target::AtMost(1.1),
            ),
        ],
    },
    Run {
        bench: Bench::Controllers,
        args: "controllers --replicas 1000 --nodes 100",
        quick: "controllers --replicas 100 --nodes 10",
        rows: &[
            row(
                "controllers: Deployment scaled up, s",
                Figure::Field("/scale_up_s"),
                Target::None,
            ),
            row(
                "controllers: hot swap in force, ms",
                Figure::Field("/swap_in_force_ms"),
                Target::None,
            ),
        ],
    },
    Run {
        bench: Bench::Scheduler,
        args: "scheduler --nodes 5000 --pods 10000 --policy both",
        quick: "scheduler --nodes 200 --pods 1000 --policy both",
        rows: &[
            row(
                "scheduler plain, 5000 nodes, Wasm: pods/s",
                Figure::Field("/pods_per_sec"),
                Target::AtLeast(2000.0),
            ),
            row(
                "scheduler plain: Wasm/native time",
                Figure::Field("/wasm_native_ratio"),
                Target::AtMost(1.15),
            ),
            row(
                "scheduler plain: Wasm/native latency p50",
                Figure::Ratio("/p50_ms", "/native_p50_ms"),
                Target::AtMost(1.2),
            ),
            row(
                "scheduler plain: Wasm/native latency p99",
                Figure::Ratio("/p99_ms", "/native_p99_ms"),
                Target::AtMost(1.3),
            ),
        ],
    },
    Run {
        bench: Bench::Scheduler,
        args: "scheduler --nodes 5000 --pods 10000 --policy wasm --workload spread",
        quick: "scheduler --nodes 200 --pods 1000 --policy wasm --workload spread",
        rows: &[row(
            "scheduler spread, 5000 nodes, Wasm: pods/s",
            Figure::Field("/pods_per_sec"),
            Target::AtLeast(1200.0),
        )],
    },
    Run {
        bench: Bench::Scheduler,
        args: "scheduler --nodes 1000 --pods 10000 --policy wasm --rate 1000 --swap",
        quick: "scheduler --nodes 200 --pods 2000 --policy wasm --rate 1000 --swap",
        rows: &[
            row(
                "policy swap @ 1000 pods/s: in force, ms",
                Figure::Max("/swap_in_force_ms"),
                Target::AtMost(100.0),
            ),
            row(
                "policy swap: pods not bound",
                Figure::Difference("/pods", "/bound"),
                Target::AtMost(0.0),
            ),
            row(
                "policy swap: bindings refused",
                Figure::Field("/errors"),
                Target::AtMost(0.0),
            ),
        ],
    },
    Run {
        bench: Bench::Node,
        args: "node",
        quick: "node --pods 10 --idle-seconds 2",
        rows: &[
            row(
                "pod start: machine CPU per pod, ms",
                Figure::Field("/cpu_ms_per_pod"),
                Target::AtMost(40.0),
            ),
            row(
                "pod start, 100 at once: p50 ms",
                Figure::Field("/at_once_p50_ms"),
                Target::AtMost(1500.0),
            ),
            row(
                "pod start, 100 at once: p99 ms",
                Figure::Field("/at_once_p99_ms"),
                Target::AtMost(2500.0),
            ),
            row(
                "pod start, one by one: p50 ms",
                Figure::Field("/one_by_one_p50_ms"),
                Target::AtMost(80.0),
            ),
            row(
                "node agent RSS, 100 pods: MB",
                Figure::Field("/idle_rss_mb"),
                Target::AtMost(30.0),
            ),
        ],
    },
    Run {
        bench: Bench::Memory,
        args: "memory",
        quick: "memory --pods 10 --idle-seconds 5",
        rows: &[
            row(
                "wasmkube up RSS, idle: MB",
                Figure::Field("/rss_idle_mb"),
                Target::AtMost(64.0),
            ),
            row(
                "wasmkube up RSS, 100 pods: MB",
                Figure::Field("/rss_100_pods_mb"),
                Target::AtMost(100.0),
            ),
        ],
    },
    Run {
        bench: Bench::Dns,
        args: "dns",
        quick: "dns --services 100 --duration-secs 1",
        rows: &[
            row(
                "DNS: queries/s",
                Figure::Field("/queries_per_second"),
                Target::None,
            ),
            row("DNS: p99 ms", Figure::Field("/p99_ms"), Target::None),
        ],
    },
    Run {
        bench: Bench::Services,
        args: "services",
        quick: "services --services 100 --changes 10",
        rows: &[row(
            "Service change in force, 1000 × 10: p99 ms",
            Figure::Field("/change_p99_ms"),
            Target::AtMost(1000.0),
        )],
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
    let status = status?;
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
        let line = if args.quick { run.quick } else { run.args };
        eprintln!("bench all: wasmkube bench {line}");
        let command: Vec<&str> = line.split_whitespace().collect();
        let result = run_child(&command).await.map_err(|e| format!("{e:#}"));
        if let Err(error) = &result {
            eprintln!("bench all: `wasmkube bench {line}` failed: {error}");
            failed.push(line.to_owned());
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
mod tests;
