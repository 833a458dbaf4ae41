//! The bench's output: backends side by side in an aligned table, and the machine-readable JSON.

use std::fmt::{self, Write as _};

use serde_json::{Map, Value, json};

use super::{Backend, Results, api};

/// Width of the operation column.
const NAME: usize = 30;
/// Width of one backend's columns: ops/s, p50, p99 and errors.
const GROUP: usize = 9 + 1 + 9 + 1 + 9 + 1 + 6;

/// The backends' rows side by side, matched by operation name.
pub fn table(title: &str, results: &Results) -> String {
    let mut out = String::new();
    let _ = write!(out, "{title:<NAME$}");
    for (backend, _) in results {
        let _ = write!(out, "   {:^GROUP$}", format!("── {} ──", backend.name()));
    }
    let _ = write!(out, "\n{:<NAME$}", "operation");
    for _ in results {
        let _ = write!(
            out,
            "   {:>9} {:>9} {:>9} {:>6}",
            "ops/s", "p50 µs", "p99 µs", "errors"
        );
    }
    out.push('\n');
    let names = results
        .first()
        .map(|(_, rows)| rows.as_slice())
        .unwrap_or(&[]);
    for name in names.iter().map(|row| &row.name) {
        let _ = write!(out, "{name:<NAME$}");
        for (_, rows) in results {
            match rows.iter().find(|row| &row.name == name) {
                Some(row) => {
                    let _ = write!(
                        out,
                        "   {:>9.0} {:>9} {:>9} {:>6}",
                        row.ops_per_sec, row.p50_us, row.p99_us, row.errors
                    );
                }
                None => {
                    let _ = write!(out, "   {:>GROUP$}", "-");
                }
            }
        }
        out.push('\n');
    }
    out
}

/// The design target: single-object creates through the API at 1000/s on the embedded store.
pub struct Target {
    p99_us: Option<u64>,
}

impl Target {
    const LIMIT_US: u64 = 5000;

    pub fn of(api_results: &Results) -> Target {
        let p99_us = api_results
            .iter()
            .find(|(backend, _)| *backend == Backend::Embedded)
            .and_then(|(_, rows)| rows.iter().find(|row| row.name == api::RATE_CREATE))
            .filter(|row| row.errors == 0 && row.ops > 0)
            .map(|row| row.p99_us);
        Target { p99_us }
    }

    fn met(&self) -> Option<bool> {
        self.p99_us.map(|p99| p99 <= Self::LIMIT_US)
    }

    fn json(&self) -> Value {
        json!({
            "name": "api create p99 at 1000/s on the embedded store",
            "limit_us": Self::LIMIT_US,
            "p99_us": self.p99_us,
            "met": self.met(),
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "target: API `{}` p99 on the embedded store ≤ {} µs: ",
            api::RATE_CREATE,
            Self::LIMIT_US
        )?;
        match (self.p99_us, self.met()) {
            (Some(p99), Some(true)) => write!(f, "{p99} µs, met"),
            (Some(p99), _) => write!(f, "{p99} µs, NOT met"),
            _ => write!(f, "not measured (embedded store not run, or errors)"),
        }
    }
}

/// Everything measured, as one JSON object.
pub fn json(parameters: Value, store: &Results, api: &Results, target: &Target) -> Value {
    json!({
        "parameters": parameters,
        "store": by_backend(store),
        "api": by_backend(api),
        "target": target.json(),
    })
}

fn by_backend(results: &Results) -> Value {
    let mut backends = Map::new();
    for (backend, rows) in results {
        let rows: Map<String, Value> = rows
            .iter()
            .map(|row| {
                let figures = json!({
                    "ops": row.ops,
                    "ops_per_sec": (row.ops_per_sec * 10.0).round() / 10.0,
                    "p50_us": row.p50_us,
                    "p99_us": row.p99_us,
                    "errors": row.errors,
                });
                (slug(&row.name), figures)
            })
            .collect();
        backends.insert(backend.name().to_owned(), Value::Object(rows));
    }
    Value::Object(backends)
}

/// A JSON key for an operation name: `create @ 1000/s` becomes `create_at_1000_per_s`.
fn slug(name: &str) -> String {
    name.replace('@', " at ")
        .replace('/', " per ")
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_ascii_lowercase)
        .collect::<Vec<_>>()
        .join("_")
}
