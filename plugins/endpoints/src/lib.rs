//! The Endpoints and EndpointSlice controllers as a wasmkube plugin: every Service with a selector lists the pods it selects.

mod endpoints;
mod pods;
mod slices;
#[cfg(test)]
mod tests;
mod tracker;

use std::time::Duration;

use wasmkube_sdk::k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use wasmkube_sdk::k8s_openapi::api::discovery::v1::EndpointSlice;
use wasmkube_sdk::owner::is_controlled_by;
use wasmkube_sdk::{Context, Controller, Error, ObjectKey, Outcome, Registration};

/// How soon a Service whose slices the cache shows out of date is tried again.
const STALE_RETRY: Duration = Duration::from_secs(1);

/// The Endpoints and EndpointSlice controller.
pub struct EndpointsController;

wasmkube_sdk::export_controller!(EndpointsController);

impl Controller for EndpointsController {
    fn registration() -> Registration {
        // Pods reach their Services through the selector; Endpoints are owned for the grant to
        // write them (they carry no owner reference, so their changes enqueue little).
        Registration::new::<Service>("endpoints-controller")
            .owns::<Pod>()
            .owns::<EndpointSlice>()
            .owns::<Endpoints>()
    }

    fn reconcile(ctx: &Context<'_>, key: ObjectKey) -> Result<Outcome, Error> {
        let Some(service) = ctx.get::<Service>(&key.namespace, &key.name)? else {
            // The garbage collector removes the slices, which the Service owns.
            tracker::forget(&key);
            endpoints::remove(ctx, &key.namespace, &key.name, false)?;
            return Ok(Outcome::Done);
        };
        if service.metadata.deletion_timestamp.is_some() {
            return Ok(Outcome::Done);
        }
        let selector = service
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .filter(|s| !s.is_empty());
        let Some(selector) = selector else {
            // Users manage the endpoints of Services without a selector: drop only ours.
            endpoints::remove(ctx, &key.namespace, &key.name, true)?;
            let ours = slices::list(ctx, &key.namespace, &key.name)?
                .into_iter()
                .filter(|s| is_controlled_by(&s.metadata, &service))
                .collect();
            let plan = slices::Plan {
                delete: ours,
                ..slices::Plan::default()
            };
            slices::apply(ctx, plan)?;
            return Ok(Outcome::Done);
        };
        let query: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let pods = ctx.list::<Pod>(&key.namespace, &query.join(","))?;
        endpoints::sync(ctx, &service, &pods)?;

        let now = ctx.now()?;
        let uid = service.metadata.uid.clone().unwrap_or_default();
        let existing = slices::list(ctx, &key.namespace, &key.name)?;
        if !tracker::is_current(&key, &uid, &existing, now) {
            return Ok(Outcome::RequeueAfter(STALE_RETRY));
        }
        let plan = slices::plan(&service, &pods, existing)?;
        let (created, deleted) = slices::apply(ctx, plan)?;
        tracker::expect(&key, &uid, created, deleted, now);
        Ok(Outcome::Done)
    }
}
