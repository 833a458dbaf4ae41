//! ServiceAccounts with the real kubectl: the `default` ServiceAccount, `kubectl create token`, tokens that authenticate as their ServiceAccount and RBAC on them, 401 for a bad token, and the admission of pods.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use anyhow::{Context as _, Result};
use base64::Engine as _;
use serde_json::Value;
use wasmkube_e2e::{Cluster, eventually, kubectl_at};

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A kubeconfig without credentials beside the cluster's (the admin one holds a client
/// certificate, which would win over `--token`): the same server and CA.
fn bare_kubeconfig(c: &Cluster) -> Result<PathBuf> {
    let admin = std::fs::read_to_string(c.kubeconfig())?;
    let field = |name: &str| {
        admin
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(str::to_string)
            .with_context(|| format!("{name} in the kubeconfig"))
    };
    let (server, ca) = (field("server: ")?, field("certificate-authority-data: ")?);
    let path = c.kubeconfig().with_file_name("bare.kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u, namespace: default}}\ncurrent-context: c\n"
        ),
    )?;
    Ok(path)
}

/// kubectl with `token` against the cluster of `bare`.
fn with_token(bare: &Path, token: &str, args: &[&str]) -> Result<Output> {
    let mut all = vec!["--token", token];
    all.extend(args);
    kubectl_at(bare, &all, None)
}

/// The claims of a token, unverified.
fn claims(token: &str) -> Result<Value> {
    let payload = token.split('.').nth(1).context("a JWT")?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?;
    Ok(serde_json::from_slice(&json)?)
}

/// `token` with its claims replaced by `claims`, the signature kept (so no longer valid).
fn with_claims(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

#[test]
fn a_token_of_a_serviceaccount_bound_to_view_reads_pods_in_its_namespace_only() -> Result<()> {
    let c = Cluster::start()?;
    c.ok(&["create", "namespace", "t1"])?;
    c.ok(&["create", "namespace", "t2"])?;
    c.ok(&["create", "serviceaccount", "app", "-n", "t1"])?;
    c.ok(&[
        "create",
        "rolebinding",
        "app-view",
        "-n",
        "t1",
        "--clusterrole",
        "view",
        "--serviceaccount",
        "t1:app",
    ])?;
    let as_app = "--as=system:serviceaccount:t1:app";
    eventually(Duration::from_secs(10), || {
        Ok(c.ok(&["auth", "can-i", "get", "pods", "-n", "t1", as_app])?
            .trim()
            == "yes")
    })?;
    let no = |args: &[&str]| -> Result<()> {
        let out = c.kubectl(args)?;
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "no",
            "{args:?}"
        );
        Ok(())
    };
    no(&["auth", "can-i", "get", "secrets", "-n", "t1", as_app])?;
    no(&["auth", "can-i", "get", "pods", "-n", "t2", as_app])?;

    let token = c
        .ok(&["create", "token", "app", "-n", "t1", "--duration", "10m"])?
        .trim()
        .to_string();
    let claimed = claims(&token)?;
    assert_eq!(claimed["sub"], "system:serviceaccount:t1:app");
    assert_eq!(
        claimed["iss"],
        "https://kubernetes.default.svc.cluster.local"
    );
    assert_eq!(
        claimed["aud"],
        serde_json::json!(["https://kubernetes.default.svc.cluster.local"])
    );
    let lifetime = claimed["exp"].as_i64().unwrap_or(0) - claimed["iat"].as_i64().unwrap_or(0);
    assert_eq!(lifetime, 600);
    let sa_uid = c.ok(&[
        "get",
        "sa",
        "app",
        "-n",
        "t1",
        "-o",
        "jsonpath={.metadata.uid}",
    ])?;
    assert_eq!(
        claimed["kubernetes.io"]["serviceaccount"]["uid"],
        sa_uid.as_str()
    );

    let bare = bare_kubeconfig(&c)?;
    let whoami = with_token(&bare, &token, &["auth", "whoami", "-o", "json"])?;
    let info: Value = serde_json::from_slice(&whoami.stdout).context(text(&whoami))?;
    assert_eq!(
        info["status"]["userInfo"]["username"],
        "system:serviceaccount:t1:app"
    );
    assert_eq!(
        info["status"]["userInfo"]["groups"],
        serde_json::json!([
            "system:serviceaccounts",
            "system:serviceaccounts:t1",
            "system:authenticated"
        ])
    );
    let can = |args: &[&str]| -> Result<String> {
        let mut all = vec!["auth", "can-i"];
        all.extend(args);
        let out = with_token(&bare, &token, &all)?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    assert_eq!(can(&["get", "pods", "-n", "t1"])?, "yes");
    assert_eq!(can(&["get", "secrets", "-n", "t1"])?, "no");
    assert_eq!(can(&["get", "pods", "-n", "t2"])?, "no");
    let listed = with_token(&bare, &token, &["get", "pods", "-n", "t1"])?;
    assert!(listed.status.success(), "{}", text(&listed));
    let refused = with_token(&bare, &token, &["get", "secrets", "-n", "t1"])?;
    assert!(
        text(&refused).contains(
            r#"secrets is forbidden: User "system:serviceaccount:t1:app" cannot list resource "secrets" in API group "" in the namespace "t1""#
        ),
        "{}",
        text(&refused)
    );

    // A token meant for another audience, a tampered one, one of a deleted and re-created
    // ServiceAccount: 401, not 403.
    let vault = c
        .ok(&["create", "token", "app", "-n", "t1", "--audience", "vault"])?
        .trim()
        .to_string();
    assert_eq!(claims(&vault)?["aud"], serde_json::json!(["vault"]));
    let mut forged = claimed.clone();
    forged["sub"] = "system:serviceaccount:kube-system:admin".into();
    forged["kubernetes.io"]["namespace"] = "kube-system".into();
    for bad in [vault.as_str(), &with_claims(&token, &forged), "not.a.jwt"] {
        let out = with_token(&bare, bad, &["get", "pods", "-n", "t1"])?;
        assert!(
            text(&out).contains("error: You must be logged in to the server (Unauthorized)"),
            "{}",
            text(&out)
        );
    }
    c.ok(&["delete", "sa", "app", "-n", "t1"])?;
    c.ok(&["create", "serviceaccount", "app", "-n", "t1"])?;
    let out = with_token(&bare, &token, &["get", "pods", "-n", "t1"])?;
    assert!(text(&out).contains("Unauthorized"), "{}", text(&out));
    Ok(())
}

#[test]
fn token_requests_are_validated_and_bound_to_pods() -> Result<()> {
    let c = Cluster::start()?;
    c.ok(&["create", "serviceaccount", "app"])?;
    let short = c.fails(&["create", "token", "app", "--duration", "5m"])?;
    assert!(
        short.contains("may not specify a duration less than 10 minutes"),
        "{short}"
    );
    let missing = c.fails(&["create", "token", "nobody"])?;
    assert!(
        missing.contains(r#"serviceaccounts "nobody" not found"#),
        "{missing}"
    );

    // Pods get a ServiceAccount: `default` when they name none, which exists in every
    // namespace; one that does not exist is refused as upstream refuses it.
    eventually(Duration::from_secs(10), || {
        Ok(c.kubectl(&["get", "sa", "default"])?.status.success())
    })?;
    c.ok(&["run", "web", "--image", "busybox", "--restart", "Never"])?;
    let named = c.ok(&[
        "get",
        "pod",
        "web",
        "-o",
        "jsonpath={.spec.serviceAccountName}/{.spec.serviceAccount}",
    ])?;
    assert_eq!(named, "default/default");
    let refused = c.fails(&[
        "run",
        "ghost",
        "--image",
        "busybox",
        "--overrides",
        r#"{"spec": {"serviceAccountName": "ghost"}}"#,
    ])?;
    assert!(
        refused.contains(r#"pods "ghost" is forbidden: error looking up service account default/ghost: serviceaccount "ghost" not found"#),
        "{refused}"
    );

    // Bound to a pod: valid while that pod exists; the pod must run as the ServiceAccount.
    let wrong = c.fails(&[
        "create",
        "token",
        "app",
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "web",
    ])?;
    assert!(
        wrong.contains("to pod running with different serviceaccount name"),
        "{wrong}"
    );
    let token = c
        .ok(&[
            "create",
            "token",
            "default",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "web",
        ])?
        .trim()
        .to_string();
    let pod_uid = c.ok(&["get", "pod", "web", "-o", "jsonpath={.metadata.uid}"])?;
    assert_eq!(
        claims(&token)?["kubernetes.io"]["pod"]["uid"],
        pod_uid.as_str()
    );
    let bare = bare_kubeconfig(&c)?;
    let whoami = with_token(
        &bare,
        &token,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    )?;
    assert_eq!(
        String::from_utf8_lossy(&whoami.stdout),
        "system:serviceaccount:default:default",
        "{}",
        text(&whoami)
    );
    c.ok(&["delete", "pod", "web", "--grace-period", "0", "--force"])?;
    eventually(Duration::from_secs(10), || {
        let out = with_token(&bare, &token, &["auth", "whoami"])?;
        Ok(text(&out).contains("Unauthorized"))
    })?;

    // The `default` ServiceAccount comes back when deleted.
    let first = c.ok(&["get", "sa", "default", "-o", "jsonpath={.metadata.uid}"])?;
    c.ok(&["delete", "sa", "default"])?;
    eventually(Duration::from_secs(10), || {
        let out = c.kubectl(&["get", "sa", "default", "-o", "jsonpath={.metadata.uid}"])?;
        Ok(out.status.success() && String::from_utf8_lossy(&out.stdout) != first)
    })?;
    Ok(())
}

/// The token Secret `name` of ServiceAccount `sa` in `default`, once the token controller filled
/// it: its token.
fn token_secret(c: &Cluster, name: &str, sa: &str) -> Result<String> {
    c.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  annotations:\n    kubernetes.io/service-account.name: {sa}\ntype: kubernetes.io/service-account-token\n"
    ))?;
    let mut token = String::new();
    eventually(Duration::from_secs(10), || {
        let out = c.kubectl(&["get", "secret", name, "-o", "jsonpath={.data.token}"])?;
        token = String::from_utf8_lossy(&out.stdout).to_string();
        Ok(!token.is_empty())
    })?;
    Ok(String::from_utf8(
        base64::engine::general_purpose::STANDARD.decode(token)?,
    )?)
}

#[test]
fn a_legacy_token_secret_is_filled_and_its_token_dies_with_it() -> Result<()> {
    let c = Cluster::start()?;
    c.ok(&["create", "serviceaccount", "bot"])?;
    let token = token_secret(&c, "bot-token", "bot")?;
    let claimed = claims(&token)?;
    assert!(claimed.get("exp").is_none(), "{claimed}");
    let secret_uid = c.ok(&[
        "get",
        "secret",
        "bot-token",
        "-o",
        "jsonpath={.metadata.uid}",
    ])?;
    assert_eq!(
        claimed["kubernetes.io"]["secret"]["uid"],
        secret_uid.as_str()
    );
    let namespace = c.ok(&[
        "get",
        "secret",
        "bot-token",
        "-o",
        "jsonpath={.data.namespace}",
    ])?;
    assert_eq!(
        base64::engine::general_purpose::STANDARD.decode(namespace)?,
        b"default"
    );
    let ca = c.ok(&[
        "get",
        "secret",
        "bot-token",
        "-o",
        "jsonpath={.data.ca\\.crt}",
    ])?;
    let ca = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(ca)?)?;
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");

    let bare = bare_kubeconfig(&c)?;
    let whoami = |token: &str| -> Result<String> {
        let out = with_token(
            &bare,
            token,
            &[
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username}",
            ],
        )?;
        Ok(text(&out))
    };
    assert_eq!(whoami(&token)?, "system:serviceaccount:default:bot");
    c.ok(&["delete", "secret", "bot-token"])?;
    assert!(whoami(&token)?.contains("Unauthorized"));

    // The ServiceAccount's deletion takes its token Secrets with it.
    let second = token_secret(&c, "bot-token-2", "bot")?;
    assert_eq!(whoami(&second)?, "system:serviceaccount:default:bot");
    c.ok(&["delete", "serviceaccount", "bot"])?;
    eventually(Duration::from_secs(10), || {
        Ok(!c
            .kubectl(&["get", "secret", "bot-token-2"])?
            .status
            .success())
    })?;
    assert!(whoami(&second)?.contains("Unauthorized"));
    Ok(())
}
