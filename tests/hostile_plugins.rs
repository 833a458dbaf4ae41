//! Hostile plugins: a guest that sleeps is cut off at its wall-clock deadline and counted while
//! the rest keeps working, a revoked permission holds without a new module, and a Plugin past the
//! bounds on workers, limits or chunks is refused naming the field (docs/security.md).

use std::time::Duration;

use anyhow::Result;
use wasmkube_e2e::{Cluster, eventually};

/// Merges `spec` (JSON) into the Plugin `name`'s spec.
fn patch_spec(c: &Cluster, name: &str, spec: &str) -> Result<()> {
    c.ok(&[
        "patch",
        "plugin",
        name,
        "--type=merge",
        "-p",
        &format!(r#"{{"spec":{spec}}}"#),
    ])?;
    Ok(())
}

/// `.status.<field>` of the Plugin `name`.
fn status(c: &Cluster, name: &str, field: &str) -> Result<String> {
    c.ok(&[
        "get",
        "plugin",
        name,
        "-o",
        &format!("jsonpath={{.status.{field}}}"),
    ])
}

fn count(c: &Cluster, name: &str, field: &str) -> Result<u64> {
    Ok(status(c, name, field)?.parse().unwrap_or(0))
}

/// The server still answers, and reads back what it stored.
fn still_serving(c: &Cluster) -> Result<()> {
    assert_eq!(c.ok(&["get", "--raw", "/readyz"])?, "ok");
    c.ok(&["get", "configmap", "poke"])?;
    Ok(())
}

#[test]
fn a_sleeping_plugin_is_cut_off_and_counted_while_the_rest_keeps_working() -> Result<()> {
    let c = Cluster::start()?;
    c.ok(&["create", "configmap", "poke"])?;
    c.install_plugin("test_sleep", "sleep")?;
    patch_spec(&c, "sleep", r#"{"limits":{"callTimeoutMillis":500}}"#)?;
    eventually(Duration::from_secs(30), || {
        Ok(count(&c, "sleep", "traps")? > 0
            && status(&c, "sleep", "lastTrap")?.contains("deadline"))
    })
    .map_err(|e| {
        anyhow::anyhow!(
            "{e}: {}",
            c.ok(&["get", "plugin", "sleep", "-o", "yaml"])
                .unwrap_or_default()
        )
    })?;
    eventually(Duration::from_secs(30), || {
        Ok(c.ok(&["describe", "plugin", "sleep"])?.contains("Trapped"))
    })?;

    // Meanwhile the built-in controllers keep working: a ReplicaSet gets its pods.
    let rs = "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: busybox\n";
    c.apply(rs)?;
    eventually(Duration::from_secs(30), || {
        Ok(c.ok(&["get", "pods", "-l", "app=web", "-o", "name"])?
            .lines()
            .count()
            == 2)
    })?;
    still_serving(&c)
}

#[test]
fn revoking_a_permission_holds_without_a_new_module() -> Result<()> {
    let c = Cluster::start()?;
    c.ok(&["create", "configmap", "poke"])?;
    c.install_plugin("test_echo", "echo")?;
    let grant = |verbs: &str| {
        format!(
            r#"{{"permissions":[{{"group":"","resources":["configmaps","secrets"],"verbs":{verbs}}}]}}"#
        )
    };
    patch_spec(&c, "echo", &grant(r#"["get","list"]"#))?;
    eventually(Duration::from_secs(30), || {
        Ok(status(&c, "echo", "phase")? == "Running"
            && count(&c, "echo", "reconciles")? > 10
            && count(&c, "echo", "failures")? == 0)
    })?;
    let digest = status(&c, "echo", "activeDigest")?;

    // echo reads each config map with `get`: refused once `get` is revoked.
    patch_spec(&c, "echo", &grant(r#"["list"]"#))?;
    eventually(Duration::from_secs(30), || {
        Ok(count(&c, "echo", "failures")? > 0)
    })?;
    assert_eq!(status(&c, "echo", "activeDigest")?, digest);
    still_serving(&c)
}

#[test]
fn plugins_past_their_bounds_are_refused_naming_the_field() -> Result<()> {
    let c = Cluster::start()?;
    c.ok(&["create", "configmap", "poke"])?;
    let digest = format!("sha256:{}", "0".repeat(64));
    let cases = [
        (
            "workers: 1000",
            "spec.workers: Invalid value: 1000: must be less than or equal to 16",
        ),
        (
            "limits: {memoryBytes: 68719476736}",
            "spec.limits.memoryBytes: Invalid value: 68719476736: must be less than or equal to 1073741824",
        ),
        (
            "limits: {callTimeoutMillis: 3600000}",
            "spec.limits.callTimeoutMillis: Invalid value: 3600000: must be less than or equal to 60000",
        ),
    ];
    for (extra, message) in cases {
        let plugin = format!(
            "apiVersion: wasmkube.dev/v1alpha1\nkind: Plugin\nmetadata:\n  name: big\nspec:\n  kind: Controller\n  module: {{digest: '{digest}', chunks: 1}}\n  {extra}\n"
        );
        refused_422(&c, &plugin, message)?;
    }
    let chunks = format!(
        "apiVersion: wasmkube.dev/v1alpha1\nkind: Plugin\nmetadata:\n  name: big\nspec:\n  kind: Controller\n  module: {{digest: '{digest}', chunks: 100000}}\n"
    );
    refused_422(
        &c,
        &chunks,
        "spec.module.chunks: Invalid value: 100000: must be less than or equal to 128",
    )?;
    let chunk = format!(
        "apiVersion: wasmkube.dev/v1alpha1\nkind: PluginModule\nmetadata:\n  name: big\ndigest: '{digest}'\nindex: 0\ncount: 100000\ndata: ''\n"
    );
    refused_422(
        &c,
        &chunk,
        "count: Invalid value: 100000: must be less than or equal to 128",
    )?;
    assert!(c.fails(&["get", "plugin", "big"])?.contains("NotFound"));
    still_serving(&c)
}

/// Creates `manifest` with kubectl and asserts a 422 whose message names the field as `message`.
fn refused_422(c: &Cluster, manifest: &str, message: &str) -> Result<()> {
    let out = c.kubectl_stdin(&["create", "-f", "-", "-v=6"], Some(manifest))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted: {manifest}");
    assert!(stderr.contains("422"), "not a 422: {stderr}");
    assert!(stderr.contains(message), "{message:?} not in {stderr}");
    Ok(())
}
