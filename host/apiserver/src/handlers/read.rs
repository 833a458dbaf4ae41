//! get and list, with label and field selectors, pagination and Table output.

use axum::response::Response;
use http::StatusCode;
use serde_json::Value;
use wasmkube_model::meta::ResourceExt;
use wasmkube_model::selector::{FieldSelector, LabelSelector};

use super::Call;
use crate::error::ApiError;
use crate::request::{Query, Target};
use crate::response::{self};

/// The label and field selectors of a request, checked against the kind.
pub struct Filter {
    labels: Option<LabelSelector>,
    fields: Option<FieldSelector>,
    kind: String,
}

impl Filter {
    pub fn new(target: &Target, query: &Query) -> Result<Filter, ApiError> {
        let labels = query
            .label_selector
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                LabelSelector::parse(s)
                    .map_err(|e| ApiError::BadRequest(format!("unable to parse requirement: {e}")))
            })
            .transpose()?;
        let kind = if target.info.custom {
            String::new()
        } else {
            target.info.kind.clone()
        };
        let fields = query
            .field_selector
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                let selector =
                    FieldSelector::parse(s).map_err(|e| ApiError::BadRequest(e.to_string()))?;
                selector
                    .check_supported(&kind)
                    .map_err(|e| ApiError::BadRequest(e.to_string()))?;
                Ok::<_, ApiError>(selector)
            })
            .transpose()?;
        Ok(Filter {
            labels,
            fields,
            kind,
        })
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.labels
            .as_ref()
            .is_none_or(|l| l.matches_value(object.labels()))
            && self
                .fields
                .as_ref()
                .is_none_or(|f| f.matches(object, &self.kind))
    }
}

pub async fn get(call: &Call<'_>) -> Result<Response, ApiError> {
    let Call { server, target, .. } = call;
    let stored = server
        .objects
        .must_get(&target.info, target.ns(), target.name()?)
        .await?;
    let format = call.format();
    Ok(response::json(
        StatusCode::OK,
        &response::object(&target.info, stored.object, format),
        &[],
    ))
}

pub async fn list(call: &Call<'_>) -> Result<Response, ApiError> {
    let Call {
        server,
        target,
        query,
        ..
    } = call;
    let filter = Filter::new(target, query)?;
    let revision = match query.resource_version_match.as_deref() {
        Some("Exact") => query.revision()?,
        _ => None,
    };
    let page = server
        .objects
        .list(
            &target.info,
            target.ns(),
            query.limit,
            query.continue_token.as_deref(),
            revision,
            |o| filter.matches(o),
        )
        .await?;
    let format = call.format();
    let body = response::list(
        &target.info,
        page.items,
        page.revision,
        page.continue_token,
        format,
    );
    Ok(response::json(StatusCode::OK, &body, &[]))
}
