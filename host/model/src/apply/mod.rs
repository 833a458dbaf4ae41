//! Server-side apply and field ownership (`metadata.managedFields`), after structured-merge-diff.

mod fields;
mod fieldset;
mod managed;
mod merge;

use serde_json::{Value, json};

use crate::patch::PatchSchema;
use fields::{Lists, changes, field_set, value_at};
use fieldset::{FieldSet, path_string};
use managed::{Entry, owned_by_others, upsert};

/// A field the applier wants to change that another manager owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager.
    pub manager: String,
    /// The API version that manager last wrote with.
    pub api_version: String,
    /// The field, as Kubernetes prints it: `.spec.replicas`.
    pub field_path: String,
}

/// Why an apply was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Other managers own fields the configuration changes (409 unless forced).
    #[error("{}", conflicts_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The applied configuration is not an object (400).
    #[error("the applied configuration must be a JSON object")]
    NotAnObject,
}

/// Kubernetes' wording: `Apply failed with 1 conflict: conflict with "m" using v1: .a`, or for
/// several, one `conflicts with "m" using v1:` block per manager with `- .path` lines.
fn conflicts_message(conflicts: &[Conflict]) -> String {
    let count = conflicts.len();
    let plural = if count == 1 { "" } else { "s" };
    let body = match conflicts {
        [one] => format!(
            "conflict with {:?} using {}: {}",
            one.manager, one.api_version, one.field_path
        ),
        _ => {
            let mut managers: Vec<(&str, &str)> = conflicts
                .iter()
                .map(|c| (c.manager.as_str(), c.api_version.as_str()))
                .collect();
            managers.sort();
            managers.dedup();
            let blocks: Vec<String> = managers
                .iter()
                .map(|(manager, version)| {
                    let paths: String = conflicts
                        .iter()
                        .filter(|c| c.manager == *manager && c.api_version == *version)
                        .map(|c| format!("\n- {}", c.field_path))
                        .collect();
                    format!("conflicts with {manager:?} using {version}:{paths}")
                })
                .collect();
            blocks.join("\n")
        }
    };
    format!("Apply failed with {count} conflict{plural}: {body}")
}

fn api_version(obj: &Value) -> String {
    obj.get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Server-side apply of `config` by `manager` onto `live` (None on create).
///
/// Returns the merged object with `metadata.managedFields` updated, or the conflicts with
/// other managers unless `force` (which takes those fields over). `schema` is `None` for
/// custom resources (maps granular, lists atomic).
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
    schema: Option<&PatchSchema>,
    now: &str,
) -> Result<Value, ApplyError> {
    if !config.is_object() {
        return Err(ApplyError::NotAnObject);
    }
    let lists = Lists(schema);
    let empty = json!({});
    let live_value = live.unwrap_or(&empty);
    let mut entries = managed::read(live);
    let applied = field_set(config, lists);
    let mut result = merge::merge(live_value, config, lists);

    let mine = |e: &Entry| e.is(manager, "Apply");
    let mut conflicts = Vec::new();
    for entry in entries.iter_mut().filter(|e| !mine(e)) {
        let mut lost = FieldSet::default();
        for path in applied.intersection(&entry.fields).leaves() {
            if value_at(live_value, &path) != value_at(&result, &path) {
                conflicts.push(Conflict {
                    manager: entry.manager.clone(),
                    api_version: entry.api_version.clone(),
                    field_path: path_string(&path),
                });
                lost.insert(&path);
            }
        }
        entry.fields = entry.fields.difference(&lost);
    }
    if !conflicts.is_empty() && !force {
        return Err(ApplyError::Conflicts(conflicts));
    }

    let previous = entries
        .iter()
        .find(|e| mine(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let others = owned_by_others(&entries, mine);
    merge::prune(&mut result, &previous.difference(&applied), &others);

    upsert(
        &mut entries,
        Entry {
            manager: manager.to_string(),
            operation: "Apply".to_string(),
            api_version: api_version(config),
            time: now.to_string(),
            subresource: None,
            fields: applied,
        },
    );
    managed::write(&mut result, entries);
    Ok(result)
}

/// Records a non-apply write (create, update, patch) of `new` over `old` by `manager`: the
/// fields it added or changed become its `Update` entry's, and no longer anyone else's.
///
/// Managed fields sent in `new` replace the stored ones; `[{}]` clears them altogether.
pub fn record_update(
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    now: &str,
    schema: Option<&PatchSchema>,
) -> Value {
    let mut result = new.clone();
    let requested = new.pointer("/metadata/managedFields");
    let mut entries = managed::read(Some(new));
    if entries.is_empty() {
        if requested
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
        {
            managed::write(&mut result, Vec::new());
            return result;
        }
        entries = managed::read(old);
    }

    let empty = json!({});
    let (changed, removed) = changes(old.unwrap_or(&empty), new, Lists(schema));
    let lost = changed.union(&removed);
    for entry in entries.iter_mut().filter(|e| !e.is(manager, "Update")) {
        entry.fields = entry.fields.difference(&lost);
    }
    if !changed.is_empty() {
        let previous = entries
            .iter()
            .find(|e| e.is(manager, "Update"))
            .map(|e| e.fields.clone())
            .unwrap_or_default();
        upsert(
            &mut entries,
            Entry {
                manager: manager.to_string(),
                operation: "Update".to_string(),
                api_version: api_version(new),
                time: now.to_string(),
                subresource: None,
                fields: previous.difference(&removed).union(&changed),
            },
        );
    } else if let Some(mine) = entries.iter_mut().find(|e| e.is(manager, "Update")) {
        mine.fields = mine.fields.difference(&removed);
    }
    managed::write(&mut result, entries);
    result
}
