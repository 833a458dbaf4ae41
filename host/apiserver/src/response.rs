//! Building responses: objects and lists as JSON, or as `meta.k8s.io/v1` Tables when kubectl asks for them.

use axum::response::{IntoResponse, Response};
use chrono::Utc;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Value, json};
use wasmkube_model::resource::ResourceInfo;
use wasmkube_model::table;

/// What the client accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    /// A Table; `include_object` says whether rows carry the full object or only its metadata.
    Table {
        full_object: bool,
    },
}

impl Format {
    pub fn negotiate(headers: &HeaderMap, include_object: Option<&str>) -> Format {
        let accept = headers
            .get(http::header::ACCEPT)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let first = accept.split(',').next().unwrap_or("");
        if first.contains("as=Table") {
            Format::Table {
                full_object: include_object == Some("Object"),
            }
        } else {
            Format::Json
        }
    }
}

/// A JSON response with `Warning` headers.
pub fn json(status: StatusCode, body: &Value, warnings: &[String]) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    for warning in warnings {
        let text = format!("299 - {}", serde_json::Value::String(warning.clone()));
        if let Ok(value) = HeaderValue::from_str(&text) {
            response.headers_mut().append(http::header::WARNING, value);
        }
    }
    response
}

/// The `object` of a Table row.
fn row_object(object: &Value, full_object: bool) -> Value {
    if full_object {
        return object.clone();
    }
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object["metadata"],
    })
}

/// A Table of `objects`.
pub fn table(info: &ResourceInfo, objects: &[Value], list_meta: Value, full_object: bool) -> Value {
    let now = Utc::now();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| json!({"cells": table::row_cells(info, o, now), "object": row_object(o, full_object)}))
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": table::column_definitions(info),
        "rows": rows,
    })
}

/// One object in the requested format.
pub fn object(info: &ResourceInfo, object: Value, format: Format) -> Value {
    match format {
        Format::Json => object,
        Format::Table { full_object } => {
            let rv = object["metadata"]["resourceVersion"].clone();
            table(info, &[object], json!({"resourceVersion": rv}), full_object)
        }
    }
}

/// A list in the requested format.
pub fn list(
    info: &ResourceInfo,
    items: Vec<Value>,
    revision: i64,
    continue_token: Option<String>,
    format: Format,
) -> Value {
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if let Some(token) = continue_token {
        meta["continue"] = json!(token);
    }
    match format {
        Format::Json => json!({
            "kind": format!("{}List", info.kind),
            "apiVersion": info.api_version(),
            "metadata": meta,
            "items": items,
        }),
        Format::Table { full_object } => table(info, &items, meta, full_object),
    }
}
