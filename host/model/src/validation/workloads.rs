//! Pods, pod templates and the workload kinds that own them (Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob).

use std::collections::BTreeSet;

use serde_json::Value;

use super::meta::{is_dns1123_label, validate_labels};
use super::{ErrorType, Errors, items, pod_refs, str_field};
use crate::selector::LabelSelector;

const RESTART_POLICIES: &[&str] = &["Always", "Never", "OnFailure"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];

fn validate_container(c: &Value, path: &str, volumes: &BTreeSet<&str>, errs: &mut Errors) {
    match str_field(c, "name") {
        None | Some("") => errs.required(format!("{path}.name"), ""),
        Some(name) if !is_dns1123_label(name) => errs.invalid(
            format!("{path}.name"),
            &Value::from(name),
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        ),
        Some(_) => {}
    }
    if str_field(c, "image").is_none_or(|i| i.trim().is_empty()) {
        errs.required(format!("{path}.image"), "");
    }
    if let Some(policy) = c
        .get("imagePullPolicy")
        .filter(|p| !p.as_str().is_some_and(|p| PULL_POLICIES.contains(&p)))
    {
        errs.not_supported(format!("{path}.imagePullPolicy"), policy, PULL_POLICIES);
    }
    for (i, port) in items(c, "ports") {
        let ppath = format!("{path}.ports[{i}]");
        match port.get("containerPort").and_then(Value::as_i64) {
            None => errs.required(format!("{ppath}.containerPort"), ""),
            Some(p) if !(1..=65535).contains(&p) => errs.invalid(
                format!("{ppath}.containerPort"),
                &Value::from(p),
                "must be between 1 and 65535, inclusive",
            ),
            Some(_) => {}
        }
        if let Some(proto) = port
            .get("protocol")
            .filter(|p| !p.as_str().is_some_and(|p| PROTOCOLS.contains(&p)))
        {
            errs.not_supported(format!("{ppath}.protocol"), proto, PROTOCOLS);
        }
    }
    for (i, mount) in items(c, "volumeMounts") {
        let name = str_field(mount, "name").unwrap_or("");
        if !volumes.contains(name) {
            errs.push(
                format!("{path}.volumeMounts[{i}].name"),
                ErrorType::NotFound(format!("{name:?}")),
            );
        }
        if str_field(mount, "mountPath").is_none_or(str::is_empty) {
            errs.required(format!("{path}.volumeMounts[{i}].mountPath"), "");
        }
        pod_refs::sub_path(mount, &format!("{path}.volumeMounts[{i}]"), errs);
    }
    for (i, env) in items(c, "env") {
        if str_field(env, "name").is_none_or(str::is_empty) {
            errs.required(format!("{path}.env[{i}].name"), "");
        }
    }
    pod_refs::env_sources(c, path, errs);
    pod_refs::resources(c, path, errs);
    pod_refs::http_actions(c, path, errs);
}

/// Validates a `PodSpec` at `path` (`spec`, `spec.template.spec`, ...).
pub fn validate_pod_spec(spec: Option<&Value>, path: &str, errs: &mut Errors) {
    let Some(spec) = spec else {
        errs.required(path, "");
        return;
    };
    let volumes = pod_refs::volumes(spec, path, errs);
    if items(spec, "containers").next().is_none() {
        errs.required(format!("{path}.containers"), "");
    }
    let mut names = BTreeSet::new();
    for field in ["initContainers", "containers"] {
        for (i, c) in items(spec, field) {
            let cpath = format!("{path}.{field}[{i}]");
            validate_container(c, &cpath, &volumes, errs);
            if let Some(name) = str_field(c, "name").filter(|n| !n.is_empty())
                && !names.insert(name)
            {
                errs.push(
                    format!("{cpath}.name"),
                    ErrorType::Duplicate(format!("{name:?}")),
                );
            }
        }
    }
    if let Some(policy) = spec
        .get("restartPolicy")
        .filter(|p| !p.as_str().is_some_and(|p| RESTART_POLICIES.contains(&p)))
    {
        errs.not_supported(format!("{path}.restartPolicy"), policy, RESTART_POLICIES);
    }
    errs.at_least(spec, "terminationGracePeriodSeconds", path, 0);
    // ValidatePodSpec: 1 to math.MaxInt32.
    if let Some(deadline) = spec.get("activeDeadlineSeconds").and_then(Value::as_i64)
        && !(1..=i64::from(i32::MAX)).contains(&deadline)
    {
        errs.invalid(
            format!("{path}.activeDeadlineSeconds"),
            &Value::from(deadline),
            "must be between 1 and 2147483647, inclusive",
        );
    }
}

pub fn validate_pod(obj: &Value, old: Option<&Value>, errs: &mut Errors) {
    validate_pod_spec(obj.get("spec"), "spec", errs);
    if let Some(old) = old {
        // A pod's spec is immutable but for images, deadlines and tolerations; containers keep their names.
        let names = |v: &Value| -> Vec<Value> {
            items(&v["spec"], "containers")
                .map(|(_, c)| c["name"].clone())
                .collect()
        };
        if names(obj) != names(old)
            || obj["spec"].get("nodeName").is_some_and(|n| {
                Some(n) != old["spec"].get("nodeName") && old["spec"].get("nodeName").is_some()
            })
        {
            errs.push("spec", ErrorType::Forbidden("pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)".into()));
        }
    }
}

/// Checks `spec.selector` against `spec.template.metadata.labels` and the template itself.
fn validate_selector_and_template(kind: &str, spec: &Value, errs: &mut Errors) {
    let template_labels = spec.pointer("/template/metadata/labels");
    match spec.get("selector") {
        None | Some(Value::Null) => errs.required("spec.selector", ""),
        Some(selector) => match serde_json::from_value(selector.clone())
            .map_err(|e| e.to_string())
            .and_then(|s| LabelSelector::from_k8s(&s).map_err(|e| e.to_string()))
        {
            Err(e) => errs.invalid("spec.selector", selector, e),
            Ok(parsed) if parsed.is_empty() => errs.invalid(
                "spec.selector",
                selector,
                format!("empty selector is invalid for {}", kind.to_lowercase()),
            ),
            Ok(parsed) if !parsed.matches_value(template_labels) => errs.invalid(
                "spec.template.metadata.labels",
                template_labels.unwrap_or(&Value::Null),
                "`selector` does not match template `labels`",
            ),
            Ok(_) => {}
        },
    }
    validate_labels(template_labels, "spec.template.metadata.labels", errs);
    validate_pod_spec(spec.pointer("/template/spec"), "spec.template.spec", errs);
}

pub fn validate_workload(kind: &str, obj: &Value, old: Option<&Value>, errs: &mut Errors) {
    let spec = &obj["spec"];
    errs.at_least(spec, "replicas", "spec", 0);
    errs.at_least(spec, "minReadySeconds", "spec", 0);
    errs.at_least(spec, "revisionHistoryLimit", "spec", 0);
    validate_selector_and_template(kind, spec, errs);
    if let Some(policy) = spec
        .pointer("/template/spec/restartPolicy")
        .filter(|p| p.as_str() != Some("Always"))
    {
        errs.not_supported("spec.template.spec.restartPolicy", policy, &["Always"]);
    }
    if old.is_some_and(|old| old["spec"].get("selector") != spec.get("selector")) {
        errs.invalid("spec.selector", &spec["selector"], "field is immutable");
    }
}

pub fn validate_job(obj: &Value, old: Option<&Value>, errs: &mut Errors) {
    let spec = &obj["spec"];
    for field in ["parallelism", "completions", "backoffLimit"] {
        errs.at_least(spec, field, "spec", 0);
    }
    errs.at_least(spec, "activeDeadlineSeconds", "spec", 1);
    errs.at_least(spec, "ttlSecondsAfterFinished", "spec", 0);
    validate_pod_spec(spec.pointer("/template/spec"), "spec.template.spec", errs);
    match spec.pointer("/template/spec/restartPolicy") {
        Some(p) if matches!(p.as_str(), Some("OnFailure" | "Never")) => {}
        Some(p) => errs.not_supported(
            "spec.template.spec.restartPolicy",
            p,
            &["OnFailure", "Never"],
        ),
        None => errs.required("spec.template.spec.restartPolicy", ""),
    }
    if let Some(old) = old
        && old.pointer("/spec/template") != spec.get("template")
    {
        errs.invalid(
            "spec.template",
            &Value::String("core.PodTemplateSpec{...}".into()),
            "field is immutable",
        );
    }
}

pub fn validate_cronjob(obj: &Value, errs: &mut Errors) {
    let spec = &obj["spec"];
    if str_field(spec, "schedule").is_none_or(|s| s.trim().is_empty()) {
        errs.required("spec.schedule", "");
    }
    if let Some(policy) = spec
        .get("concurrencyPolicy")
        .filter(|p| !matches!(p.as_str(), Some("Allow" | "Forbid" | "Replace")))
    {
        errs.not_supported(
            "spec.concurrencyPolicy",
            policy,
            &["Allow", "Forbid", "Replace"],
        );
    }
    errs.at_least(spec, "startingDeadlineSeconds", "spec", 0);
    validate_pod_spec(
        spec.pointer("/jobTemplate/spec/template/spec"),
        "spec.jobTemplate.spec.template.spec",
        errs,
    );
}
