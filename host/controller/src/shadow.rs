//! Shadow controllers: a candidate version run beside the active one on the same keys, its writes dry runs, each reconcile's writes compared with the active version's, and the tally reported.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::manager::{ObjectKey, Outcome, Reconciler};
use crate::record::Write;
use crate::wasm::{Health, WasmReconciler};

/// How many divergences the status keeps, the last ones.
pub const LAST_DIVERGENCES: usize = 10;
/// The longest `diff` of one divergence, in bytes.
pub const DIFF_BYTES: usize = 2048;
/// The most writes listed per side of one divergence.
const LISTED_WRITES: usize = 20;
/// The longest value shown in a diff line, in bytes.
const VALUE_BYTES: usize = 120;

/// How the candidate compares with the active version so far.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Reconciles both versions finished without a trap, compared.
    pub reconciles: u64,
    pub agreements: u64,
    pub divergences: u64,
    /// The last [`LAST_DIVERGENCES`] divergences: `{key, active, candidate, diff}`.
    pub last: VecDeque<Value>,
}

impl Report {
    /// Counts one compared reconcile of `key`.
    pub fn compare(&mut self, key: &ObjectKey, active: Vec<Write>, candidate: Vec<Write>) {
        self.reconciles += 1;
        let (active, candidate) = (sorted(active), sorted(candidate));
        if active == candidate {
            self.agreements += 1;
            return;
        }
        self.divergences += 1;
        if self.last.len() == LAST_DIVERGENCES {
            self.last.pop_front();
        }
        self.last.push_back(json!({
            "key": match key.namespace.as_str() {
                "" => key.name.clone(),
                namespace => format!("{namespace}/{}", key.name),
            },
            "active": listed(&active),
            "candidate": listed(&candidate),
            "diff": diff(&active, &candidate),
        }));
    }

    /// `status.shadow` of a candidate with `digest` that trapped `traps` times.
    pub fn status(&self, digest: &str, traps: u64) -> Value {
        json!({
            "digest": digest,
            "reconciles": self.reconciles,
            "agreements": self.agreements,
            "divergences": self.divergences,
            "traps": traps,
            "lastDivergences": self.last,
        })
    }
}

/// Writes in a stable order: by what they were about, each object's writes in the order made.
fn sorted(mut writes: Vec<Write>) -> Vec<Write> {
    writes.sort_by(|a, b| (a.verb, &a.resource, &a.key).cmp(&(b.verb, &b.resource, &b.key)));
    writes
}

/// One write as a divergence lists it: `create secrets default/x`, with the refusal if any.
fn summary(write: &Write) -> String {
    match &write.result {
        Ok(_) => write.label(),
        Err(refusal) => format!("{}: {refusal}", write.label()),
    }
}

fn listed(writes: &[Write]) -> Vec<String> {
    let mut list: Vec<String> = writes.iter().take(LISTED_WRITES).map(summary).collect();
    if writes.len() > LISTED_WRITES {
        list.push(format!("… and {} more", writes.len() - LISTED_WRITES));
    }
    list
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Where the two sides' writes differ, one line each: a write only one side made, or the JSON
/// paths at which the results of the same write differ, with both values. At most
/// [`DIFF_BYTES`].
pub fn diff(active: &[Write], candidate: &[Write]) -> String {
    let mut by_label: BTreeMap<String, (Vec<&Write>, Vec<&Write>)> = BTreeMap::new();
    for w in active {
        by_label.entry(w.label()).or_default().0.push(w);
    }
    for w in candidate {
        by_label.entry(w.label()).or_default().1.push(w);
    }
    let mut lines = Vec::new();
    for (label, (a, c)) in &by_label {
        for i in 0..a.len().max(c.len()) {
            match (a.get(i), c.get(i)) {
                (Some(a), Some(c)) => results(label, &a.result, &c.result, &mut lines),
                (Some(_), None) => lines.push(format!("{label}: only the active version")),
                (None, Some(_)) => lines.push(format!("{label}: only the candidate")),
                (None, None) => {}
            }
        }
    }
    let text = lines.join("\n");
    if text.len() <= DIFF_BYTES {
        return text;
    }
    format!("{}…", cut(&text, DIFF_BYTES - '…'.len_utf8()))
}

fn results(
    label: &str,
    active: &Result<Value, String>,
    candidate: &Result<Value, String>,
    lines: &mut Vec<String>,
) {
    match (active, candidate) {
        (Ok(a), Ok(c)) => {
            let mut paths = Vec::new();
            differences(&mut String::new(), a, c, &mut paths);
            lines.extend(paths.into_iter().map(|p| format!("{label} {p}")));
        }
        (a, c) if a != c => {
            let text = |r: &Result<Value, String>| match r {
                Ok(_) => "done".to_string(),
                Err(refusal) => refusal.clone(),
            };
            lines.push(format!(
                "{label}: active {}, candidate {}",
                text(a),
                text(c)
            ));
        }
        _ => {}
    }
}

/// The JSON pointers under `path` where `a` and `c` differ, with both values (`null` for an
/// absent one). Stops once there are enough lines to fill a diff.
fn differences(path: &mut String, a: &Value, c: &Value, out: &mut Vec<String>) {
    if a == c || out.len() > DIFF_BYTES / 16 {
        return;
    }
    match (a, c) {
        (Value::Object(a_map), Value::Object(c_map)) => {
            let keys: std::collections::BTreeSet<&String> =
                a_map.keys().chain(c_map.keys()).collect();
            for key in keys {
                let len = path.len();
                let _ = write!(path, "/{}", key.replace('~', "~0").replace('/', "~1"));
                let (a, c) = (&a_map.get(key), &c_map.get(key));
                differences(
                    path,
                    a.unwrap_or(&Value::Null),
                    c.unwrap_or(&Value::Null),
                    out,
                );
                path.truncate(len);
            }
        }
        (Value::Array(a_items), Value::Array(c_items)) if a_items.len() == c_items.len() => {
            for (i, (a, c)) in a_items.iter().zip(c_items).enumerate() {
                let len = path.len();
                let _ = write!(path, "/{i}");
                differences(path, a, c, out);
                path.truncate(len);
            }
        }
        _ => {
            let show = |v: &Value| {
                let text = v.to_string();
                if text.len() > VALUE_BYTES {
                    format!("{}…", cut(&text, VALUE_BYTES))
                } else {
                    text
                }
            };
            let at = if path.is_empty() { "/" } else { path.as_str() };
            out.push(format!("{at}: active {}, candidate {}", show(a), show(c)));
        }
    }
}

/// A Plugin's shadow, as its supervisor keeps it.
pub enum Shadow {
    /// Running, wrapped around the active reconciler.
    Running {
        digest: String,
        report: Arc<Mutex<Report>>,
        health: Arc<Mutex<Health>>,
    },
    /// It could not be loaded; not tried again until `spec.shadow` or the active version changes.
    Failed { digest: String, message: String },
}

impl Shadow {
    pub fn digest(&self) -> &str {
        match self {
            Shadow::Running { digest, .. } | Shadow::Failed { digest, .. } => digest,
        }
    }

    /// The comparison's tally, while it runs.
    pub fn report(&self) -> Option<Arc<Mutex<Report>>> {
        match self {
            Shadow::Running { report, .. } => Some(report.clone()),
            Shadow::Failed { .. } => None,
        }
    }

    /// `status.shadow`.
    pub fn status(&self) -> Value {
        match self {
            Shadow::Running {
                digest,
                report,
                health,
            } => {
                let traps = health.lock().unwrap_or_else(|p| p.into_inner()).traps;
                report
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .status(digest, traps)
            }
            Shadow::Failed { digest, message } => {
                json!({"digest": digest, "phase": "Failed", "message": message})
            }
        }
    }
}

/// The active version's reconciler with a candidate beside it: for each key the candidate runs
/// first (its writes dry runs, so both see the same state), then the active version; their
/// writes are compared. The active version's outcome is the only one the queue gets: the
/// candidate's errors and traps change nothing.
pub struct ShadowReconciler {
    active: Arc<WasmReconciler>,
    candidate: WasmReconciler,
    report: Arc<Mutex<Report>>,
}

impl ShadowReconciler {
    pub fn new(active: Arc<WasmReconciler>, candidate: WasmReconciler) -> Self {
        ShadowReconciler {
            active,
            candidate,
            report: Arc::default(),
        }
    }

    /// The comparison's tally, as it goes.
    pub fn report(&self) -> Arc<Mutex<Report>> {
        self.report.clone()
    }

    /// The candidate's health (its traps).
    pub fn candidate_health(&self) -> Arc<Mutex<Health>> {
        self.candidate.health()
    }
}

#[async_trait::async_trait]
impl Reconciler for ShadowReconciler {
    async fn reconcile(&self, key: ObjectKey) -> Result<Outcome, String> {
        let candidate = self.candidate.call(key.clone(), true).await;
        let active = self.active.call(key.clone(), true).await;
        // A trap cuts a reconcile short: its writes are not all there is to compare.
        if !candidate.trapped && !active.trapped {
            self.report
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .compare(&key, active.writes, candidate.writes);
        }
        active.result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(verb: &'static str, key: &str, result: Result<Value, String>) -> Write {
        Write {
            verb,
            resource: "configmaps".into(),
            key: key.into(),
            result,
        }
    }

    #[test]
    fn the_same_writes_in_another_order_agree() {
        let key = ObjectKey {
            namespace: "d".into(),
            name: "c".into(),
        };
        let (x, y) = (
            write("create", "d/x", Ok(json!({"data": {"a": "1"}}))),
            write("delete", "d/y", Ok(Value::Null)),
        );
        let mut report = Report::default();
        report.compare(&key, vec![x.clone(), y.clone()], vec![y, x]);
        assert_eq!(
            (report.reconciles, report.agreements, report.divergences),
            (1, 1, 0)
        );
    }

    #[test]
    fn divergences_are_listed_diffed_and_bounded() {
        let key = ObjectKey {
            namespace: "d".into(),
            name: "c".into(),
        };
        let mut report = Report::default();
        for i in 0..15 {
            let active = vec![
                write("create", "d/x", Ok(json!({"data": {"a": "1", "b": "2"}}))),
                write("delete", "d/y", Ok(Value::Null)),
            ];
            let candidate = vec![
                write("create", "d/x", Ok(json!({"data": {"a": i.to_string()}}))),
                write("create", "d/z", Err("409 AlreadyExists".into())),
            ];
            report.compare(&key, active, candidate);
        }
        assert_eq!(
            (report.reconciles, report.agreements, report.divergences),
            (15, 0, 15)
        );
        assert_eq!(report.last.len(), LAST_DIVERGENCES);
        let last = &report.last[LAST_DIVERGENCES - 1];
        assert_eq!(last["key"], "d/c");
        assert_eq!(
            last["candidate"],
            json!([
                "create configmaps d/x",
                "create configmaps d/z: 409 AlreadyExists"
            ])
        );
        assert_eq!(
            last["diff"],
            "create configmaps d/x /data/a: active \"1\", candidate \"14\"\n\
             create configmaps d/x /data/b: active \"2\", candidate null\n\
             create configmaps d/z: only the candidate\n\
             delete configmaps d/y: only the active version"
        );
        // A diff of very different objects is cut.
        let big = |c: &str| {
            let data: serde_json::Map<String, Value> =
                (0..500).map(|i| (format!("k{i}"), json!(c))).collect();
            vec![write("update", "d/x", Ok(json!({ "data": data })))]
        };
        let text = diff(&big("a"), &big("b"));
        assert!(text.len() <= DIFF_BYTES && text.ends_with('…'), "{text}");
    }
}
