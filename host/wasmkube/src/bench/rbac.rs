//! The API bench's RBAC rows: RoleBindings written through the API, authorization decisions against an index of them, and open-loop creates by a user one of them binds.

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use wasmkube_apiserver::Server;
use wasmkube_apiserver::auth::{Attributes, User, current_index};
use wasmkube_store::bench::BenchRow;

use super::api::{Samples, closed_loop, each, open_loop, warm};
use super::client::Api;

/// RoleBindings written before the RBAC rows are measured (the cluster size).
pub const BINDINGS: usize = 1000;
/// The user the last binding grants `edit` in [`NAMESPACE`]; the open-loop creates run as it.
pub const USER: &str = "bench-writer";
/// Where the bindings live and the bound user creates.
pub const NAMESPACE: &str = "bench-rbac";
/// Decisions per sample of the decision row (one decision is far below a microsecond).
const DECISIONS_PER_SAMPLE: usize = 1000;
/// How long decisions are timed.
const DECIDING: Duration = Duration::from_secs(2);

/// A RoleBinding granting `edit` in [`NAMESPACE`] to `user-I`, or to [`USER`] for the last.
fn binding(i: usize) -> serde_json::Value {
    let user = match i + 1 == BINDINGS {
        true => USER.to_string(),
        false => format!("user-{i}"),
    };
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": format!("rb-{i:04}"), "namespace": NAMESPACE},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    })
}

/// Writes [`BINDINGS`] RoleBindings with `concurrency` admin clients (each write returns once
/// the index holds it), times decisions against the resulting index, then creates at the
/// open-loop rate as [`USER`] (its connections opened first, as the admin's were).
pub async fn phases(
    admin: &Api,
    writer: &Api,
    server: &Server,
    concurrency: usize,
    duration: Duration,
    origin: Instant,
) -> anyhow::Result<Vec<BenchRow>> {
    admin.create_namespace(NAMESPACE).await?;
    let path = format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{NAMESPACE}/rolebindings");
    let (written, _) = closed_loop(
        BINDINGS,
        concurrency,
        each(admin, move |api, i| {
            let path = path.clone();
            async move { api.post(&path, &binding(i)).await }
        }),
    )
    .await;
    let mut rows = vec![written.row(format!("create RoleBinding, {concurrency} clients"))];
    rows.push(decisions(server).row(format!(
        "authorize x{DECISIONS_PER_SAMPLE}, {BINDINGS} bindings"
    )));
    warm(writer, NAMESPACE, concurrency).await?;
    let (writes, _) = open_loop(writer, NAMESPACE, duration, origin).await;
    rows.push(writes.row(format!("{}, bound user", super::api::RATE_CREATE)));
    Ok(rows)
}

/// Decisions on the index in force, by users bound and not bound, allowed and denied, each
/// sample [`DECISIONS_PER_SAMPLE`] of them.
fn decisions(server: &Server) -> Samples {
    let index = current_index(server);
    let users: Vec<User> = (0..BINDINGS)
        .map(|i| User::new(&format!("user-{i}"), []))
        .chain([User::new("nobody", ["team".to_string()])])
        .collect();
    let asks = [
        Attributes::resource("create", "", "configmaps", NAMESPACE, ""),
        Attributes::resource("get", "", "secrets", "elsewhere", "x"),
    ];
    let mut samples = Samples::default();
    let (start, mut allowed) = (std::time::Instant::now(), 0usize);
    let mut n = 0usize;
    while start.elapsed() < DECIDING {
        let began = std::time::Instant::now();
        for _ in 0..DECISIONS_PER_SAMPLE {
            let user = &users[n % users.len()];
            allowed += usize::from(index.allows(user, &asks[n % asks.len()]));
            n += 1;
        }
        samples.ok(began.elapsed());
    }
    samples.elapsed = start.elapsed();
    // Half the asks are creates in the bindings' namespace by a bound user: allowed.
    if allowed == 0 {
        samples.err(anyhow::anyhow!(
            "no decision allowed: the `edit` ClusterRole is not in force"
        ));
    }
    tracing::debug!(allowed, decided = n, "RBAC decisions");
    samples
}
