//! Shadow controllers: a candidate run beside the active version, its writes dry runs compared with the active version's; agreeing, diverging, trapping, failing to load, discarded and promoted.

use crate::common::{self, wasm};
use crate::supervisor::{count, install_with, plugins, supervised, until};

use serde_json::{Value, json};
use wasmkube_apiserver::Server;
use wasmkube_apiserver::registry::{Update, update_with};
use wasmkube_controller::module;

/// `bytes` with an empty custom section appended: a module with another digest that behaves
/// the same.
fn variant(bytes: &[u8]) -> Vec<u8> {
    let name = b"shadow-test";
    let mut out = bytes.to_vec();
    // Section id 0 (custom), its size, then its name (length-prefixed), no payload.
    out.extend([0, 1 + name.len() as u8, name.len() as u8]);
    out.extend(name);
    out
}

/// Stores `bytes`' chunks; `spec.shadow` naming them.
async fn shadow_of(server: &Server, bytes: &[u8]) -> Value {
    module::store_chunks(server, bytes).await.expect("chunks");
    json!({"module": module::module_ref(&module::digest(bytes), bytes.len())})
}

/// Changes the Plugin `p`'s spec as `wasmkube plugin promote` (`promote`) or `discard` does:
/// `spec.shadow` removed, and when promoted its module made `spec.module`.
async fn end_shadow(server: &Server, promote: bool) {
    let info = plugins(server);
    update_with(
        server,
        &Update::internal(&info, None, "p"),
        |cur| {
            let mut new = cur.clone();
            let spec = new["spec"].as_object_mut().expect("a spec");
            let shadow = spec.remove("shadow").expect("a shadow");
            if promote {
                spec.insert("module".into(), shadow["module"].clone());
            }
            Ok(new)
        },
        &mut Vec::new(),
    )
    .await
    .expect("spec edited");
}

fn shadow_count(p: &Value, field: &str) -> u64 {
    p["status"]["shadow"][field].as_u64().unwrap_or(0)
}

async fn secret_exists(server: &Server, namespace: &str, name: &str) -> bool {
    let secrets = server
        .registry()
        .by_kind("v1", "Secret")
        .expect("served")
        .clone();
    server
        .objects
        .get(&secrets, Some(namespace), name)
        .await
        .expect("read")
        .is_some()
}

async fn reasons(server: &Server) -> Vec<String> {
    common::events_in_default(server)
        .await
        .iter()
        .filter_map(|e| e["reason"].as_str().map(String::from))
        .collect()
}

/// Whether the Plugin `p`'s log holds a line of its shadow containing `text`.
fn log_has(server: &Server, text: &str) -> bool {
    let log = server.plugin_logs.get("p").expect("a log");
    log.tail(None)
        .0
        .iter()
        .map(|l| l.render(false))
        .any(|l| l.starts_with("shadow@") && l.contains(text))
}

/// `forbidden` creates the Secret `stolen` for every config map: these permissions let it.
fn may_create_secrets() -> Value {
    json!([{"group": "", "resources": ["configmaps"], "verbs": ["*"]},
        {"group": "", "resources": ["secrets"], "verbs": ["get", "list", "watch", "create"]}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_that_writes_the_same_agrees() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, _supervisor) = supervised(&dir).await;
    let active = wasm("test_forbidden");
    let candidate = variant(&active);
    let shadow = shadow_of(&server, &candidate).await;
    install_with(
        &server,
        "p",
        &active,
        json!({"permissions": may_create_secrets(), "shadow": shadow}),
    )
    .await;
    until(&server, "the shadow started", |p| {
        p["status"]["shadow"]["digest"] == module::digest(&candidate)
    })
    .await;
    // In a new namespace, the candidate's dry-run create and the active version's real one agree
    // once the fields the apiserver sets are left out; in `default`, where the Secret exists,
    // their 409s agree.
    common::create(
        &server,
        "v1",
        "Namespace",
        None,
        json!({"metadata": {"name": "other"}}),
    )
    .await;
    common::create(
        &server,
        "v1",
        "ConfigMap",
        Some("other"),
        json!({"metadata": {"name": "c"}}),
    )
    .await;
    common::create(
        &server,
        "v1",
        "ConfigMap",
        Some("default"),
        json!({"metadata": {"name": "d"}}),
    )
    .await;
    let agreed = until(&server, "reconciles compared", |p| {
        shadow_count(p, "reconciles") >= 2
    })
    .await;
    let status = &agreed["status"]["shadow"];
    assert_eq!(status["digest"], module::digest(&candidate), "{agreed:#}");
    assert_eq!(status["agreements"], status["reconciles"], "{agreed:#}");
    assert_eq!(status["divergences"], 0, "{agreed:#}");
    assert_eq!(status["lastDivergences"], json!([]), "{agreed:#}");
    assert!(secret_exists(&server, "default", "stolen").await);
    assert!(secret_exists(&server, "other", "stolen").await);
    assert!(
        reasons(&server)
            .await
            .contains(&"ShadowStarted".to_string())
    );
    assert!(
        log_has(&server, "Started running as the shadow of"),
        "a shadow@ Started line"
    );
    let metrics = server.metrics.render();
    assert!(
        metrics.contains("wasmkube_plugin_shadow_agreements_total{plugin=\"p\"}"),
        "{metrics}"
    );

    // Discarded: the shadow stops and its status goes.
    end_shadow(&server, false).await;
    until(&server, "shadow status gone", |p| {
        p["status"]["shadow"].is_null() && p["status"]["phase"] == "Running"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diverging_shadow_is_reported_and_stores_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, _supervisor) = supervised(&dir).await;
    // echo writes nothing (and reconciles every 5 ms); the candidate creates a Secret.
    let shadow = shadow_of(&server, &wasm("test_forbidden")).await;
    install_with(
        &server,
        "p",
        &wasm("test_echo"),
        json!({"permissions": may_create_secrets(), "shadow": shadow}),
    )
    .await;
    let diverged = until(&server, "divergences", |p| {
        shadow_count(p, "divergences") > 12
    })
    .await;
    let status = &diverged["status"]["shadow"];
    assert_eq!(status["agreements"], 0, "{diverged:#}");
    let last = status["lastDivergences"].as_array().expect("a list");
    assert_eq!(last.len(), 10, "{diverged:#}");
    // Every config map in `default` (kube-root-ca.crt too) makes the candidate create the same Secret.
    let in_default = last
        .iter()
        .find(|d| d["key"].as_str().is_some_and(|k| k.starts_with("default/")))
        .expect("a config map in default diverged");
    assert_eq!(in_default["active"], json!([]), "{in_default:#}");
    assert_eq!(
        in_default["candidate"],
        json!(["create secrets default/stolen"]),
        "{in_default:#}"
    );
    assert_eq!(
        in_default["diff"],
        "create secrets default/stolen: only the candidate"
    );
    // Dry runs: the Secret was never stored; the active version carries on.
    assert!(!secret_exists(&server, "default", "stolen").await);
    let before = count(&diverged, "reconciles");
    until(&server, "the active version reconciling", |p| {
        count(p, "reconciles") > before && p["status"]["phase"] == "Running"
    })
    .await;
    let metrics = server.metrics.render();
    assert!(
        metrics.contains("wasmkube_plugin_shadow_divergences_total{plugin=\"p\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_shadow_changes_nothing_and_a_promoted_one_takes_over() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, _supervisor) = supervised(&dir).await;
    let echo = wasm("test_echo");
    let shadow = shadow_of(&server, &wasm("test_panic")).await;
    install_with(&server, "p", &echo, json!({"shadow": shadow})).await;
    let trapping = until(&server, "the shadow trapping", |p| {
        shadow_count(p, "traps") >= 5 && count(p, "reconciles") > 5
    })
    .await;
    assert_eq!(count(&trapping, "traps"), 0, "{trapping:#}");
    assert_eq!(count(&trapping, "failures"), 0, "{trapping:#}");
    assert_eq!(trapping["status"]["phase"], "Running", "{trapping:#}");
    assert_eq!(shadow_count(&trapping, "reconciles"), 0, "{trapping:#}");
    // The shadow's lines are labelled as its own.
    assert!(log_has(&server, "Trapped"), "a shadow@ Trapped line");

    // A shadow that is no module: it fails, the active version runs on.
    let broken = shadow_of(&server, b"not wasm at all").await;
    crate::supervisor::edit_spec(&server, "p", json!({"shadow": broken})).await;
    let failed = until(&server, "the shadow failed", |p| {
        p["status"]["shadow"]["phase"] == "Failed"
    })
    .await;
    assert_eq!(failed["status"]["phase"], "Running", "{failed:#}");
    assert!(
        reasons(&server)
            .await
            .contains(&"ShadowLoadFailed".to_string())
    );

    // A working candidate, then promoted: it is the active version and there is no shadow.
    let candidate = variant(&echo);
    let shadow = shadow_of(&server, &candidate).await;
    crate::supervisor::edit_spec(&server, "p", json!({"shadow": shadow})).await;
    until(&server, "the candidate agreeing", |p| {
        p["status"]["shadow"]["digest"] == module::digest(&candidate)
            && shadow_count(p, "agreements") > 0
    })
    .await;
    end_shadow(&server, true).await;
    let promoted = until(&server, "promoted", |p| {
        p["status"]["activeDigest"] == module::digest(&candidate) && p["status"]["shadow"].is_null()
    })
    .await;
    assert_eq!(promoted["status"]["phase"], "Running", "{promoted:#}");
    assert_eq!(
        promoted["status"]["previousDigest"],
        module::digest(&echo),
        "{promoted:#}"
    );
}
