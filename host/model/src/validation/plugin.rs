//! The project's own kinds, beyond their structural schemas: a Plugin's workers, limits and chunk counts are bounded, only a controller Plugin has a shadow, and a PluginModule chunk's index is within its count.

use serde_json::Value;

use super::{ErrorType, Errors};

/// The most keys a Plugin may reconcile at once (`spec.workers`): each worker may hold an instance
/// of up to `spec.limits.memoryBytes`.
pub const MAX_WORKERS: u64 = 16;
/// The most memory one plugin instance may be given (`spec.limits.memoryBytes`): 1 GiB.
pub const MAX_MEMORY_BYTES: u64 = 1 << 30;
/// The longest wall-clock deadline of one call into a plugin (`spec.limits.callTimeoutMillis`):
/// one minute.
pub const MAX_CALL_TIMEOUT_MILLIS: u64 = 60_000;
/// The most PluginModule chunks one module may take (`spec.module.chunks`, a chunk's `count`):
/// 128 chunks of 512 KiB, a 64 MiB module.
pub const MAX_MODULE_CHUNKS: u64 = 128;

pub fn validate_plugin(obj: &Value, errs: &mut Errors) {
    let spec = &obj["spec"];
    errs.at_most(spec, "workers", "spec", MAX_WORKERS);
    errs.at_most(
        &spec["limits"],
        "memoryBytes",
        "spec.limits",
        MAX_MEMORY_BYTES,
    );
    errs.at_most(
        &spec["limits"],
        "callTimeoutMillis",
        "spec.limits",
        MAX_CALL_TIMEOUT_MILLIS,
    );
    errs.at_most(&spec["module"], "chunks", "spec.module", MAX_MODULE_CHUNKS);
    let shadow = &spec["shadow"];
    errs.at_most(
        &shadow["module"],
        "chunks",
        "spec.shadow.module",
        MAX_MODULE_CHUNKS,
    );
    if !shadow.is_null() && spec["kind"] == "Scheduler" {
        errs.push(
            "spec.shadow",
            ErrorType::Forbidden(
                "a Scheduler Plugin has no shadow: a SchedulerProfile's spec.shadow runs a candidate policy".into(),
            ),
        );
    }
}

pub fn validate_module(obj: &Value, errs: &mut Errors) {
    errs.at_most(obj, "count", "", MAX_MODULE_CHUNKS);
    let (index, count) = (
        obj.get("index").and_then(Value::as_i64),
        obj.get("count").and_then(Value::as_i64),
    );
    if let (Some(i), Some(n)) = (index, count)
        && i >= n
    {
        errs.invalid("index", &Value::from(i), "must be less than count");
    }
}
