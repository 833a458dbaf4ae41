//! Watch: a chunked stream of `{"type": ..., "object": ...}` lines from a resourceVersion, with bookmarks.

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use futures::StreamExt;
use serde_json::{Value, json};
use wasmkube_model::resource::ResourceInfo;
use wasmkube_store::{EventKind, WatchItem};

use super::Call;
use super::read::Filter;
use crate::error::ApiError;
use crate::objects::{decode_as, set_resource_version};
use crate::response::{self, Format};

/// How often a quiet watch gets a bookmark.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(5);
/// Watches end after this long unless the client asks for less (clients re-watch).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

fn event(info: &ResourceInfo, kind: &str, object: Value, format: Format) -> Vec<u8> {
    let mut line = serde_json::to_vec(
        &json!({"type": kind, "object": response::object(info, object, format)}),
    )
    .unwrap_or_default();
    line.push(b'\n');
    line
}

pub async fn serve(call: &Call<'_>) -> Result<Response, ApiError> {
    let Call {
        server,
        target,
        query,
        ..
    } = call;
    let info = target.info.clone();
    let mut filter_query = query.clone();
    if let Some(name) = &target.name {
        // Watching one object is a watch of its collection narrowed to that name.
        let by_name = format!("metadata.name={name}");
        filter_query.field_selector = Some(match &query.field_selector {
            Some(f) if !f.is_empty() => format!("{f},{by_name}"),
            _ => by_name,
        });
    }
    let filter = Filter::new(target, &filter_query)?;
    let format = call.format();
    let prefix = info.list_prefix(target.ns());
    // Without a resourceVersion (or "0"), the watch starts with the current objects as ADDED.
    let (initial, start) = match query.revision()? {
        Some(rv) => (Vec::new(), rv + 1),
        None => {
            let page = server
                .objects
                .list(&info, target.ns(), None, None, None, |o| filter.matches(o))
                .await?;
            (page.items, page.revision + 1)
        }
    };
    let stream = server
        .objects
        .store()
        .watch(&prefix, start, BOOKMARK_INTERVAL)
        .await?;
    let bookmarks = query.bookmarks();
    let timeout = query
        .timeout_seconds
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let initial_lines: Vec<Result<Vec<u8>, std::io::Error>> = initial
        .into_iter()
        .map(|o| Ok(event(&info, "ADDED", o, format)))
        .collect();
    let info_for_events = info.clone();
    let metrics = server.metrics.watch_started();
    let changes = stream.filter_map(move |item| {
        let line = match item {
            Ok(WatchItem::Event(e)) => translate(&info_for_events, &filter, e, format),
            Ok(WatchItem::Progress { revision }) if bookmarks => {
                let mut marker = json!({"kind": info_for_events.kind, "apiVersion": info_for_events.api_version(), "metadata": {"annotations": {"k8s.io/initial-events-end": "true"}}});
                set_resource_version(&mut marker, revision);
                let mut line = serde_json::to_vec(&json!({"type": "BOOKMARK", "object": marker})).unwrap_or_default();
                line.push(b'\n');
                Some(line)
            }
            Ok(WatchItem::Progress { .. }) => None,
            Err(e) => {
                let status = ApiError::from(e).status();
                let mut line = serde_json::to_vec(&json!({"type": "ERROR", "object": status})).unwrap_or_default();
                line.push(b'\n');
                Some(line)
            }
        };
        let _keep = &metrics;
        futures::future::ready(line.map(Ok::<_, std::io::Error>))
    });
    let body = futures::stream::iter(initial_lines)
        .chain(changes)
        .take_until(tokio::time::sleep(timeout));
    Response::builder()
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CACHE_CONTROL, "no-cache, private")
        .body(Body::from_stream(body))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// Turns a store event into a watch line, as the selector sees it: an object that stops
/// matching is DELETED, one that starts matching is ADDED.
fn translate(
    info: &ResourceInfo,
    filter: &Filter,
    e: wasmkube_store::Event,
    format: Format,
) -> Option<Vec<u8>> {
    let old = e.prev.as_ref().and_then(|kv| decode_as(info, kv).ok());
    let old_matches = old.as_ref().is_some_and(|o| filter.matches(o));
    match e.kind {
        EventKind::Put => {
            let new = decode_as(info, &e.kv).ok()?;
            match (old_matches, filter.matches(&new)) {
                (false, true) => Some(event(info, "ADDED", new, format)),
                (true, true) => Some(event(info, "MODIFIED", new, format)),
                (true, false) => Some(event(info, "DELETED", new, format)),
                (false, false) => None,
            }
        }
        EventKind::Delete => {
            let mut gone = old.filter(|_| old_matches)?;
            set_resource_version(&mut gone, e.kv.mod_revision);
            Some(event(info, "DELETED", gone, format))
        }
    }
}
