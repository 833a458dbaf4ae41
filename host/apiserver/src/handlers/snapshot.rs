//! `/wasmkube/snapshot`: every object of the cluster at one revision, as the file `wasmkube
//! snapshot save` writes (the store's own format, with a checksum), taken while the API serves.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use wasmkube_store::snapshot::{Snapshot, SnapshotError};

use crate::error::ApiError;
use crate::server::Server;

/// The snapshot's bytes, or a 500 naming what the store refused.
pub async fn take(State(server): State<Arc<Server>>) -> Response {
    match Snapshot::take(server.objects.store().as_ref()).await {
        Ok(snapshot) => {
            tracing::info!(
                revision = snapshot.revision,
                keys = snapshot.kvs.len(),
                "snapshot taken"
            );
            (
                [(http::header::CONTENT_TYPE, "application/octet-stream")],
                snapshot.encode(),
            )
                .into_response()
        }
        Err(SnapshotError::Store(e)) => ApiError::Store(e).into_response(),
        Err(e) => ApiError::Internal(e.to_string()).into_response(),
    }
}
