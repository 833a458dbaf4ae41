//! The Swagger 2.0 document as gnostic's `openapi.v2.Document` protobuf, which kubectl fetches.

use serde_json::{Map, Value};

/// Encodes a Swagger 2.0 JSON document (as [`super::v2`] builds it) into the protobuf wire format
/// of gnostic's `openapi.v2.Document` (`OpenAPIv2.proto`), served for
/// `Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`. Vendor extensions,
/// defaults, enums and examples become `Any`s holding the YAML text of their value, as gnostic
/// stores them.
pub fn v2_protobuf(doc: &Value) -> Vec<u8> {
    let Some(doc) = doc.as_object() else {
        return Vec::new();
    };
    let mut out = fields(
        doc,
        &[
            ("swagger", 1, F::Str),
            ("host", 3, F::Str),
            ("basePath", 4, F::Str),
            ("schemes", 5, F::Strs),
            ("consumes", 6, F::Strs),
            ("produces", 7, F::Strs),
            ("externalDocs", 15, F::Docs),
            ("x-", 16, F::Exts),
        ],
    );
    if let Some(info) = doc.get("info").and_then(Value::as_object) {
        out.message(2, info_message(info));
    }
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        let mut message = extensions(paths, 1);
        for (name, item) in paths.iter().filter(|(k, _)| !k.starts_with("x-")) {
            message.message(2, named(name, path_item(item)));
        }
        out.message(8, message);
    }
    if let Some(definitions) = doc.get("definitions").and_then(Value::as_object) {
        out.message(9, named_map(definitions, schema));
    }
    if let Some(parameters) = doc.get("parameters").and_then(Value::as_object) {
        out.message(10, named_map(parameters, parameter));
    }
    if let Some(responses) = doc.get("responses").and_then(Value::as_object) {
        out.message(11, named_map(responses, response));
    }
    for requirement in array(doc.get("security")) {
        out.message(12, security_requirement(requirement));
    }
    if let Some(definitions) = doc.get("securityDefinitions").and_then(Value::as_object) {
        out.message(13, named_map(definitions, security_definition));
    }
    for tag in array(doc.get("tags")).iter().filter_map(Value::as_object) {
        out.message(
            14,
            fields(
                tag,
                &[
                    ("name", 1, F::Str),
                    ("description", 2, F::Str),
                    ("externalDocs", 3, F::Docs),
                    ("x-", 4, F::Exts),
                ],
            ),
        );
    }
    out.0
}

/// How a JSON member maps to a protobuf field.
#[derive(Clone, Copy)]
enum F {
    Str,
    Bool,
    Int,
    Num,
    Strs,
    /// An `Any` with the YAML text of the value.
    Any,
    /// A repeated `Any`, one per array element.
    Anys,
    /// An `ExternalDocs` message.
    Docs,
    /// Every `x-` member as a repeated `NamedAny` (the JSON name in the table is ignored).
    Exts,
    /// A `Schema` message.
    Schema,
}

/// A protobuf message being written.
#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            // Truncation keeps the low seven bits, the continuation bit set.
            self.0.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    fn key(&mut self, field: u32, wire_type: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire_type));
    }

    fn bytes(&mut self, field: u32, bytes: &[u8]) {
        self.key(field, 2);
        self.varint(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
    }

    /// A submessage, written even when empty: its presence matters (`properties: {}`).
    fn message(&mut self, field: u32, message: Writer) {
        self.bytes(field, &message.0);
    }

    fn string(&mut self, field: u32, value: &str) {
        self.bytes(field, value.as_bytes());
    }

    fn uint(&mut self, field: u32, value: u64) {
        self.key(field, 0);
        self.varint(value);
    }

    fn double(&mut self, field: u32, value: f64) {
        self.key(field, 1);
        self.0.extend_from_slice(&value.to_le_bytes());
    }
}

/// Writes the members of `obj` listed in `table` as the fields of one message.
fn fields(obj: &Map<String, Value>, table: &[(&str, u32, F)]) -> Writer {
    let mut out = Writer::default();
    for &(name, field, kind) in table {
        if let F::Exts = kind {
            out.0.extend(extensions(obj, field).0);
            continue;
        }
        let Some(value) = obj.get(name) else {
            continue;
        };
        match kind {
            F::Str => {
                if let Some(s) = value.as_str() {
                    out.string(field, s);
                }
            }
            F::Bool => {
                if let Some(b) = value.as_bool() {
                    out.uint(field, u64::from(b));
                }
            }
            // Negative counts are invalid; they encode as int64 does, two's complement.
            F::Int => {
                if let Some(n) = value.as_i64().or_else(|| value.as_f64().map(|f| f as i64)) {
                    out.uint(field, n as u64);
                }
            }
            F::Num => {
                if let Some(n) = value.as_f64() {
                    out.double(field, n);
                }
            }
            F::Strs => {
                for s in strings(value) {
                    out.string(field, s);
                }
            }
            F::Any => out.message(field, any(value)),
            F::Anys => {
                for item in array(Some(value)) {
                    out.message(field, any(item));
                }
            }
            F::Docs => {
                if let Some(docs) = value.as_object() {
                    let table = [
                        ("description", 1, F::Str),
                        ("url", 2, F::Str),
                        ("x-", 3, F::Exts),
                    ];
                    out.message(field, fields(docs, &table));
                }
            }
            F::Schema => out.message(field, schema(value)),
            // Written above, from every `x-` member.
            F::Exts => {}
        }
    }
    out
}

/// The elements of an array member, none when it is missing or not an array.
fn array(value: Option<&Value>) -> &[Value] {
    value.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// A string, or the strings of an array (`type` may be either).
fn strings(value: &Value) -> impl Iterator<Item = &str> {
    let single = value.as_str();
    array(Some(value))
        .iter()
        .filter_map(Value::as_str)
        .chain(single)
}

/// gnostic's `Any`: the YAML text of a value in field 2.
fn any(value: &Value) -> Writer {
    let mut text = String::new();
    yaml(value, 0, &mut text);
    let mut out = Writer::default();
    out.string(2, &text);
    out
}

/// The `x-` members of `obj` as repeated `NamedAny`s in `field`.
fn extensions(obj: &Map<String, Value>, field: u32) -> Writer {
    let mut out = Writer::default();
    for (name, value) in obj.iter().filter(|(k, _)| k.starts_with("x-")) {
        out.message(field, named(name, any(value)));
    }
    out
}

/// A `Named*` pair: the name in field 1, the value in field 2.
fn named(name: &str, value: Writer) -> Writer {
    let mut out = Writer::default();
    out.string(1, name);
    out.message(2, value);
    out
}

/// A map message (`Definitions`, `Properties`, …): `Named*` pairs in field 1.
fn named_map(map: &Map<String, Value>, encode: fn(&Value) -> Writer) -> Writer {
    let mut out = Writer::default();
    for (name, value) in map {
        out.message(1, named(name, encode(value)));
    }
    out
}

fn info_message(info: &Map<String, Value>) -> Writer {
    let mut out = fields(
        info,
        &[
            ("title", 1, F::Str),
            ("version", 2, F::Str),
            ("description", 3, F::Str),
            ("termsOfService", 4, F::Str),
            ("x-", 7, F::Exts),
        ],
    );
    if let Some(contact) = info.get("contact").and_then(Value::as_object) {
        let table = [
            ("name", 1, F::Str),
            ("url", 2, F::Str),
            ("email", 3, F::Str),
            ("x-", 4, F::Exts),
        ];
        out.message(5, fields(contact, &table));
    }
    if let Some(license) = info.get("license").and_then(Value::as_object) {
        let table = [("name", 1, F::Str), ("url", 2, F::Str), ("x-", 3, F::Exts)];
        out.message(6, fields(license, &table));
    }
    out
}

/// A `Schema` message.
fn schema(value: &Value) -> Writer {
    let Some(obj) = value.as_object() else {
        return Writer::default();
    };
    let mut out = fields(
        obj,
        &[
            ("$ref", 1, F::Str),
            ("format", 2, F::Str),
            ("title", 3, F::Str),
            ("description", 4, F::Str),
            ("default", 5, F::Any),
            ("multipleOf", 6, F::Num),
            ("maximum", 7, F::Num),
            ("exclusiveMaximum", 8, F::Bool),
            ("minimum", 9, F::Num),
            ("exclusiveMinimum", 10, F::Bool),
            ("maxLength", 11, F::Int),
            ("minLength", 12, F::Int),
            ("pattern", 13, F::Str),
            ("maxItems", 14, F::Int),
            ("minItems", 15, F::Int),
            ("uniqueItems", 16, F::Bool),
            ("maxProperties", 17, F::Int),
            ("minProperties", 18, F::Int),
            ("required", 19, F::Strs),
            ("enum", 20, F::Anys),
            ("discriminator", 26, F::Str),
            ("readOnly", 27, F::Bool),
            ("externalDocs", 29, F::Docs),
            ("example", 30, F::Any),
            ("x-", 31, F::Exts),
        ],
    );
    // AdditionalPropertiesItem: a schema (1) or a boolean (2), a oneof, so `false` is written.
    match obj.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            let mut item = Writer::default();
            item.uint(2, u64::from(*b));
            out.message(21, item);
        }
        Some(additional @ Value::Object(_)) => {
            let mut item = Writer::default();
            item.message(1, schema(additional));
            out.message(21, item);
        }
        _ => {}
    }
    if let Some(ty) = obj.get("type") {
        let mut type_item = Writer::default();
        strings(ty).for_each(|s| type_item.string(1, s));
        out.message(22, type_item);
    }
    // ItemsItem: repeated schemas, one for a single `items` schema.
    if let Some(items) = obj.get("items") {
        let mut item = Writer::default();
        match items {
            Value::Array(list) => list.iter().for_each(|s| item.message(1, schema(s))),
            single => item.message(1, schema(single)),
        }
        out.message(23, item);
    }
    for part in array(obj.get("allOf")) {
        out.message(24, schema(part));
    }
    if let Some(properties) = obj.get("properties").and_then(Value::as_object) {
        out.message(25, named_map(properties, schema));
    }
    if let Some(xml) = obj.get("xml").and_then(Value::as_object) {
        let table = [
            ("name", 1, F::Str),
            ("namespace", 2, F::Str),
            ("prefix", 3, F::Str),
            ("attribute", 4, F::Bool),
            ("wrapped", 5, F::Bool),
            ("x-", 6, F::Exts),
        ];
        out.message(28, fields(xml, &table));
    }
    out
}

/// A `PathItem` message.
fn path_item(value: &Value) -> Writer {
    let Some(obj) = value.as_object() else {
        return Writer::default();
    };
    let mut out = fields(obj, &[("$ref", 1, F::Str), ("x-", 10, F::Exts)]);
    let methods = ["get", "put", "post", "delete", "options", "head", "patch"];
    for (field, method) in (2..).zip(methods) {
        if let Some(op) = obj.get(method).and_then(Value::as_object) {
            out.message(field, operation(op));
        }
    }
    for item in array(obj.get("parameters")) {
        out.message(9, parameters_item(item));
    }
    out
}

/// An `Operation` message.
fn operation(op: &Map<String, Value>) -> Writer {
    let mut out = fields(
        op,
        &[
            ("tags", 1, F::Strs),
            ("summary", 2, F::Str),
            ("description", 3, F::Str),
            ("externalDocs", 4, F::Docs),
            ("operationId", 5, F::Str),
            ("produces", 6, F::Strs),
            ("consumes", 7, F::Strs),
            ("schemes", 10, F::Strs),
            ("deprecated", 11, F::Bool),
            ("x-", 13, F::Exts),
        ],
    );
    for item in array(op.get("parameters")) {
        out.message(8, parameters_item(item));
    }
    if let Some(responses) = op.get("responses").and_then(Value::as_object) {
        // Responses: NamedResponseValue pairs (1), extensions (2); a ResponseValue is a
        // Response (1) or a JsonReference (2).
        let mut message = extensions(responses, 2);
        for (code, value) in responses.iter().filter(|(k, _)| !k.starts_with("x-")) {
            let mut response_value = Writer::default();
            match reference(value) {
                Some(json_reference) => response_value.message(2, json_reference),
                None => response_value.message(1, response(value)),
            }
            message.message(1, named(code, response_value));
        }
        out.message(9, message);
    }
    for requirement in array(op.get("security")) {
        out.message(12, security_requirement(requirement));
    }
    out
}

/// A `JsonReference` when `value` is a `$ref` object.
fn reference(value: &Value) -> Option<Writer> {
    let obj = value.as_object()?;
    obj.get("$ref")?;
    Some(fields(
        obj,
        &[("$ref", 1, F::Str), ("description", 2, F::Str)],
    ))
}

/// A `ParametersItem`: a Parameter (1) or a JsonReference (2).
fn parameters_item(value: &Value) -> Writer {
    let mut out = Writer::default();
    match reference(value) {
        Some(json_reference) => out.message(2, json_reference),
        None => out.message(1, parameter(value)),
    }
    out
}

/// A `Parameter`: a BodyParameter (1) or a NonBodyParameter (2), itself a header (1), formData
/// (2), query (3) or path (4) sub-schema.
fn parameter(value: &Value) -> Writer {
    let mut out = Writer::default();
    let Some(obj) = value.as_object() else {
        return out;
    };
    let common = [
        ("required", 1, F::Bool),
        ("in", 2, F::Str),
        ("description", 3, F::Str),
        ("name", 4, F::Str),
    ];
    let location = obj.get("in").and_then(Value::as_str).unwrap_or_default();
    let (variant, base) = match location {
        "body" => {
            let table = [
                ("description", 1, F::Str),
                ("name", 2, F::Str),
                ("in", 3, F::Str),
                ("required", 4, F::Bool),
                ("schema", 5, F::Schema),
                ("x-", 6, F::Exts),
            ];
            out.message(1, fields(obj, &table));
            return out;
        }
        "header" => (1, 5),
        "formData" => (2, 6),
        "query" => (3, 6),
        _ => (4, 5),
    };
    let mut sub = fields(obj, &common);
    if base == 6 {
        sub.0
            .extend(fields(obj, &[("allowEmptyValue", 5, F::Bool)]).0);
    }
    sub.0.extend(primitive(obj, base, base + 17).0);
    let mut non_body = Writer::default();
    non_body.message(variant, sub);
    out.message(2, non_body);
    out
}

/// The fields a `PrimitivesItems` shares with the non-body parameter sub-schemas and `Header`,
/// numbered from `base` (`type`), with extensions in `extensions_field`.
fn primitive(obj: &Map<String, Value>, base: u32, extensions_field: u32) -> Writer {
    let mut out = fields(
        obj,
        &[
            ("type", base, F::Str),
            ("format", base + 1, F::Str),
            ("collectionFormat", base + 3, F::Str),
            ("default", base + 4, F::Any),
            ("maximum", base + 5, F::Num),
            ("exclusiveMaximum", base + 6, F::Bool),
            ("minimum", base + 7, F::Num),
            ("exclusiveMinimum", base + 8, F::Bool),
            ("maxLength", base + 9, F::Int),
            ("minLength", base + 10, F::Int),
            ("pattern", base + 11, F::Str),
            ("maxItems", base + 12, F::Int),
            ("minItems", base + 13, F::Int),
            ("uniqueItems", base + 14, F::Bool),
            ("enum", base + 15, F::Anys),
            ("multipleOf", base + 16, F::Num),
            ("x-", extensions_field, F::Exts),
        ],
    );
    if let Some(items) = obj.get("items").and_then(Value::as_object) {
        out.message(base + 2, primitive(items, 1, 18));
    }
    out
}

/// A `Response` message.
fn response(value: &Value) -> Writer {
    let Some(obj) = value.as_object() else {
        return Writer::default();
    };
    let mut out = fields(obj, &[("description", 1, F::Str), ("x-", 5, F::Exts)]);
    // SchemaItem: a Schema (1); file schemas (2) have no place in the Kubernetes API.
    if let Some(body) = obj.get("schema") {
        let mut item = Writer::default();
        item.message(1, schema(body));
        out.message(2, item);
    }
    if let Some(headers) = obj.get("headers").and_then(Value::as_object) {
        out.message(3, named_map(headers, header));
    }
    if let Some(examples) = obj.get("examples").and_then(Value::as_object) {
        out.message(4, named_map(examples, any));
    }
    out
}

/// A `Header` message: the primitive fields, then `description` (18) and extensions (19).
fn header(value: &Value) -> Writer {
    let Some(obj) = value.as_object() else {
        return Writer::default();
    };
    let mut out = primitive(obj, 1, 19);
    out.0.extend(fields(obj, &[("description", 18, F::Str)]).0);
    out
}

/// A `SecurityRequirement`: `NamedStringArray` pairs, each a `StringArray` of scopes.
fn security_requirement(value: &Value) -> Writer {
    let mut out = Writer::default();
    for (name, scopes) in value.as_object().into_iter().flatten() {
        let mut list = Writer::default();
        strings(scopes).for_each(|s| list.string(1, s));
        out.message(1, named(name, list));
    }
    out
}

/// A `SecurityDefinitionsItem`: basic (1) or API key (2) authentication; the OAuth2 flows have no
/// place in the Kubernetes API and are left empty.
fn security_definition(value: &Value) -> Writer {
    let mut out = Writer::default();
    let Some(obj) = value.as_object() else {
        return out;
    };
    match obj.get("type").and_then(Value::as_str) {
        Some("basic") => {
            let table = [
                ("type", 1, F::Str),
                ("description", 2, F::Str),
                ("x-", 3, F::Exts),
            ];
            out.message(1, fields(obj, &table));
        }
        Some("apiKey") => {
            let table = [
                ("type", 1, F::Str),
                ("name", 2, F::Str),
                ("in", 3, F::Str),
                ("description", 4, F::Str),
                ("x-", 5, F::Exts),
            ];
            out.message(2, fields(obj, &table));
        }
        _ => {}
    }
    out
}

/// Writes `value` as block YAML at column `indent`; the caller has written the first line's
/// indentation (or a `- ` marker).
fn yaml(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (i, (key, child)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(&" ".repeat(indent));
                }
                yaml_string(key, out);
                out.push(':');
                match child {
                    Value::Object(m) if !m.is_empty() => {
                        out.push('\n');
                        out.push_str(&" ".repeat(indent + 2));
                        yaml(child, indent + 2, out);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push('\n');
                        out.push_str(&" ".repeat(indent));
                        yaml(child, indent, out);
                    }
                    _ => {
                        out.push(' ');
                        yaml(child, indent, out);
                    }
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&" ".repeat(indent));
                }
                out.push_str("- ");
                yaml(item, indent + 2, out);
            }
        }
        Value::Object(_) => out.push_str("{}\n"),
        Value::Array(_) => out.push_str("[]\n"),
        Value::String(s) => {
            yaml_string(s, out);
            out.push('\n');
        }
        // Null, booleans and numbers read the same in YAML.
        scalar => {
            out.push_str(&scalar.to_string());
            out.push('\n');
        }
    }
}

/// A YAML string: plain when it cannot read as anything else, else double-quoted (JSON's escapes
/// are valid in YAML double-quoted scalars).
fn yaml_string(s: &str, out: &mut String) {
    const RESERVED: [&str; 9] = ["y", "n", "yes", "no", "on", "off", "true", "false", "null"];
    let plain = s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && !RESERVED.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        out.push_str(s);
    } else {
        out.push_str(&Value::String(s.to_owned()).to_string());
    }
}

#[cfg(test)]
mod tests {
    //! Decodes the output with prost mirrors of the gnostic messages kube-openapi reads.

    use super::*;
    use crate::openapi::v2;
    use crate::resource::{Registry, builtins};
    use prost::Message;

    #[derive(Clone, PartialEq, Message)]
    struct Document {
        #[prost(string, tag = "1")]
        swagger: String,
        #[prost(message, optional, tag = "2")]
        info: Option<Info>,
        #[prost(message, optional, tag = "8")]
        paths: Option<Paths>,
        #[prost(message, optional, tag = "9")]
        definitions: Option<Properties>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct Info {
        #[prost(string, tag = "1")]
        title: String,
        #[prost(string, tag = "2")]
        version: String,
    }

    #[derive(Clone, PartialEq, Message)]
    struct Paths {
        #[prost(message, repeated, tag = "2")]
        path: Vec<NamedPathItem>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct NamedPathItem {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(message, optional, tag = "2")]
        value: Option<PathItem>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct PathItem {
        #[prost(message, optional, tag = "2")]
        get: Option<Operation>,
        #[prost(message, optional, tag = "8")]
        patch: Option<Operation>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct Operation {
        #[prost(string, tag = "5")]
        operation_id: String,
        #[prost(string, repeated, tag = "7")]
        consumes: Vec<String>,
        #[prost(message, repeated, tag = "8")]
        parameters: Vec<ParametersItem>,
        #[prost(message, optional, tag = "9")]
        responses: Option<Responses>,
        #[prost(message, repeated, tag = "13")]
        vendor_extension: Vec<NamedAny>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct ParametersItem {
        #[prost(message, optional, tag = "1")]
        parameter: Option<Parameter>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct Parameter {
        #[prost(message, optional, tag = "1")]
        body_parameter: Option<BodyParameter>,
        #[prost(message, optional, tag = "2")]
        non_body_parameter: Option<NonBodyParameter>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct BodyParameter {
        #[prost(string, tag = "2")]
        name: String,
        #[prost(string, tag = "3")]
        r#in: String,
        #[prost(bool, tag = "4")]
        required: bool,
        #[prost(message, optional, tag = "5")]
        schema: Option<Schema>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct NonBodyParameter {
        #[prost(message, optional, tag = "3")]
        query: Option<QueryParameterSubSchema>,
        #[prost(message, optional, tag = "4")]
        path: Option<PathParameterSubSchema>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct QueryParameterSubSchema {
        #[prost(string, tag = "2")]
        r#in: String,
        #[prost(string, tag = "3")]
        description: String,
        #[prost(string, tag = "4")]
        name: String,
        #[prost(string, tag = "6")]
        r#type: String,
        #[prost(bool, tag = "20")]
        unique_items: bool,
    }

    #[derive(Clone, PartialEq, Message)]
    struct PathParameterSubSchema {
        #[prost(bool, tag = "1")]
        required: bool,
        #[prost(string, tag = "4")]
        name: String,
        #[prost(string, tag = "5")]
        r#type: String,
        #[prost(bool, tag = "19")]
        unique_items: bool,
    }

    #[derive(Clone, PartialEq, Message)]
    struct Responses {
        #[prost(message, repeated, tag = "1")]
        response_code: Vec<NamedResponseValue>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct NamedResponseValue {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(message, optional, tag = "2")]
        value: Option<ResponseValue>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct ResponseValue {
        #[prost(message, optional, tag = "1")]
        response: Option<Response>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct Response {
        #[prost(string, tag = "1")]
        description: String,
        #[prost(message, optional, tag = "2")]
        schema: Option<SchemaItem>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct SchemaItem {
        #[prost(message, optional, tag = "1")]
        schema: Option<Schema>,
    }

    /// `Definitions` and `Properties` alike.
    #[derive(Clone, PartialEq, Message)]
    struct Properties {
        #[prost(message, repeated, tag = "1")]
        additional_properties: Vec<NamedSchema>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct NamedSchema {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(message, optional, tag = "2")]
        value: Option<Schema>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct Schema {
        #[prost(string, tag = "1")]
        xref: String,
        #[prost(string, tag = "2")]
        format: String,
        #[prost(string, tag = "4")]
        description: String,
        #[prost(message, optional, tag = "5")]
        default: Option<Any>,
        #[prost(string, repeated, tag = "19")]
        required: Vec<String>,
        #[prost(message, repeated, tag = "20")]
        r#enum: Vec<Any>,
        #[prost(message, optional, boxed, tag = "21")]
        additional_properties: Option<Box<AdditionalPropertiesItem>>,
        #[prost(message, optional, tag = "22")]
        r#type: Option<TypeItem>,
        #[prost(message, optional, tag = "23")]
        items: Option<ItemsItem>,
        #[prost(message, repeated, tag = "24")]
        all_of: Vec<Schema>,
        #[prost(message, optional, tag = "25")]
        properties: Option<Properties>,
        #[prost(message, repeated, tag = "31")]
        vendor_extension: Vec<NamedAny>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct AdditionalPropertiesItem {
        #[prost(message, optional, tag = "1")]
        schema: Option<Schema>,
        #[prost(bool, optional, tag = "2")]
        boolean: Option<bool>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct TypeItem {
        #[prost(string, repeated, tag = "1")]
        value: Vec<String>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct ItemsItem {
        #[prost(message, repeated, tag = "1")]
        schema: Vec<Schema>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct NamedAny {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(message, optional, tag = "2")]
        value: Option<Any>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct Any {
        #[prost(string, tag = "2")]
        yaml: String,
    }

    fn decode(doc: &Value) -> Document {
        Document::decode(v2_protobuf(doc).as_slice()).expect("a valid openapi.v2.Document")
    }

    fn named<'a>(list: &'a [NamedSchema], name: &str) -> &'a Schema {
        list.iter()
            .find(|n| n.name == name)
            .and_then(|n| n.value.as_ref())
            .unwrap_or_else(|| panic!("{name}"))
    }

    fn property<'a>(schema: &'a Schema, name: &str) -> &'a Schema {
        named(
            &schema
                .properties
                .as_ref()
                .expect("properties")
                .additional_properties,
            name,
        )
    }

    fn extension<'a>(list: &'a [NamedAny], name: &str) -> &'a str {
        list.iter()
            .find(|n| n.name == name)
            .and_then(|n| n.value.as_ref())
            .map(|any| any.yaml.as_str())
            .unwrap_or_else(|| panic!("{name}"))
    }

    fn types(schema: &Schema) -> Vec<&str> {
        schema
            .r#type
            .iter()
            .flat_map(|t| &t.value)
            .map(String::as_str)
            .collect()
    }

    /// Checks what kube-openapi's `ParseSchema` reads against the JSON schema, recursively.
    fn same(json: &Value, schema: &Schema, path: &str) {
        let text = |key: &str| json[key].as_str().unwrap_or_default().to_owned();
        assert_eq!(schema.xref, text("$ref"), "{path} $ref");
        assert_eq!(
            schema.description,
            text("description"),
            "{path} description"
        );
        assert_eq!(schema.format, text("format"), "{path} format");
        let json_type: Vec<&str> = json["type"].as_str().into_iter().collect();
        assert_eq!(types(schema), json_type, "{path} type");
        let required: Vec<&str> = array(json.get("required"))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(schema.required, required, "{path} required");
        let json_extensions: Vec<&String> = json
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with("x-"))
            .collect();
        let extensions: Vec<&String> = schema.vendor_extension.iter().map(|n| &n.name).collect();
        assert_eq!(extensions, json_extensions, "{path} extensions");
        match (
            json.get("properties").and_then(Value::as_object),
            &schema.properties,
        ) {
            (Some(json_properties), Some(properties)) => {
                let names: Vec<&String> = properties
                    .additional_properties
                    .iter()
                    .map(|n| &n.name)
                    .collect();
                assert_eq!(
                    names,
                    json_properties.keys().collect::<Vec<_>>(),
                    "{path} properties"
                );
                for (name, json_property) in json_properties {
                    same(
                        json_property,
                        property(schema, name),
                        &format!("{path}.{name}"),
                    );
                }
            }
            (None, None) => {}
            _ => panic!("{path} properties"),
        }
        match (json.get("items"), &schema.items) {
            (Some(json_items), Some(items)) => {
                assert_eq!(items.schema.len(), 1, "{path} items");
                same(json_items, &items.schema[0], &format!("{path}[]"));
            }
            (None, None) => {}
            _ => panic!("{path} items"),
        }
        let additional = schema.additional_properties.as_deref();
        match (json.get("additionalProperties"), additional) {
            (Some(Value::Bool(b)), Some(item)) => assert_eq!(item.boolean, Some(*b), "{path}"),
            (Some(json_additional), Some(item)) => {
                let sub = item.schema.as_ref().expect("additionalProperties schema");
                same(json_additional, sub, &format!("{path}{{}}"));
            }
            (None, None) => {}
            _ => panic!("{path} additionalProperties"),
        }
        assert_eq!(
            schema.all_of.len(),
            array(json.get("allOf")).len(),
            "{path} allOf"
        );
    }

    #[test]
    fn every_definition_reads_back_as_in_json() {
        let json = v2(&Registry::new(builtins()));
        let doc = decode(&json);
        assert_eq!(doc.swagger, "2.0");
        let info = doc.info.expect("info");
        assert_eq!(
            (info.title.as_str(), info.version.as_str()),
            ("Kubernetes", "v1.32.0")
        );
        let definitions = doc.definitions.expect("definitions").additional_properties;
        let json_definitions = json["definitions"].as_object().expect("definitions");
        assert_eq!(definitions.len(), json_definitions.len());
        for (name, json_schema) in json_definitions {
            same(json_schema, named(&definitions, name), name);
        }
    }

    #[test]
    fn deployment_reads_as_kubectl_needs_it() {
        let doc = decode(&v2(&Registry::new(builtins())));
        let definitions = doc.definitions.expect("definitions").additional_properties;
        let deployment = named(&definitions, "io.k8s.api.apps.v1.Deployment");
        let gvk = extension(
            &deployment.vendor_extension,
            "x-kubernetes-group-version-kind",
        );
        assert!(gvk.starts_with("- "), "{gvk}");
        assert!(gvk.contains("kind: Deployment\n"), "{gvk}");
        assert!(gvk.contains("group: apps\n"), "{gvk}");
        assert!(gvk.contains("version: v1\n"), "{gvk}");
        let spec = property(deployment, "spec");
        let spec_ref = "#/definitions/io.k8s.api.apps.v1.DeploymentSpec";
        assert!(spec.xref == spec_ref || spec.all_of.iter().any(|s| s.xref == spec_ref));
        let replicas = property(
            named(&definitions, "io.k8s.api.apps.v1.DeploymentSpec"),
            "replicas",
        );
        assert_eq!(types(replicas), ["integer"]);
        assert_eq!(replicas.format, "int32");
        assert!(!replicas.description.is_empty());
        let pod_spec = named(&definitions, "io.k8s.api.core.v1.PodSpec");
        let containers = property(pod_spec, "containers");
        assert_eq!(types(containers), ["array"]);
        let items = &containers.items.as_ref().expect("items").schema;
        assert_eq!(items[0].xref, "#/definitions/io.k8s.api.core.v1.Container");
        assert_eq!(
            extension(&containers.vendor_extension, "x-kubernetes-patch-merge-key"),
            "name\n"
        );
        assert_eq!(
            extension(&containers.vendor_extension, "x-kubernetes-patch-strategy"),
            "merge\n"
        );
        assert!(pod_spec.required.contains(&"containers".to_owned()));
    }

    #[test]
    fn deployment_patch_has_field_validation() {
        let doc = decode(&v2(&Registry::new(builtins())));
        let paths = doc.paths.expect("paths").path;
        let item = paths
            .iter()
            .find(|p| p.name == "/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
            .and_then(|p| p.value.as_ref())
            .expect("deployment path");
        let patch = item.patch.as_ref().expect("patch");
        assert!(
            patch
                .consumes
                .iter()
                .any(|c| c == "application/strategic-merge-patch+json")
        );
        let gvk = extension(&patch.vendor_extension, "x-kubernetes-group-version-kind");
        assert!(gvk.contains("kind: Deployment\n"), "{gvk}");
        let parameters: Vec<&Parameter> = patch
            .parameters
            .iter()
            .filter_map(|p| p.parameter.as_ref())
            .collect();
        let queries: Vec<&QueryParameterSubSchema> = parameters
            .iter()
            .filter_map(|p| p.non_body_parameter.as_ref()?.query.as_ref())
            .collect();
        let field_validation = queries
            .iter()
            .find(|q| q.name == "fieldValidation")
            .expect("fieldValidation");
        assert_eq!(
            (
                field_validation.r#in.as_str(),
                field_validation.r#type.as_str()
            ),
            ("query", "string")
        );
        assert!(field_validation.unique_items && !field_validation.description.is_empty());
        let path_names: Vec<&PathParameterSubSchema> = parameters
            .iter()
            .filter_map(|p| p.non_body_parameter.as_ref()?.path.as_ref())
            .collect();
        assert!(
            path_names
                .iter()
                .any(|p| p.name == "name" && p.required && p.r#type == "string")
        );
        let body = parameters
            .iter()
            .find_map(|p| p.body_parameter.as_ref())
            .expect("body");
        assert_eq!(
            (body.name.as_str(), body.r#in.as_str(), body.required),
            ("body", "body", true)
        );
        let ok = &patch.responses.as_ref().expect("responses").response_code;
        let ok = ok
            .iter()
            .find(|r| r.name == "200")
            .and_then(|r| r.value.as_ref()?.response.as_ref())
            .expect("200");
        assert_eq!(ok.description, "OK");
        let schema = ok
            .schema
            .as_ref()
            .and_then(|s| s.schema.as_ref())
            .expect("schema");
        assert_eq!(schema.xref, "#/definitions/io.k8s.api.apps.v1.Deployment");
        assert!(item.get.is_some());
    }

    #[test]
    fn schema_keywords_round_trip() {
        let json = serde_json::json!({"definitions": {"T": {
            "type": "object",
            "default": {"a": [1, "on"], "b": {}},
            "enum": ["x", ""],
            "additionalProperties": false,
            "properties": {
                "m": {"type": "object", "additionalProperties": {"type": "string"}},
                "e": {"type": "object", "properties": {}},
            },
        }}});
        let doc = decode(&json);
        let definitions = doc.definitions.expect("definitions").additional_properties;
        let t = named(&definitions, "T");
        same(&json["definitions"]["T"], t, "T");
        assert_eq!(
            t.default.as_ref().map(|d| d.yaml.as_str()),
            Some("a:\n- 1\n- \"on\"\nb: {}\n")
        );
        let enums: Vec<&str> = t.r#enum.iter().map(|a| a.yaml.as_str()).collect();
        assert_eq!(enums, ["x\n", "\"\"\n"]);
        // An empty `properties` is present, so kube-openapi parses a kind, not a map.
        assert!(property(t, "e").properties.is_some());
    }

    #[test]
    fn yaml_is_block_style_and_quotes_what_would_read_otherwise() {
        let mut out = String::new();
        let value = serde_json::json!([{"group": "apps", "list": [["a"], {"k": "multi\nline"}], "n": null, "t": "true"}]);
        yaml(&value, 0, &mut out);
        let expected = "- group: apps\n  list:\n  - - a\n  - k: \"multi\\nline\"\n  \"n\": null\n  t: \"true\"\n";
        assert_eq!(out, expected);
    }
}
