//! A pod's ServiceAccount token with a real node agent: the `kube-api-access-*` volume holds a token bound to the pod, the cluster CA and the namespace; the token lists pods when its ServiceAccount is bound to `view`, is refused 403 otherwise, and dies with the pod. Needs root, containerd and the busybox image (scripts/setup.sh).

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use serde_json::Value;
use wasmkube_e2e::{Cluster, eventually};

const NODE: &str = "wk-sa";
const NS: &str = "sa";
const MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// A busybox pod `name` running as ServiceAccount `sa`.
fn pod(name: &str, sa: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  serviceAccountName: {sa}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: sh, image: docker.io/library/busybox:latest, imagePullPolicy: Never, command: [sleep, '3600']}}\n"
    )
}

/// A file of the pod's token volume, read in its container.
fn read(c: &Cluster, pod: &str, file: &str) -> Result<String> {
    let path = format!("{MOUNT}/{file}");
    let out = c.kubectl(&["exec", "-n", NS, pod, "--", "cat", &path])?;
    if !out.status.success() {
        bail!("cat {path}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// `GET path` of the API from the pod's network namespace at `https://kubernetes.default.svc`
/// (the `kubernetes` Service's address), the CA from the pod's volume, the pod's token as its
/// credential: the HTTP code and the body. busybox's wget speaks no TLS this server accepts,
/// so the host's curl runs in the pod's network namespace with the files the pod sees.
fn call(c: &Cluster, pod: &str, path: &str) -> Result<(String, String)> {
    let uid = c.ok(&[
        "get",
        "pod",
        "-n",
        NS,
        pod,
        "-o",
        "jsonpath={.metadata.uid}",
    ])?;
    let service = c.ok(&[
        "get",
        "service",
        "kubernetes",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ])?;
    let ca = c.dir.path().join(format!("{pod}-ca.crt"));
    std::fs::write(&ca, read(c, pod, "ca.crt")?)?;
    let token = read(c, pod, "token")?;
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/wk-{uid}"))
        .args([
            "curl",
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            "--cacert",
        ])
        .arg(&ca)
        .args([
            "--resolve",
            &format!("kubernetes.default.svc:443:{service}"),
        ])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .arg(format!("https://kubernetes.default.svc{path}"))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').context("curl printed no code")?;
    Ok((code.to_string(), body.to_string()))
}

#[test]
fn a_pods_mounted_token_reads_the_api_as_its_serviceaccount() -> Result<()> {
    let c = Cluster::node(NODE, "wksa0", "10.238.0.0/16", &[])?;
    c.ok(&["create", "namespace", NS])?;
    c.ok(&["create", "serviceaccount", "reader", "-n", NS])?;
    c.ok(&["create", "serviceaccount", "nobody", "-n", NS])?;
    c.ok(&[
        "create",
        "rolebinding",
        "reader-view",
        "-n",
        NS,
        "--clusterrole",
        "view",
        "--serviceaccount",
        &format!("{NS}:reader"),
    ])?;
    c.apply(&[pod("reader", "reader"), pod("nobody", "nobody")].join("---\n"))?;
    eventually(Duration::from_secs(90), || {
        let phases = c.ok(&[
            "get",
            "pods",
            "-n",
            NS,
            "-o",
            "jsonpath={.items[*].status.phase}",
        ])?;
        Ok(phases == "Running Running")
    })?;

    // The volume: a token bound to this pod, the CA, the namespace.
    let spec: Value =
        serde_json::from_str(&c.ok(&["get", "pod", "-n", NS, "reader", "-o", "json"])?)?;
    let mount = &spec["spec"]["containers"][0]["volumeMounts"][0];
    assert_eq!(mount["mountPath"], MOUNT);
    assert!(
        mount["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("kube-api-access-"))
    );
    assert_eq!(read(&c, "reader", "namespace")?, NS);
    let ca = c.ok(&[
        "get",
        "configmap",
        "kube-root-ca.crt",
        "-n",
        NS,
        "-o",
        "jsonpath={.data.ca\\.crt}",
    ])?;
    assert_eq!(read(&c, "reader", "ca.crt")?, ca);
    let token = read(&c, "reader", "token")?;
    let payload = token.split('.').nth(1).context("a JWT")?;
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?)?;
    assert_eq!(claims["sub"], format!("system:serviceaccount:{NS}:reader"));
    assert_eq!(
        claims["kubernetes.io"]["pod"]["uid"],
        spec["metadata"]["uid"]
    );
    let lifetime = claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0);
    assert_eq!(lifetime, 3607);

    // Bound to view: lists pods here; not Secrets, nor pods elsewhere; without a binding, 403.
    let (code, body) = call(&c, "reader", &format!("/api/v1/namespaces/{NS}/pods"))?;
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("\"name\":\"nobody\""), "{body}");
    let (code, body) = call(&c, "reader", &format!("/api/v1/namespaces/{NS}/secrets"))?;
    assert_eq!(code, "403", "{body}");
    let (code, _) = call(&c, "reader", "/api/v1/namespaces/default/pods")?;
    assert_eq!(code, "403");
    let (code, body) = call(&c, "nobody", &format!("/api/v1/namespaces/{NS}/pods"))?;
    assert_eq!(code, "403", "{body}");
    assert!(
        body.contains(&format!(
            r#"pods is forbidden: User \"system:serviceaccount:{NS}:nobody\" cannot list resource \"pods\" in API group \"\" in the namespace \"{NS}\""#
        )),
        "{body}"
    );

    // A pod that opts out gets no volume.
    c.apply(&pod("plain", "reader").replace(
        "  serviceAccountName: reader\n",
        "  serviceAccountName: reader\n  automountServiceAccountToken: false\n",
    ))?;
    let volumes = c.ok(&[
        "get",
        "pod",
        "-n",
        NS,
        "plain",
        "-o",
        "jsonpath={.spec.volumes}",
    ])?;
    assert_eq!(volumes, "", "no volume");

    // The token dies with its pod.
    let kubeconfig_token = token.clone();
    c.ok(&["delete", "pod", "-n", NS, "reader", "--wait=true"])?;
    let bare = c.kubeconfig();
    let out = c.kubectl(&[
        "--token",
        &kubeconfig_token,
        "--kubeconfig",
        "/dev/null",
        "--server",
        &server_url(&bare)?,
        "--insecure-skip-tls-verify",
        "get",
        "pods",
        "-n",
        NS,
    ])?;
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Unauthorized"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The server URL of a kubeconfig.
fn server_url(kubeconfig: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(kubeconfig)?
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: ").map(str::to_string))
        .context("no server in the kubeconfig")
}
