//! Pod Security admission with the real kubectl: the `pod-security.kubernetes.io/*` namespace labels, the `baseline` default, upstream's refusals and warnings, and workloads warned about.

use std::process::Output;
use std::time::Duration;

use anyhow::{Result, bail};
use wasmkube_e2e::{Cluster, eventually};

const PRIVILEGED: &str = "apiVersion: v1
kind: Pod
metadata: {name: priv}
spec:
  containers:
  - name: c
    image: busybox
    securityContext: {privileged: true}
";

const HOST_PATH: &str = "apiVersion: v1
kind: Pod
metadata: {name: host}
spec:
  containers:
  - name: c
    image: busybox
    volumeMounts: [{name: h, mountPath: /host}]
  volumes:
  - {name: h, hostPath: {path: /etc}}
";

const PLAIN: &str = "apiVersion: v1
kind: Pod
metadata: {name: plain}
spec:
  containers:
  - {name: c, image: busybox}
";

/// What the restricted level says of [`PLAIN`].
const PLAIN_RESTRICTED: &str = r#"allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#;

/// `kubectl create -n NS -f -` of `manifest`.
fn create(c: &Cluster, ns: &str, manifest: &str) -> Result<Output> {
    c.kubectl_stdin(&["create", "-n", ns, "-f", "-"], Some(manifest))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Creating `manifest` in `ns` fails with `message` (kubectl's whole line).
fn refused(c: &Cluster, ns: &str, manifest: &str, message: &str) -> Result<()> {
    let out = create(c, ns, manifest)?;
    let err = stderr(&out);
    if out.status.success() || err.trim() != message {
        bail!("expected {message:?}, got {err:?}");
    }
    Ok(())
}

/// Creating `manifest` in `ns` succeeds; its warnings (kubectl's stderr).
fn created(c: &Cluster, ns: &str, manifest: &str) -> Result<String> {
    let out = create(c, ns, manifest)?;
    if !out.status.success() {
        bail!("kubectl create failed: {}", stderr(&out));
    }
    Ok(stderr(&out))
}

fn forbidden(pod: &str, level: &str, violations: &str) -> String {
    format!(
        "Error from server (Forbidden): error when creating \"STDIN\": pods \"{pod}\" is forbidden: violates PodSecurity \"{level}\": {violations}"
    )
}

#[test]
fn baseline_is_the_default_and_refuses_privileged_and_host_path_pods() -> Result<()> {
    let c = Cluster::start()?;
    c.ok(&["create", "namespace", "team"])?;
    let privileged = r#"privileged (container "c" must not set securityContext.privileged=true)"#;
    refused(
        &c,
        "team",
        PRIVILEGED,
        &forbidden("priv", "baseline:latest", privileged),
    )?;
    let host_path = r#"hostPath volumes (volume "h")"#;
    refused(
        &c,
        "team",
        HOST_PATH,
        &forbidden("host", "baseline:latest", host_path),
    )?;
    // Every violation at once, in upstream's order.
    let everything = "apiVersion: v1
kind: Pod
metadata: {name: all}
spec:
  hostNetwork: true
  hostPID: true
  securityContext: {sysctls: [{name: kernel.msgmax, value: '1'}, {name: net.ipv4.tcp_syncookies, value: '1'}]}
  containers:
  - name: c
    image: busybox
    ports: [{containerPort: 8080, hostPort: 8080}]
    securityContext: {privileged: true, capabilities: {add: [NET_ADMIN, CHOWN, SYS_ADMIN]}, seccompProfile: {type: Unconfined}}
  volumes:
  - {name: h, hostPath: {path: /}}
";
    let all = r#"non-default capabilities (container "c" must not include "NET_ADMIN", "SYS_ADMIN" in securityContext.capabilities.add), host namespaces (hostNetwork=true, hostPID=true), hostPath volumes (volume "h"), hostPort (container "c" uses hostPort 8080), privileged (container "c" must not set securityContext.privileged=true), seccompProfile (container "c" must not set securityContext.seccompProfile.type to "Unconfined"), forbidden sysctls (kernel.msgmax)"#;
    refused(
        &c,
        "team",
        everything,
        &forbidden("all", "baseline:latest", all),
    )?;
    // A plain pod passes baseline with no warning.
    assert_eq!(created(&c, "team", PLAIN)?, "");

    // `privileged` allows both; the default level still warns until warn says otherwise.
    c.ok(&[
        "label",
        "namespace",
        "team",
        "pod-security.kubernetes.io/enforce=privileged",
    ])?;
    let warned = created(&c, "team", PRIVILEGED)?;
    assert_eq!(
        warned.trim(),
        format!("Warning: would violate PodSecurity \"baseline:latest\": {privileged}")
    );
    c.ok(&[
        "label",
        "namespace",
        "team",
        "pod-security.kubernetes.io/warn=privileged",
    ])?;
    assert_eq!(created(&c, "team", HOST_PATH)?, "");
    c.ok(&["get", "pod", "-n", "team", "priv", "host"])?;

    // kube-system is privileged unless labelled.
    created(&c, "kube-system", PRIVILEGED)?;

    // Back to baseline: the pods already there that it would refuse are named.
    let out = c.kubectl(&[
        "label",
        "namespace",
        "team",
        "pod-security.kubernetes.io/enforce=baseline",
        "--overwrite",
    ])?;
    assert!(out.status.success());
    assert_eq!(
        stderr(&out),
        "Warning: existing pods in namespace \"team\" violate the new PodSecurity enforce level \"baseline:latest\"\n\
         Warning: host: hostPath volumes\n\
         Warning: priv: privileged\n"
    );
    // An update that changes no image is not checked again; one that does is.
    c.ok(&["label", "pod", "-n", "team", "priv", "touched=yes"])?;
    let out = c.kubectl(&["set", "image", "-n", "team", "pod/priv", "c=busybox:1"])?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "pods \"priv\" is forbidden: violates PodSecurity \"baseline:latest\": {privileged}"
        )),
        "{}",
        stderr(&out)
    );
    Ok(())
}

#[test]
fn restricted_names_every_violation_and_warn_prints_them() -> Result<()> {
    let c = Cluster::start()?;
    c.ok(&["create", "namespace", "strict"])?;
    c.ok(&[
        "label",
        "namespace",
        "strict",
        "pod-security.kubernetes.io/enforce=restricted",
    ])?;
    refused(
        &c,
        "strict",
        PLAIN,
        &forbidden("plain", "restricted:latest", PLAIN_RESTRICTED),
    )?;
    let hardened = "apiVersion: v1
kind: Pod
metadata: {name: hardened}
spec:
  securityContext: {runAsNonRoot: true, runAsUser: 1000, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: c
    image: busybox
    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}}
  volumes:
  - {name: scratch, emptyDir: {}}
";
    assert_eq!(created(&c, "strict", hardened)?, "");
    // A version label picks that version's checks: runAsUser=0 is refused from v1.23 on.
    let root = hardened
        .replace("name: hardened", "name: root")
        .replace("runAsUser: 1000", "runAsUser: 0");
    refused(
        &c,
        "strict",
        &root,
        &forbidden(
            "root",
            "restricted:latest",
            "runAsUser=0 (pod must not set runAsUser=0)",
        ),
    )?;
    c.ok(&[
        "label",
        "namespace",
        "strict",
        "pod-security.kubernetes.io/enforce-version=v1.22",
        "pod-security.kubernetes.io/warn=privileged",
    ])?;
    assert_eq!(created(&c, "strict", &root)?, "");

    // warn=restricted over the baseline default: allowed, with kubectl's `Warning:` line.
    c.ok(&["create", "namespace", "loose"])?;
    c.ok(&[
        "label",
        "namespace",
        "loose",
        "pod-security.kubernetes.io/warn=restricted",
    ])?;
    let warned = created(&c, "loose", PLAIN)?;
    assert_eq!(
        warned.trim(),
        format!("Warning: would violate PodSecurity \"restricted:latest\": {PLAIN_RESTRICTED}")
    );

    // Labels that are no level or version are refused, as upstream.
    let err = c.fails(&[
        "label",
        "namespace",
        "loose",
        "pod-security.kubernetes.io/enforce=strict",
    ])?;
    assert!(
        err.contains(r#"The Namespace "loose" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": must be one of privileged, baseline, restricted"#),
        "{err}"
    );
    Ok(())
}

#[test]
fn a_privileged_deployment_is_warned_about_and_its_pods_refused() -> Result<()> {
    let c = Cluster::start()?;
    let deployment = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: c
        image: busybox
        securityContext: {privileged: true}
";
    let privileged = r#"privileged (container "c" must not set securityContext.privileged=true)"#;
    let warned = created(&c, "default", deployment)?;
    assert_eq!(
        warned.trim(),
        format!("Warning: would violate PodSecurity \"baseline:latest\": {privileged}")
    );
    // The ReplicaSet's pods meet `enforce`: its controller records each refusal.
    let wanted = format!("is forbidden: violates PodSecurity \"baseline:latest\": {privileged}");
    eventually(Duration::from_secs(30), || {
        let events = c.ok(&[
            "get",
            "events",
            "-o",
            "jsonpath={range .items[*]}{.involvedObject.kind} {.reason} {.message}{\"\\n\"}{end}",
        ])?;
        Ok(events.lines().any(|e| {
            e.starts_with("ReplicaSet FailedCreate Error creating: pods \"web-")
                && e.contains(&wanted)
        }))
    })?;
    assert_eq!(c.ok(&["get", "pods", "-o", "name"])?, "");
    Ok(())
}

#[test]
fn the_default_level_is_a_server_flag() -> Result<()> {
    let c = Cluster::start_with(&["--pod-security-default", "restricted"])?;
    refused(
        &c,
        "default",
        PLAIN,
        &forbidden("plain", "restricted:latest", PLAIN_RESTRICTED),
    )?;
    created(&c, "kube-system", PLAIN)?;
    Ok(())
}
