//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) decoded to their JSON form.

mod schema;
mod wire;

use base64::Engine as _;
use serde_json::{Map, Value};
use wire::{Fields, Payload};

/// The 4 bytes in front of every Kubernetes protobuf body.
const MAGIC: &[u8] = b"k8s\0";
/// Deeper nesting than any real object has (JSONSchemaProps included) is refused, not recursed.
const MAX_DEPTH: usize = 100;
/// Go's zero `time.Time` (0001-01-01T00:00:00Z) in Unix seconds: a `Time` that is not set.
const ZERO_TIME_SECONDS: i64 = -62_135_596_800;

const TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Time";
const MICRO_TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime";
const QUANTITY: &str = "k8s.io.apimachinery.pkg.api.resource.Quantity";
const INT_OR_STRING: &str = "k8s.io.apimachinery.pkg.util.intstr.IntOrString";
const VERBS: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Verbs";
const RAW_EXTENSION: &str = "k8s.io.apimachinery.pkg.runtime.RawExtension";
const FIELDS_V1: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1";
const DELETE_OPTIONS: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const APIEXTENSIONS: &str = "k8s.io.apiextensions-apiserver.pkg.apis.apiextensions.";

#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    #[error("the protobuf body does not start with the Kubernetes magic number \"k8s\\x00\"")]
    Magic,
    #[error("the protobuf body is malformed ({message}): {reason}")]
    Malformed {
        message: &'static str,
        reason: String,
    },
    #[error("the protobuf body has content encoding {0:?}; only unencoded bodies are supported")]
    ContentEncoding(String),
    #[error("no kind \"{kind}\" is registered for version \"{api_version}\" in protobuf")]
    UnknownKind { api_version: String, kind: String },
    #[error("the protobuf body nests messages more than {MAX_DEPTH} deep")]
    TooDeep,
}

/// How a field is encoded; maps are `map<string, _>` (entries with key 1, value 2).
#[derive(Debug, Clone, Copy)]
enum Ty {
    Str,
    Bool,
    I32,
    I64,
    F64,
    Bytes,
    Msg(&'static str),
    MapStr,
    MapBytes,
    MapMsg(&'static str),
}

/// One field of a message: its tag, its JSON name (empty: inlined into the parent) and type.
#[derive(Debug)]
struct Field {
    tag: u32,
    json: &'static str,
    ty: Ty,
    repeated: bool,
}

/// Decodes a protobuf body: the magic, then a `runtime.Unknown` naming the type and holding the
/// object. Returns its apiVersion, kind and the object as Kubernetes would write it in JSON
/// (`apiVersion` and `kind` included).
pub fn decode(body: &[u8]) -> Result<(String, String, Value), ProtobufError> {
    let unknown = body.strip_prefix(MAGIC).ok_or(ProtobufError::Magic)?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for field in Fields::new(unknown) {
        match field.map_err(|reason| malformed("runtime.Unknown", reason))? {
            (1, Payload::Len(type_meta)) => {
                for field in Fields::new(type_meta) {
                    match field.map_err(|reason| malformed("runtime.TypeMeta", reason))? {
                        (1, Payload::Len(s)) => api_version = utf8("runtime.TypeMeta", s)?,
                        (2, Payload::Len(s)) => kind = utf8("runtime.TypeMeta", s)?,
                        _ => {}
                    }
                }
            }
            (2, Payload::Len(bytes)) => raw = bytes,
            (3, Payload::Len(encoding)) if !encoding.is_empty() => {
                let encoding = String::from_utf8_lossy(encoding).into_owned();
                return Err(ProtobufError::ContentEncoding(encoding));
            }
            _ => {}
        }
    }
    let message = message_for(&api_version, &kind).ok_or_else(|| ProtobufError::UnknownKind {
        api_version: api_version.clone(),
        kind: kind.clone(),
    })?;
    let mut object = Map::new();
    object.insert("apiVersion".into(), Value::String(api_version.clone()));
    object.insert("kind".into(), Value::String(kind.clone()));
    if let Value::Object(fields) = decode_message(message, raw, 0)? {
        object.extend(fields);
    }
    Ok((api_version, kind, Value::Object(object)))
}

/// The message of a kind; `DeleteOptions` is registered in every group version.
fn message_for(api_version: &str, kind: &str) -> Option<&'static str> {
    if kind == "DeleteOptions" {
        return Some(DELETE_OPTIONS);
    }
    let i = schema::KINDS
        .binary_search_by(|(v, k, _)| (*v, *k).cmp(&(api_version, kind)))
        .ok()?;
    Some(schema::KINDS[i].2)
}

fn fields_of(message: &str) -> Option<(&'static str, &'static [Field])> {
    let i = schema::MESSAGES
        .binary_search_by(|(name, _)| (*name).cmp(message))
        .ok()?;
    Some(schema::MESSAGES[i])
}

fn malformed(message: &'static str, reason: impl ToString) -> ProtobufError {
    ProtobufError::Malformed {
        message,
        reason: reason.to_string(),
    }
}

fn utf8(message: &'static str, bytes: &[u8]) -> Result<String, ProtobufError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| malformed(message, "string is not UTF-8"))
}

/// Decodes one message to its JSON value: an object, or a string/number/array/boolean for the
/// types with a custom JSON form. `Null` means "not set" (a zero `Time`, an empty `RawExtension`).
fn decode_message(message: &str, bytes: &[u8], depth: usize) -> Result<Value, ProtobufError> {
    if depth > MAX_DEPTH {
        return Err(ProtobufError::TooDeep);
    }
    let (name, fields) = fields_of(message)
        .ok_or_else(|| malformed("schema", format!("no protobuf message {message}")))?;
    if name == RAW_EXTENSION || name == FIELDS_V1 || is_extension(name, "JSON") {
        return raw_json(name, bytes);
    }
    let mut object = Map::new();
    decode_fields(name, fields, bytes, depth, &mut object)?;
    Ok(custom_json(name, object))
}

/// Whether `name` is apiextensions' type `ty` in any version (v1beta1 keeps prost's spelling,
/// `JsonSchemaPropsOrBool`, hence the case-insensitive match).
fn is_extension(name: &str, ty: &str) -> bool {
    name.strip_prefix(APIEXTENSIONS)
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(_, t)| t.eq_ignore_ascii_case(ty))
}

/// `RawExtension`, `FieldsV1` and apiextensions' `JSON`: field 1 holds JSON bytes, embedded as is.
fn raw_json(name: &'static str, bytes: &[u8]) -> Result<Value, ProtobufError> {
    let mut raw: &[u8] = &[];
    for field in Fields::new(bytes) {
        if let (1, Payload::Len(bytes)) = field.map_err(|reason| malformed(name, reason))? {
            raw = bytes;
        }
    }
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(raw).map_err(|e| malformed(name, format!("raw bytes are not JSON: {e}")))
}

/// Rewrites the decoded fields of a type with a custom JSON form into that form.
fn custom_json(name: &str, mut object: Map<String, Value>) -> Value {
    let mut take = |key: &str| object.remove(key).unwrap_or(Value::Null);
    match name {
        TIME | MICRO_TIME => {
            let seconds = take("seconds").as_i64();
            let nanos = take("nanos").as_i64().unwrap_or(0);
            let format = if name == TIME {
                chrono::SecondsFormat::Secs
            } else {
                chrono::SecondsFormat::Micros
            };
            match seconds.filter(|s| *s != ZERO_TIME_SECONDS) {
                None if nanos == 0 => Value::Null,
                seconds => u32::try_from(nanos)
                    .ok()
                    .and_then(|n| chrono::DateTime::from_timestamp(seconds.unwrap_or(0), n))
                    .map_or(Value::Null, |t| {
                        Value::String(t.to_rfc3339_opts(format, true))
                    }),
            }
        }
        QUANTITY => match take("string") {
            Value::Null => Value::String("0".into()),
            s => s,
        },
        INT_OR_STRING => match take("type").as_i64() {
            Some(1) => match take("strVal") {
                Value::Null => Value::String(String::new()),
                s => s,
            },
            _ => match take("intVal") {
                Value::Null => Value::from(0),
                i => i,
            },
        },
        VERBS => match take("items") {
            Value::Null => Value::Array(Vec::new()),
            items => items,
        },
        _ if is_extension(name, "JSONSchemaPropsOrArray") => match take("jSONSchemas") {
            Value::Array(schemas) if !schemas.is_empty() => Value::Array(schemas),
            _ => take("schema"),
        },
        _ if is_extension(name, "JSONSchemaPropsOrBool") => match take("schema") {
            Value::Null => Value::Bool(take("allows").as_bool().unwrap_or(false)),
            schema => schema,
        },
        _ if is_extension(name, "JSONSchemaPropsOrStringArray") => match take("property") {
            Value::Array(property) if !property.is_empty() => Value::Array(property),
            _ => take("schema"),
        },
        _ => Value::Object(object),
    }
}

/// Decodes the fields of message `name` from `bytes` into `object` (inlined messages included).
fn decode_fields(
    name: &'static str,
    fields: &'static [Field],
    bytes: &[u8],
    depth: usize,
    object: &mut Map<String, Value>,
) -> Result<(), ProtobufError> {
    for item in Fields::new(bytes) {
        let (tag, payload) = item.map_err(|reason| malformed(name, reason))?;
        // Fields this schema does not know (newer Kubernetes) are skipped, like Go does.
        let Some(field) = fields.iter().find(|f| f.tag == tag) else {
            continue;
        };
        let at = |reason: &str| malformed(name, format!("field {}: {reason}", json_name(field)));
        match (field.ty, payload) {
            (Ty::Msg(child), Payload::Len(bytes)) if field.json.is_empty() => {
                let (child, child_fields) =
                    fields_of(child).ok_or_else(|| at(&format!("no protobuf message {child}")))?;
                decode_fields(child, child_fields, bytes, depth + 1, object)?;
            }
            (Ty::MapStr | Ty::MapBytes | Ty::MapMsg(_), Payload::Len(bytes)) => {
                let (key, value) = map_entry(name, field, bytes, depth)?;
                let map = object
                    .entry(field.json)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(map) = map {
                    map.insert(key, value);
                }
            }
            (Ty::Bool | Ty::I32 | Ty::I64, Payload::Len(mut packed)) if field.repeated => {
                while !packed.is_empty() {
                    let value = scalar(
                        field.ty,
                        Payload::Varint(wire::varint(&mut packed).map_err(at)?),
                    );
                    push(object, field.json, value.map_err(at)?);
                }
            }
            (_, payload) => {
                let value = match (field.ty, payload) {
                    (Ty::Msg(child), Payload::Len(bytes)) => {
                        decode_message(child, bytes, depth + 1)?
                    }
                    (ty, payload) => scalar(ty, payload).map_err(at)?,
                };
                if field.repeated {
                    push(object, field.json, value);
                } else if !unset(name, field, &value) {
                    object.insert(field.json.into(), value);
                }
            }
        }
    }
    Ok(())
}

fn json_name(field: &Field) -> String {
    if field.json.is_empty() {
        format!("#{} (inline)", field.tag)
    } else {
        field.json.to_string()
    }
}

fn push(object: &mut Map<String, Value>, key: &'static str, value: Value) {
    match object
        .entry(key)
        .or_insert_with(|| Value::Array(Vec::new()))
    {
        Value::Array(items) => items.push(value),
        other => *other = Value::Array(vec![value]),
    }
}

/// Whether a singular value means "not set". Go writes non-pointer fields even when zero; the
/// JSON it would send omits them (`omitempty`), and defaulting here only fills absent fields, so
/// empty strings, zero `Time`s and a zero `targetPort` (the one non-pointer `IntOrString` where 0
/// means "unset") are dropped. Zero numbers and `false` are dropped only for the non-pointer fields
/// in [`GO_ZERO_OMITTED`]: elsewhere they may be pointers, where zero is a value (`replicas: 0`).
fn unset(message: &str, field: &Field, value: &Value) -> bool {
    let zero_omitted = || {
        GO_ZERO_OMITTED
            .iter()
            .any(|(m, fields)| *m == message && fields.contains(&field.json))
    };
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty() && !KEEP_EMPTY.contains(&field.json),
        Value::Number(n) if n.as_i64() == Some(0) => field.json == "targetPort" || zero_omitted(),
        Value::Bool(false) => zero_omitted(),
        _ => false,
    }
}

/// Pointer strings where `""` is a value of its own (`storageClassName: ""`: no dynamic provisioning).
const KEEP_EMPTY: &[&str] = &["storageClassName"];

/// Non-pointer `omitempty` numbers and booleans that client-go writes as 0/`false` in every object
/// kubectl's generators create (`kubectl create deployment`, `... service`, `... job`, ...).
const GO_ZERO_OMITTED: &[(&str, &[&str])] = &[
    (
        "k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        &["generation"],
    ),
    (
        "k8s.io.api.core.v1.Container",
        &["stdin", "stdinOnce", "tty"],
    ),
    (
        "k8s.io.api.core.v1.EphemeralContainerCommon",
        &["stdin", "stdinOnce", "tty"],
    ),
    ("k8s.io.api.core.v1.ContainerPort", &["hostPort"]),
    (
        "k8s.io.api.core.v1.Probe",
        &[
            "initialDelaySeconds",
            "timeoutSeconds",
            "periodSeconds",
            "successThreshold",
            "failureThreshold",
        ],
    ),
    (
        "k8s.io.api.core.v1.PodSpec",
        &["hostNetwork", "hostPID", "hostIPC"],
    ),
    ("k8s.io.api.core.v1.ServicePort", &["nodePort"]),
    (
        "k8s.io.api.core.v1.ServiceSpec",
        &["healthCheckNodePort", "publishNotReadyAddresses"],
    ),
    (
        "k8s.io.api.apps.v1.DeploymentSpec",
        &["minReadySeconds", "paused"],
    ),
    ("k8s.io.api.apps.v1.ReplicaSetSpec", &["minReadySeconds"]),
    ("k8s.io.api.apps.v1.StatefulSetSpec", &["minReadySeconds"]),
    ("k8s.io.api.apps.v1.DaemonSetSpec", &["minReadySeconds"]),
    (
        "k8s.io.api.apps.v1.DeploymentStatus",
        &[
            "observedGeneration",
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
        ],
    ),
    (
        "k8s.io.api.batch.v1.JobStatus",
        &["active", "succeeded", "failed"],
    ),
];

fn map_entry(
    name: &'static str,
    field: &Field,
    bytes: &[u8],
    depth: usize,
) -> Result<(String, Value), ProtobufError> {
    let at = |reason: &str| malformed(name, format!("field {}: {reason}", field.json));
    let (mut key, mut value) = (String::new(), None);
    for item in Fields::new(bytes) {
        match (item.map_err(at)?, field.ty) {
            ((1, Payload::Len(k)), _) => key = utf8(name, k)?,
            ((2, Payload::Len(v)), Ty::MapMsg(child)) => {
                value = Some(decode_message(child, v, depth + 1)?)
            }
            ((2, payload), Ty::MapBytes) => value = Some(scalar(Ty::Bytes, payload).map_err(at)?),
            ((2, payload), _) => value = Some(scalar(Ty::Str, payload).map_err(at)?),
            _ => {}
        }
    }
    let value = match (value, field.ty) {
        (Some(value), _) => value,
        (None, Ty::MapMsg(child)) => decode_message(child, &[], depth + 1)?,
        (None, _) => Value::String(String::new()),
    };
    Ok((key, value))
}

fn scalar(ty: Ty, payload: Payload<'_>) -> Result<Value, &'static str> {
    Ok(match (ty, payload) {
        (Ty::Str, Payload::Len(s)) => Value::String(
            std::str::from_utf8(s)
                .map_err(|_| "string is not UTF-8")?
                .to_owned(),
        ),
        (Ty::Bytes, Payload::Len(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        (Ty::Bool, Payload::Varint(v)) => Value::Bool(v != 0),
        // int32 travels as a sign-extended varint; truncating recovers it.
        (Ty::I32, Payload::Varint(v)) => Value::from(v as i32),
        (Ty::I64, Payload::Varint(v)) => Value::from(v as i64),
        (Ty::F64, Payload::Fixed64(v)) => serde_json::Number::from_f64(f64::from_bits(v))
            .map(Value::Number)
            .ok_or("double is not a finite number")?,
        _ => return Err("wire type does not match the field's type"),
    })
}

#[cfg(test)]
mod tests;
