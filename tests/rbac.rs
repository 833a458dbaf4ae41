//! Users and RBAC with the real kubectl: client certificates from `wasmkube kubeconfig`, 403s in Kubernetes' words, `kubectl auth can-i`, `whoami`, `--as`, and escalation prevention.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use anyhow::{Result, bail};
use wasmkube_e2e::{Cluster, binary, eventually, kubectl_at};

/// A kubeconfig for `user` (in `group`) issued by `wasmkube kubeconfig`, saved beside the cluster's.
fn user_kubeconfig(c: &Cluster, user: &str, group: Option<&str>) -> Result<PathBuf> {
    let data_dir = c
        .kubeconfig()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut args = vec!["kubeconfig", "--user", user, "--data-dir"];
    let data = data_dir.to_string_lossy().to_string();
    args.push(&data);
    if let Some(group) = group {
        args.extend(["--group", group]);
    }
    let out = std::process::Command::new(binary()).args(&args).output()?;
    if !out.status.success() {
        bail!(
            "wasmkube kubeconfig: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let path = data_dir.join(format!("{user}.kubeconfig"));
    std::fs::write(&path, &out.stdout)?;
    Ok(path)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `kubectl auth can-i ARGS` as the kubeconfig's user: "yes" or "no".
fn can_i(kubeconfig: &Path, args: &[&str]) -> Result<String> {
    let mut all = vec!["auth", "can-i"];
    all.extend(args);
    let out = kubectl_at(kubeconfig, &all, None)?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn a_new_user_is_forbidden_until_bound_to_view() -> Result<()> {
    let c = Cluster::start()?;
    let alice = user_kubeconfig(&c, "alice", Some("devs"))?;

    let out = kubectl_at(&alice, &["get", "pods", "-n", "t1"], None)?;
    assert!(!out.status.success());
    assert!(
        text(&out).contains(
            r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "t1""#
        ),
        "{}",
        text(&out)
    );
    let out = kubectl_at(
        &alice,
        &["get", "--raw", "/api/v1/namespaces/t1/pods/web"],
        None,
    )?;
    assert!(
        text(&out).contains(
            r#"User "alice" cannot get resource "pods" in API group "" in the namespace "t1""#
        ),
        "{}",
        text(&out)
    );
    let out = kubectl_at(&alice, &["get", "nodes"], None)?;
    assert!(
        text(&out).contains(r#"nodes is forbidden: User "alice" cannot list resource "nodes" in API group "" at the cluster scope"#),
        "{}",
        text(&out)
    );

    let whoami = kubectl_at(&alice, &["auth", "whoami", "-o", "json"], None)?;
    let info: serde_json::Value = serde_json::from_slice(&whoami.stdout)?;
    assert_eq!(
        info["status"]["userInfo"]["username"],
        "alice",
        "{}",
        text(&whoami)
    );
    assert_eq!(
        info["status"]["userInfo"]["groups"],
        serde_json::json!(["devs", "system:authenticated"])
    );

    c.ok(&["create", "namespace", "t1"])?;
    c.ok(&["create", "namespace", "t2"])?;
    assert_eq!(can_i(&alice, &["get", "pods", "-n", "t1"])?, "no");
    c.ok(&[
        "create",
        "rolebinding",
        "alice-view",
        "-n",
        "t1",
        "--clusterrole",
        "view",
        "--user",
        "alice",
    ])?;
    eventually(Duration::from_secs(10), || {
        Ok(can_i(&alice, &["get", "pods", "-n", "t1"])? == "yes")
    })?;
    assert_eq!(can_i(&alice, &["get", "secrets", "-n", "t1"])?, "no");
    assert_eq!(can_i(&alice, &["get", "pods", "-n", "t2"])?, "no");
    assert_eq!(
        can_i(&alice, &["list", "deployments.apps", "-n", "t1"])?,
        "yes"
    );
    assert_eq!(can_i(&alice, &["create", "pods", "-n", "t1"])?, "no");
    let out = kubectl_at(&alice, &["get", "pods", "-n", "t1"], None)?;
    assert!(out.status.success(), "{}", text(&out));
    // A namespace's admin asks about alice there with a LocalSubjectAccessReview.
    let local = |ns: &str, resource: &str| {
        format!(
            "apiVersion: authorization.k8s.io/v1\nkind: LocalSubjectAccessReview\nmetadata:\n  namespace: t1\nspec:\n  user: alice\n  resourceAttributes:\n    namespace: {ns}\n    verb: get\n    resource: {resource}\n"
        )
    };
    let create = ["create", "-f", "-", "-o", "jsonpath={.status.allowed}"];
    let allowed = |ns: &str, resource: &str| {
        let out = kubectl_at(&c.kubeconfig(), &create, Some(&local(ns, resource)))?;
        anyhow::Ok(text(&out))
    };
    assert_eq!(allowed("t1", "pods")?, "true");
    assert_eq!(allowed("t1", "secrets")?, "false");
    let other = allowed("t2", "pods")?;
    assert!(
        other.contains("spec.resourceAttributes.namespace: Invalid value: \"t2\": must match metadata.namespace"),
        "{other}"
    );

    let list = kubectl_at(&alice, &["auth", "can-i", "--list", "-n", "t1"], None)?;
    let list = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(list.contains("pods "), "{list}");
    assert!(
        list.contains("selfsubjectaccessreviews.authorization.k8s.io"),
        "{list}"
    );
    assert!(!list.contains("secrets "), "{list}");

    // The admin (a client certificate in system:masters) may do anything, and may act as alice.
    assert_eq!(
        c.ok(&[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}"
        ])?,
        "kubernetes-admin"
    );
    assert_eq!(c.ok(&["auth", "can-i", "delete", "nodes"])?.trim(), "yes");
    assert_eq!(
        c.ok(&["auth", "can-i", "get", "pods", "-n", "t1", "--as", "alice"])?
            .trim(),
        "yes"
    );
    let as_alice = c.kubectl(&[
        "auth", "can-i", "get", "secrets", "-n", "t1", "--as", "alice",
    ])?;
    assert_eq!(String::from_utf8_lossy(&as_alice.stdout).trim(), "no");
    let out = c.kubectl(&["get", "secrets", "-n", "t1", "--as", "alice"])?;
    assert!(
        text(&out).contains(r#"secrets is forbidden: User "alice" cannot list resource "secrets" in API group "" in the namespace "t1""#),
        "{}",
        text(&out)
    );
    // alice may not impersonate anyone.
    let out = kubectl_at(&alice, &["get", "pods", "-n", "t1", "--as", "bob"], None)?;
    assert!(
        text(&out).contains(r#"users "bob" is forbidden: User "alice" cannot impersonate resource "users" in API group "" at the cluster scope"#),
        "{}",
        text(&out)
    );
    Ok(())
}

#[test]
fn escalation_is_refused_and_the_token_stays_admin() -> Result<()> {
    let c = Cluster::start()?;
    let bob = user_kubeconfig(&c, "bob", None)?;
    c.ok(&["create", "namespace", "t1"])?;
    // bob may manage Roles and RoleBindings in t1 (admin), but holds no secrets rights beyond that.
    c.ok(&[
        "create",
        "rolebinding",
        "bob-admin",
        "-n",
        "t1",
        "--clusterrole",
        "admin",
        "--user",
        "bob",
    ])?;
    eventually(Duration::from_secs(10), || {
        Ok(can_i(&bob, &["create", "roles", "-n", "t1"])? == "yes")
    })?;
    let out = kubectl_at(
        &bob,
        &[
            "create",
            "role",
            "nodes",
            "-n",
            "t1",
            "--verb",
            "get",
            "--resource",
            "nodes",
        ],
        None,
    )?;
    assert!(!out.status.success());
    assert!(
        text(&out).contains(r#"is attempting to grant RBAC permissions not currently held"#),
        "{}",
        text(&out)
    );
    let out = kubectl_at(
        &bob,
        &[
            "create",
            "rolebinding",
            "up",
            "-n",
            "t1",
            "--clusterrole",
            "cluster-admin",
            "--user",
            "bob",
        ],
        None,
    )?;
    assert!(!out.status.success(), "{}", text(&out));
    let out = kubectl_at(
        &bob,
        &[
            "create",
            "role",
            "pods",
            "-n",
            "t1",
            "--verb",
            "get",
            "--resource",
            "pods",
        ],
        None,
    )?;
    assert!(
        out.status.success(),
        "a role within bob's rights: {}",
        text(&out)
    );

    // The admin token (what node agents use) is system:admin in system:masters.
    let token = c.token()?;
    let out = kubectl_at(
        &c.kubeconfig(),
        &["--token", &token, "auth", "whoami", "-o", "json"],
        None,
    )?;
    let info: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(
        info["status"]["userInfo"]["username"], "kubernetes-admin",
        "a certificate comes first"
    );
    let no_cert = c.kubeconfig().with_file_name("token.kubeconfig");
    let admin = std::fs::read_to_string(c.kubeconfig())?;
    let server = admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .unwrap_or_default();
    std::fs::write(
        &no_cert,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n"
        ),
    )?;
    let out = kubectl_at(
        &no_cert,
        &["auth", "whoami", "-o", "jsonpath={.status.userInfo.groups}"],
        None,
    )?;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        r#"["system:masters","system:authenticated"]"#,
        "{}",
        text(&out)
    );
    Ok(())
}

#[test]
fn a_chart_shaped_manifest_applies() -> Result<()> {
    let c = Cluster::start()?;
    c.ok(&["create", "namespace", "chart"])?;
    c.apply(CHART)?;
    assert!(
        c.ok(&["get", "clusterrole", "chart-reader", "-o", "name"])?
            .contains("chart-reader")
    );
    assert_eq!(
        c.ok(&[
            "auth",
            "can-i",
            "list",
            "configmaps",
            "-n",
            "chart",
            "--as",
            "system:serviceaccount:chart:app"
        ])?
        .trim(),
        "yes"
    );
    assert_eq!(
        c.ok(&[
            "auth",
            "can-i",
            "list",
            "nodes",
            "--as",
            "system:serviceaccount:chart:app"
        ])?
        .trim(),
        "yes"
    );
    // The default roles are there, aggregated.
    let view = c.ok(&["get", "clusterrole", "view", "-o", "json"])?;
    let view: serde_json::Value = serde_json::from_str(&view)?;
    assert!(
        view["rules"].as_array().is_some_and(|r| !r.is_empty()),
        "{view}"
    );
    Ok(())
}

const CHART: &str = r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: app, namespace: chart}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: chart-reader}
rules:
- apiGroups: [""]
  resources: [nodes]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: chart-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: chart-reader}
subjects:
- {kind: ServiceAccount, name: app, namespace: chart}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: config, namespace: chart}
rules:
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: config, namespace: chart}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: config}
subjects:
- {kind: ServiceAccount, name: app}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: chart}
spec:
  replicas: 1
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec:
      serviceAccountName: app
      containers:
      - {name: app, image: docker.io/library/busybox:latest, imagePullPolicy: Never, command: [sleep, "3600"]}
---
apiVersion: v1
kind: Service
metadata: {name: app, namespace: chart}
spec:
  selector: {app: app}
  ports: [{port: 80}]
"#;
