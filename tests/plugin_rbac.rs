//! Plugins under RBAC: a plugin runs as `kube-system/plugin-NAME` holding the ClusterRole `wasmkube:plugin:NAME` that `wasmkube plugin install` showed and had confirmed; what its role lacks is a 403, deleting its binding stops a call allowed before, deleting the Plugin takes its identity along, and a Plugin may grant only what its writer holds (docs/security.md).

use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};
use wasmkube_e2e::{Cluster, binary, eventually, lines_with};

const READER: &str = "system:serviceaccount:kube-system:plugin-reader";

/// The test plugin `test_secretreader`'s file.
fn reader_file() -> Result<String> {
    let file = wasmkube_e2e::plugin_dir().join("test_secretreader.wasm");
    if !file.exists() {
        bail!(
            "{} is missing: run scripts/build-plugins.sh",
            file.display()
        );
    }
    Ok(file.display().to_string())
}

fn count(c: &Cluster, field: &str) -> Result<u64> {
    let path = format!("jsonpath={{.status.{field}}}");
    Ok(c.ok(&["get", "plugin", "reader", "-o", &path])?
        .parse()
        .unwrap_or(0))
}

/// Lines of the server log where the reader was refused `get` on the Secret `poke`.
fn refusals(c: &Cluster) -> usize {
    let wanted = format!(
        r#"secrets "poke" is forbidden: User "{READER}" cannot get resource "secrets" in API group "" in the namespace "default""#
    );
    lines_with(&c.log(), &wanted)
}

#[test]
fn a_plugin_holds_its_role_only_and_loses_a_call_with_its_binding() -> Result<()> {
    let c = Cluster::start()?;
    let file = reader_file()?;
    c.ok(&["create", "configmap", "poke"])?;
    c.ok(&["create", "secret", "generic", "poke", "--from-literal=k=v"])?;

    // No terminal to ask on and no --yes: nothing is granted or installed.
    let out = Command::new(binary())
        .args(["plugin", "install", &file, "--name", "reader"])
        .env("KUBECONFIG", c.kubeconfig())
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pass --yes"), "{stderr}");
    assert!(c.fails(&["get", "plugin", "reader"])?.contains("NotFound"));

    // Installed with --yes: the rules it will hold are shown first.
    let shown = c.wasmkube(&["plugin", "install", &file, "--name", "reader", "--yes"])?;
    assert!(
        shown.contains("ServiceAccount kube-system/plugin-reader")
            && shown.contains("ClusterRole wasmkube:plugin:reader")
            && shown.contains(
                r#"{APIGroups:[""], Resources:["configmaps" "configmaps/status"], Verbs:["*"]}"#
            )
            && !shown.contains("secrets"),
        "{shown}"
    );
    eventually(Duration::from_secs(30), || {
        Ok(
            c.kubectl(&["get", "clusterrolebinding", "wasmkube:plugin:reader"])?
                .status
                .success(),
        )
    })?;
    c.ok(&[
        "get",
        "serviceaccount",
        "plugin-reader",
        "-n",
        "kube-system",
    ])?;
    let owner = c.ok(&[
        "get",
        "clusterrole",
        "wasmkube:plugin:reader",
        "-o",
        "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}",
    ])?;
    assert_eq!(owner, "Plugin/reader");
    let can_i = |verb: &str, resource: &str| -> Result<String> {
        let as_reader = format!("--as={READER}");
        let out = c.kubectl(&["auth", "can-i", verb, resource, &as_reader])?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    assert_eq!(can_i("get", "secrets")?, "no");
    assert_eq!(can_i("get", "configmaps")?, "yes");

    // Its role lacks secrets: its secret read is a 403 in RBAC's words.
    eventually(Duration::from_secs(30), || {
        Ok(count(&c, "failures")? > 0 && refusals(&c) > 0)
    })?;

    // Granted secrets through its Plugin: the read is allowed (failures stop growing).
    c.ok(&[
        "patch",
        "plugin",
        "reader",
        "--type=merge",
        "-p",
        r#"{"spec":{"permissions":[{"group":"","resources":["configmaps","secrets"],"verbs":["get","list","watch"]}]}}"#,
    ])?;
    eventually(Duration::from_secs(60), || {
        let (reconciles, failures) = (count(&c, "reconciles")?, count(&c, "failures")?);
        std::thread::sleep(Duration::from_secs(6));
        Ok(count(&c, "failures")? == failures && count(&c, "reconciles")? > reconciles)
    })?;
    assert_eq!(can_i("get", "secrets")?, "yes");

    // Its binding deleted: the same read is refused from the next call on.
    let before = refusals(&c);
    c.ok(&["delete", "clusterrolebinding", "wasmkube:plugin:reader"])?;
    assert_eq!(can_i("get", "secrets")?, "no");
    eventually(Duration::from_secs(30), || Ok(refusals(&c) > before))?;

    // The Plugin deleted: its ServiceAccount and ClusterRole go with it.
    c.ok(&["delete", "plugin", "reader"])?;
    eventually(Duration::from_secs(30), || {
        Ok(!c
            .kubectl(&["get", "clusterrole", "wasmkube:plugin:reader"])?
            .status
            .success()
            && !c
                .kubectl(&[
                    "get",
                    "serviceaccount",
                    "plugin-reader",
                    "-n",
                    "kube-system",
                ])?
                .status
                .success())
    })?;
    Ok(())
}

/// A Plugin named `name` with `permissions` (YAML flow, or nothing), its module never loaded.
fn plugin(name: &str, permissions: Option<&str>) -> String {
    let digest = "0".repeat(64);
    let mut manifest = format!(
        "apiVersion: wasmkube.dev/v1alpha1\nkind: Plugin\nmetadata:\n  name: {name}\nspec:\n  kind: Controller\n  module: {{digest: \"sha256:{digest}\", chunks: 1}}\n"
    );
    if let Some(permissions) = permissions {
        manifest.push_str(&format!("  permissions: {permissions}\n"));
    }
    manifest
}

#[test]
fn a_plugin_may_grant_only_what_its_writer_holds() -> Result<()> {
    let c = Cluster::start()?;
    // bob may edit t1 and write Plugins, nothing more.
    c.ok(&["create", "namespace", "t1"])?;
    c.ok(&[
        "create",
        "rolebinding",
        "bob-edit",
        "-n",
        "t1",
        "--clusterrole",
        "edit",
        "--user",
        "bob",
    ])?;
    c.ok(&[
        "create",
        "clusterrole",
        "plugin-writer",
        "--verb",
        "get,create,update,patch",
        "--resource",
        "plugins.wasmkube.dev",
    ])?;
    c.ok(&[
        "create",
        "clusterrolebinding",
        "bob-plugins",
        "--clusterrole",
        "plugin-writer",
        "--user",
        "bob",
    ])?;
    let create_as_bob = |manifest: &str| -> Result<String> {
        let out = c.kubectl_stdin(&["--as=bob", "create", "-f", "-"], Some(manifest))?;
        Ok(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    };

    // Secrets cluster-wide: bob holds them in t1 only.
    let out = create_as_bob(&plugin(
        "thief",
        Some(r#"[{group: "", resources: [secrets], verbs: [get]}]"#),
    ))?;
    assert!(
        out.contains(r#"plugins.wasmkube.dev "thief" is forbidden: user "bob" (groups=["system:authenticated"]) is attempting to grant RBAC permissions not currently held:"#)
            && out.contains(r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}"#),
        "{out}"
    );
    // Without permissions it would hold whatever its module names: cluster-admin only.
    let out = create_as_bob(&plugin("blank", None))?;
    assert!(
        out.contains(
            "must have cluster-admin privileges to write a Plugin without spec.permissions"
        ),
        "{out}"
    );
    // What bob holds cluster-wide he may grant.
    let out = create_as_bob(&plugin(
        "reader",
        Some(r#"[{group: wasmkube.dev, resources: [plugins], verbs: [get]}]"#),
    ))?;
    assert!(out.contains("plugin.wasmkube.dev/reader created"), "{out}");
    // The admin may grant secrets.
    c.kubectl_stdin(
        &["create", "-f", "-"],
        Some(&plugin(
            "thief",
            Some(r#"[{group: "", resources: [secrets], verbs: [get]}]"#),
        )),
    )
    .map(|out| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok(())
}
