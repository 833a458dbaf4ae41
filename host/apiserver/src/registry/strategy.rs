//! What happens to an object between the decoded body and the store: type checks, pruning, defaulting, metadata, validation.

use rand::Rng;
use serde_json::{Value, json};
use wasmkube_model::meta::{ResourceExt, now};
use wasmkube_model::names::CRD_CLEANUP;
use wasmkube_model::resource::ResourceInfo;
use wasmkube_model::{apply, defaults, patch, schema, typed, validation};

use crate::error::ApiError;

/// Checks `apiVersion`/`kind` against the endpoint, fills them in when missing.
fn check_type(info: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    let api_version = info.api_version();
    for (field, want) in [
        ("apiVersion", api_version.as_str()),
        ("kind", info.kind.as_str()),
    ] {
        match obj.get(field).and_then(Value::as_str) {
            None | Some("") => obj[field] = json!(want),
            Some(got) if got == want => {}
            Some(got) => {
                let label = if field == "kind" {
                    "kind"
                } else {
                    "API version"
                };
                return Err(ApiError::BadRequest(format!(
                    "the {label} in the data ({got}) does not match the expected {label} ({want})"
                )));
            }
        }
    }
    if !obj.get("metadata").is_none_or(Value::is_object) {
        return Err(ApiError::BadRequest("metadata must be an object".into()));
    }
    if obj.get("metadata").is_none() {
        obj["metadata"] = json!({});
    }
    Ok(())
}

/// Brings a body into the form the server stores: built-in kinds round-trip through their types,
/// custom resources are pruned to (and defaulted by) their CRD's structural schema. Unknown fields
/// fail under `Strict` and come back as warnings under `Warn`.
fn decode(
    info: &ResourceInfo,
    obj: &mut Value,
    validation: &str,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    let unknown_fields =
        if let Some(decoded) = typed::decode(&info.group, &info.version, &info.kind, obj) {
            let decoded = decoded.map_err(|e| ApiError::BadRequest(e.to_string()))?;
            *obj = decoded.object;
            decoded.unknown_fields
        } else if let Some(structural) = &info.schema {
            schema::prune_and_default(structural, obj)
        } else {
            Vec::new()
        };
    if unknown_fields.is_empty() {
        return Ok(());
    }
    let fields: Vec<String> = unknown_fields
        .iter()
        .map(|f| format!("unknown field {f:?}"))
        .collect();
    match validation {
        "Strict" => Err(ApiError::BadRequest(format!(
            "{} in version {:?} cannot be handled as a {}: strict decoding error: {}",
            info.kind,
            info.version,
            info.kind,
            fields.join(", ")
        ))),
        "Warn" => {
            warnings.extend(fields);
            Ok(())
        }
        _ => Ok(()),
    }
}

fn meta(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata was just made an object")
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn check_valid(info: &ResourceInfo, obj: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let errors = validation::validate(info, obj, old);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(info, obj.name(), errors))
    }
}

/// Kinds whose status a client may set on create.
fn keeps_status_on_create(info: &ResourceInfo) -> bool {
    matches!(
        info.kind.as_str(),
        "Node" | "Namespace" | "PersistentVolume" | "PersistentVolumeClaim"
    ) && info.group.is_empty()
}

/// Makes a create body into the object to store. Returns the object's name.
pub fn prepare_create(
    info: &ResourceInfo,
    ns: Option<&str>,
    obj: &mut Value,
    validation: &str,
    manager: Option<&str>,
    warnings: &mut Vec<String>,
) -> Result<String, ApiError> {
    check_type(info, obj)?;
    decode(info, obj, validation, warnings)?;
    let m = meta(obj);
    match (
        info.namespaced,
        ns,
        m.get("namespace").and_then(Value::as_str),
    ) {
        (true, Some(url), Some(body)) if !body.is_empty() && body != url => {
            return Err(ApiError::BadRequest("the namespace of the provided object does not match the namespace sent on the request".into()));
        }
        (true, Some(url), _) => {
            m.insert("namespace".into(), json!(url));
        }
        (true, None, _) => {
            return Err(ApiError::BadRequest(
                "the namespace of the object must be set in the request path".into(),
            ));
        }
        (false, _, _) => {
            m.remove("namespace");
        }
    }
    if m.get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
        && let Some(prefix) = m
            .get("generateName")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
    {
        let name = format!("{prefix}{}", random_suffix());
        m.insert("name".into(), json!(name));
    }
    m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    m.insert("creationTimestamp".into(), json!(now()));
    m.insert("generation".into(), json!(1));
    for field in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        m.remove(field);
    }
    if info.status
        && !keeps_status_on_create(info)
        && let Some(o) = obj.as_object_mut()
    {
        o.remove("status");
    }
    if !info.custom {
        defaults::apply_defaults(&info.group, &info.kind, obj);
    }
    initial_status(info, obj);
    record_manager(info, None, obj, manager);
    check_valid(info, obj, None)?;
    Ok(obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// Gives the fields this write changed to `manager` in `metadata.managedFields`.
fn record_manager(
    info: &ResourceInfo,
    old: Option<&Value>,
    obj: &mut Value,
    manager: Option<&str>,
) {
    if let Some(manager) = manager {
        let schema = patch::schema_for(&info.group, &info.kind).filter(|_| !info.custom);
        *obj = apply::record_update(old, obj, manager, &now(), schema);
    }
}

/// Status the server itself sets on creation.
fn initial_status(info: &ResourceInfo, obj: &mut Value) {
    match (info.group.as_str(), info.kind.as_str()) {
        ("", "Pod") => obj["status"] = json!({"phase": "Pending", "qosClass": qos_class(obj)}),
        ("batch", "Job") if obj["spec"]["manualSelector"] != true => generate_job_selector(obj),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            obj["metadata"]["finalizers"] = json!([CRD_CLEANUP]);
            let names = obj["spec"]["names"].clone();
            let now = now();
            obj["status"] = json!({
                "acceptedNames": names,
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
                ],
                "storedVersions": obj["spec"]["versions"].as_array().into_iter().flatten().filter(|v| v["storage"] == true).map(|v| v["name"].clone()).collect::<Vec<_>>(),
            });
        }
        _ => {}
    }
}

/// A Job selects its pods by its uid, and labels its pod template to match (as Kubernetes does
/// unless `manualSelector` is set).
fn generate_job_selector(job: &mut Value) {
    let uid = job["metadata"]["uid"].clone();
    let name = job["metadata"]["name"].clone();
    job["spec"]["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    let template = &mut job["spec"]["template"];
    if !template["metadata"].is_object() {
        template["metadata"] = json!({});
    }
    if !template["metadata"]["labels"].is_object() {
        template["metadata"]["labels"] = json!({});
    }
    if let Some(labels) = template["metadata"]["labels"].as_object_mut() {
        for (key, value) in [
            ("batch.kubernetes.io/controller-uid", &uid),
            ("batch.kubernetes.io/job-name", &name),
            ("controller-uid", &uid),
            ("job-name", &name),
        ] {
            labels.insert(key.into(), value.clone());
        }
    }
}

/// Guaranteed when every container has equal cpu and memory requests and limits, BestEffort when none has any.
fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .flat_map(|f| pod["spec"][f].as_array().into_iter().flatten())
        .collect();
    let any = containers.iter().any(|c| {
        c["resources"]["requests"]
            .as_object()
            .is_some_and(|r| !r.is_empty())
            || c["resources"]["limits"]
                .as_object()
                .is_some_and(|l| !l.is_empty())
    });
    if !any {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let limit = &c["resources"]["limits"][r];
            !limit.is_null()
                && (c["resources"]["requests"][r].is_null()
                    || &c["resources"]["requests"][r] == limit)
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Makes an update body (or a patched object) into the object to store in place of `old`.
/// `subresource` is `Some("status")` for status writes, `Some("binding")` for a pod's binding
/// (which sets `spec.nodeName` and the `PodScheduled` condition in one write).
pub fn prepare_update(
    info: &ResourceInfo,
    old: &Value,
    obj: &mut Value,
    subresource: Option<&str>,
    validation: &str,
    manager: Option<&str>,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    check_type(info, obj)?;
    decode(info, obj, validation, warnings)?;
    let old_meta = old["metadata"].clone();
    let m = meta(obj);
    for field in [
        "uid",
        "creationTimestamp",
        "namespace",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old_meta.get(field) {
            Some(v) => m.insert(field.into(), v.clone()),
            None => m.remove(field),
        };
    }
    if m.get("name") != old_meta.get("name") {
        return Err(ApiError::BadRequest(
            "the name of the object does not match the name on the URL".into(),
        ));
    }
    if matches!(subresource, Some("status" | "approval")) {
        // A status (or CSR approval) write changes only status (and may not touch spec or metadata but for these).
        let status = obj.get("status").cloned();
        let mut merged = old.clone();
        match status {
            Some(s) => merged["status"] = s,
            None => {
                merged.as_object_mut().map(|o| o.remove("status"));
            }
        }
        merged["metadata"]["resourceVersion"] = obj["metadata"]["resourceVersion"].clone();
        *obj = merged;
    } else if info.status && subresource != Some("binding") {
        match old.get("status") {
            Some(s) => obj["status"] = s.clone(),
            None => {
                obj.as_object_mut().map(|o| o.remove("status"));
            }
        }
    }
    if !info.custom {
        defaults::apply_defaults(&info.group, &info.kind, obj);
    }
    if spec_changed(old, obj) {
        let generation = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        obj["metadata"]["generation"] = json!(generation + 1);
    }
    record_manager(info, Some(old), obj, manager);
    check_valid(info, obj, Some(old))
}

/// Whether anything but metadata and status differs (the spec, for kinds that have one).
fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| -> Value {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("metadata");
            o.remove("status");
        }
        v
    };
    strip(old) != strip(new)
}

/// Whether two versions of an object differ in anything a client could have meant to change
/// (ignoring resourceVersion and managed-field timestamps).
pub fn differs(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| -> Value {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            if let Some(Value::Array(fields)) = m.get_mut("managedFields") {
                fields.iter_mut().for_each(|f| {
                    f.as_object_mut().map(|f| f.remove("time"));
                });
            }
        }
        v
    };
    strip(old) != strip(new)
}
