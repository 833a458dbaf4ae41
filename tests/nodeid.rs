//! Node identities with the real kubectl: CertificateSigningRequests approved with `kubectl certificate approve` and signed by the cluster CA, bootstrap tokens from `wasmkube token create` whose node client requests are approved on their own, and what a node's certificate may (not) do.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use wasmkube_e2e::{Cluster, kubectl_at};

const CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";
const SERVING: &str = "kubernetes.io/kubelet-serving";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs openssl with `stdin`, returning stdout.
fn openssl(args: &[&str], stdin: Option<&[u8]>) -> Result<Vec<u8>> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running openssl")?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write as _;
        pipe.write_all(input)?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
}

/// A new P-256 key in `dir` and a PEM request for `subject` (`/O=…/CN=…`) with `san`.
fn request(dir: &Path, name: &str, subject: &str, san: Option<&str>) -> Result<(PathBuf, Vec<u8>)> {
    let key = dir.join(format!("{name}.key"));
    let key_arg = key.display().to_string();
    let mut args = vec![
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &key_arg,
        "-subj",
        subject,
    ];
    let ext;
    if let Some(san) = san {
        ext = format!("subjectAltName={san}");
        args.extend(["-addext", &ext]);
    }
    Ok((key, openssl(&args, None)?))
}

/// A CertificateSigningRequest manifest.
fn csr_manifest(name: &str, pem: &[u8], signer: &str, usages: &[&str]) -> String {
    format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {{name: {name}}}\nspec:\n  request: {}\n  signerName: {signer}\n  usages: [{}]\n",
        b64(pem),
        usages.join(", ")
    )
}

/// The cluster's server and CA lines of the admin kubeconfig, and a user of `credentials`.
fn kubeconfig(c: &Cluster, name: &str, credentials: &str) -> Result<PathBuf> {
    let admin = std::fs::read_to_string(c.kubeconfig())?;
    let line = |key: &str| {
        admin
            .lines()
            .find(|l| l.trim_start().starts_with(key))
            .map(|l| l.trim().to_string())
            .with_context(|| format!("no {key} in the admin kubeconfig"))
    };
    let config = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    {}\n    {}\nusers:\n- name: u\n  user:\n{credentials}contexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n",
        line("server:")?,
        line("certificate-authority-data:")?
    );
    let path = c.kubeconfig().with_file_name(format!("{name}.kubeconfig"));
    std::fs::write(&path, config)?;
    Ok(path)
}

/// A kubeconfig with the issued certificate of the CSR `csr` and the key at `key`.
fn certificate_kubeconfig(c: &Cluster, csr: &str, key: &Path) -> Result<PathBuf> {
    let issued = c.ok(&["get", "csr", csr, "-o", "jsonpath={.status.certificate}"])?;
    if issued.is_empty() {
        bail!(
            "{csr} has no certificate: {}",
            c.ok(&["get", "csr", csr, "-o", "yaml"])?
        );
    }
    let key = b64(&std::fs::read(key)?);
    kubeconfig(
        c,
        csr,
        &format!("    client-certificate-data: {issued}\n    client-key-data: {key}\n"),
    )
}

/// `kubectl auth whoami -o jsonpath` of a kubeconfig's user: name and groups.
fn whoami(kubeconfig: &Path) -> Result<String> {
    let out = kubectl_at(
        kubeconfig,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
        ],
        None,
    )?;
    if !out.status.success() {
        bail!("whoami: {}", text(&out));
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// `kubectl create` of `manifest`, which must fail: its output.
fn refused(c: &Cluster, manifest: &str) -> Result<String> {
    let out = c.kubectl_stdin(&["create", "-f", "-"], Some(manifest))?;
    if out.status.success() {
        bail!("created: {}", text(&out));
    }
    Ok(text(&out))
}

#[test]
fn kubectl_approves_and_denies_and_the_ca_signs() -> Result<()> {
    let c = Cluster::start()?;
    let dir = tempfile::tempdir()?;
    let serving = ["digital signature", "server auth"];
    let (_, pem) = request(
        dir.path(),
        "a",
        "/O=system:nodes/CN=system:node:a",
        Some("IP:10.0.0.1"),
    )?;
    c.apply(&csr_manifest("serve-a", &pem, SERVING, &serving))?;
    let (_, pem) = request(
        dir.path(),
        "b",
        "/O=system:nodes/CN=system:node:b",
        Some("DNS:b.example"),
    )?;
    c.apply(&csr_manifest("serve-b", &pem, SERVING, &serving))?;

    let listed = c.ok(&["get", "csr"])?;
    assert!(
        listed.contains("SIGNERNAME") && listed.contains("REQUESTOR"),
        "{listed}"
    );
    let line = listed
        .lines()
        .find(|l| l.starts_with("serve-a"))
        .context("listed")?;
    assert!(
        line.contains(SERVING) && line.contains("kubernetes-admin") && line.ends_with("Pending"),
        "{line}"
    );

    c.ok(&["certificate", "approve", "serve-a"])?;
    c.ok(&["certificate", "deny", "serve-b"])?;
    let listed = c.ok(&["get", "csr"])?;
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("serve-a") && l.ends_with("Approved,Issued")),
        "{listed}"
    );
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("serve-b") && l.ends_with("Denied")),
        "{listed}"
    );
    let issued = c.ok(&[
        "get",
        "csr",
        "serve-a",
        "-o",
        "jsonpath={.status.certificate}",
    ])?;
    let pem = base64::engine::general_purpose::STANDARD.decode(issued.trim())?;
    let shown = String::from_utf8(openssl(
        &[
            "x509",
            "-noout",
            "-subject",
            "-ext",
            "subjectAltName,extendedKeyUsage",
        ],
        Some(&pem),
    )?)?;
    assert!(
        shown.contains("CN=system:node:a") || shown.contains("CN = system:node:a"),
        "{shown}"
    );
    assert!(
        shown.contains("IP Address:10.0.0.1") && shown.contains("TLS Web Server Authentication"),
        "{shown}"
    );
    let ca = std::fs::read(c.kubeconfig().with_file_name("pki").join("ca.crt"))?;
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, ca)?;
    let cert_file = dir.path().join("a.crt");
    std::fs::write(&cert_file, &pem)?;
    let verified = openssl(
        &[
            "verify",
            "-CAfile",
            &ca_file.display().to_string(),
            &cert_file.display().to_string(),
        ],
        None,
    )?;
    assert!(String::from_utf8(verified)?.contains(": OK"));

    // Approval conditions stay; the spec and the certificate do not change.
    let err = c.fails(&[
        "patch",
        "csr",
        "serve-b",
        "--subresource",
        "approval",
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/status/conditions/0"}]"#,
    ])?;
    assert!(
        err.contains(r#"updates may not remove a condition of type \"Denied\""#)
            || err.contains("updates may not remove a condition"),
        "{err}"
    );

    // A request that is not one: 422 naming spec.request; a bad usage names it too.
    let bad = csr_manifest(
        "bad",
        b"-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n",
        SERVING,
        &serving,
    );
    let err = refused(&c, &bad)?;
    assert!(
        err.contains("spec.request: Invalid value")
            && err.contains("not a valid certificate request"),
        "{err}"
    );
    let (_, pem) = request(dir.path(), "c", "/CN=c", None)?;
    let err = refused(
        &c,
        &csr_manifest("bad-usage", &pem, "example.com/x", &["flying"]),
    )?;
    assert!(
        err.contains(r#"spec.usages[0]: Unsupported value: "flying""#),
        "{err}"
    );
    Ok(())
}

#[test]
fn a_bootstrap_token_gets_a_node_certificate_approved_on_its_own() -> Result<()> {
    let c = Cluster::start()?;
    let dir = tempfile::tempdir()?;
    let created = c.wasmkube(&["token", "create", "--ttl", "1h"])?;
    let mut lines = created.lines();
    let token = lines.next().context("a token")?.to_string();
    let join = lines.next().context("a join line")?;
    assert!(token.len() == 23 && token.as_bytes()[6] == b'.', "{token}");
    // kubeadm's recipe for the pin: the SHA-256 of the CA's public key info.
    let ca = std::fs::read(c.kubeconfig().with_file_name("pki").join("ca.crt"))?;
    let public = openssl(&["x509", "-pubkey", "-noout"], Some(&ca))?;
    let der = openssl(&["pkey", "-pubin", "-outform", "der"], Some(&public))?;
    let hash = openssl(&["dgst", "-sha256", "-hex"], Some(&der))?;
    let hash = String::from_utf8(hash)?;
    let hex = hash.split_whitespace().last().context("a digest")?;
    assert!(
        join.starts_with("wasmkube join https://")
            && join.contains(&format!(
                "--token {token} --discovery-token-ca-cert-hash sha256:{hex}"
            )),
        "{join}"
    );
    let secret = c.ok(&[
        "get",
        "secret",
        "-n",
        "kube-system",
        &format!("bootstrap-token-{}", &token[..6]),
        "-o",
        "jsonpath={.type}",
    ])?;
    assert_eq!(secret, "bootstrap.kubernetes.io/token");

    let bootstrap = kubeconfig(&c, "bootstrap", &format!("    token: {token}\n"))?;
    assert_eq!(
        whoami(&bootstrap)?,
        format!(
            r#"system:bootstrap:{} ["system:bootstrappers","system:bootstrappers:kubeadm:default-node-token","system:authenticated"]"#,
            &token[..6]
        )
    );
    let out = kubectl_at(&bootstrap, &["get", "secrets", "-n", "kube-system"], None)?;
    assert!(
        text(&out).contains("cannot list resource \"secrets\""),
        "{}",
        text(&out)
    );
    let wrong = kubeconfig(
        &c,
        "wrong",
        &format!("    token: {}0000000000000000\n", &token[..7]),
    )?;
    let out = kubectl_at(&wrong, &["auth", "whoami"], None)?;
    assert!(text(&out).contains("Unauthorized"), "{}", text(&out));

    let client = ["digital signature", "client auth"];
    let (key, pem) = request(dir.path(), "n2", "/O=system:nodes/CN=system:node:n2", None)?;
    let out = kubectl_at(
        &bootstrap,
        &["create", "-f", "-"],
        Some(&csr_manifest("node-n2", &pem, CLIENT, &client)),
    )?;
    assert!(out.status.success(), "{}", text(&out));
    let shown = kubectl_at(&bootstrap, &["get", "csr", "node-n2"], None)?;
    assert!(text(&shown).contains("Approved,Issued"), "{}", text(&shown));
    let reason = c.ok(&[
        "get",
        "csr",
        "node-n2",
        "-o",
        "jsonpath={.status.conditions[0].reason}",
    ])?;
    assert_eq!(reason, "AutoApproved");
    let node = certificate_kubeconfig(&c, "node-n2", &key)?;
    assert_eq!(
        whoami(&node)?,
        r#"system:node:n2 ["system:nodes","system:authenticated"]"#
    );

    // Not a node client request: left for a person to approve.
    let (_, pem) = request(
        dir.path(),
        "n3",
        "/O=system:masters/CN=system:node:n3",
        None,
    )?;
    let out = kubectl_at(
        &bootstrap,
        &["create", "-f", "-"],
        Some(&csr_manifest("node-n3", &pem, CLIENT, &client)),
    )?;
    assert!(out.status.success(), "{}", text(&out));
    let shown = c.ok(&["get", "csr", "node-n3"])?;
    assert!(shown.contains("Pending"), "{shown}");
    // A bootstrap token may not approve.
    let out = kubectl_at(&bootstrap, &["certificate", "approve", "node-n3"], None)?;
    assert!(text(&out).contains("forbidden"), "{}", text(&out));

    // The node renews its own certificate with it (selfnodeclient), not another node's.
    let (_, pem) = request(dir.path(), "n2b", "/O=system:nodes/CN=system:node:n2", None)?;
    let out = kubectl_at(
        &node,
        &["create", "-f", "-"],
        Some(&csr_manifest("node-n2-renew", &pem, CLIENT, &client)),
    )?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        c.ok(&["get", "csr", "node-n2-renew"])?
            .contains("Approved,Issued")
    );
    let (_, pem) = request(dir.path(), "n4", "/O=system:nodes/CN=system:node:n4", None)?;
    let out = kubectl_at(
        &node,
        &["create", "-f", "-"],
        Some(&csr_manifest("node-n4", &pem, CLIENT, &client)),
    )?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(c.ok(&["get", "csr", "node-n4"])?.contains("Pending"));
    Ok(())
}

/// A pod bound to `node` that mounts the Secret `secret`.
fn bound_pod(name: &str, node: &str, secret: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: apps}}\nspec:\n  nodeName: {node}\n  containers: [{{name: c, image: busybox}}]\n  volumes: [{{name: s, secret: {{secretName: {secret}}}}}]\n"
    )
}

#[test]
fn a_node_reads_only_its_pods_secrets_and_writes_only_its_own_objects() -> Result<()> {
    let c = Cluster::start()?;
    let dir = tempfile::tempdir()?;
    c.ok(&["create", "namespace", "apps"])?;
    for n in ["n1", "n2"] {
        c.apply(&format!(
            "apiVersion: v1\nkind: Node\nmetadata: {{name: {n}}}\n"
        ))?;
        c.ok(&[
            "create",
            "secret",
            "generic",
            &format!("s-{n}"),
            "-n",
            "apps",
            "--from-literal=k=v",
        ])?;
        c.apply(&bound_pod(&format!("p-{n}"), n, &format!("s-{n}")))?;
    }
    c.ok(&[
        "create",
        "secret",
        "generic",
        "unused",
        "-n",
        "apps",
        "--from-literal=k=v",
    ])?;
    let (key, pem) = request(dir.path(), "n1", "/O=system:nodes/CN=system:node:n1", None)?;
    c.apply(&csr_manifest(
        "node-n1",
        &pem,
        CLIENT,
        &["digital signature", "client auth"],
    ))?;
    let n1 = certificate_kubeconfig(&c, "node-n1", &key)?;
    let run = |args: &[&str]| -> Result<String> { Ok(text(&kubectl_at(&n1, args, None)?)) };

    // The node authorizer: only the Secrets of pods bound to the node.
    assert!(run(&["get", "secret", "s-n1", "-n", "apps", "-o", "name"])?.contains("secret/s-n1"));
    for other in ["s-n2", "unused"] {
        let out = run(&["get", "secret", other, "-n", "apps"])?;
        assert!(out.contains(&format!(r#"secrets "{other}" is forbidden: User "system:node:n1" cannot get resource "secrets" in API group "" in the namespace "apps": no relationship found between node and this object"#)), "{out}");
    }
    let out = run(&["get", "secrets", "-n", "apps"])?;
    assert!(out.contains("cannot list resource \"secrets\""), "{out}");

    // NodeRestriction: its own Node, its own pods' status, no pods at all.
    let out = run(&["label", "node", "n2", "hacked=yes"])?;
    assert!(
        out.contains(r#"node \"n1\" is not allowed to modify node \"n2\""#)
            || out.contains(r#"node "n1" is not allowed to modify node "n2""#),
        "{out}"
    );
    assert!(run(&["label", "node", "n1", "mine=yes"])?.contains("labeled"));
    let out = kubectl_at(
        &n1,
        &["create", "-f", "-"],
        Some(&bound_pod("sneaky", "n1", "s-n2")),
    )?;
    assert!(
        text(&out).contains(r#"can not create pods"#),
        "{}",
        text(&out)
    );
    assert!(
        c.fails(&["get", "pod", "sneaky", "-n", "apps"])?
            .contains("NotFound")
    );
    // kubectl's patch reads pods/status first, which no node may: PUT it as the agent does.
    let put_status = |pod: &str| -> Result<String> {
        let mut object: serde_json::Value =
            serde_json::from_str(&c.ok(&["get", "pod", pod, "-n", "apps", "-o", "json"])?)?;
        object["status"]["message"] = serde_json::json!("from n1");
        let file = dir.path().join(format!("{pod}.json"));
        std::fs::write(&file, object.to_string())?;
        let uri = format!("/api/v1/namespaces/apps/pods/{pod}/status");
        run(&["replace", "--raw", &uri, "-f", &file.display().to_string()])
    };
    let out = put_status("p-n2")?;
    assert!(
        out.contains("can only update pod status for pods with spec.nodeName set to itself"),
        "{out}"
    );
    assert!(put_status("p-n1")?.contains(r#""message":"from n1""#));
    let out = run(&["delete", "pod", "p-n2", "-n", "apps", "--wait=false"])?;
    assert!(
        out.contains("can only delete pods with spec.nodeName set to itself"),
        "{out}"
    );
    let out = kubectl_at(
        &n1,
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: Node\nmetadata: {name: n3}\n"),
    )?;
    assert!(
        text(&out).contains(r#"is not allowed to create node"#),
        "{}",
        text(&out)
    );

    // Its own Lease only.
    let lease = |n: &str| {
        format!(
            "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {{name: {n}, namespace: kube-node-lease}}\nspec: {{holderIdentity: {n}}}\n"
        )
    };
    let out = kubectl_at(&n1, &["create", "-f", "-"], Some(&lease("n1")))?;
    assert!(out.status.success(), "{}", text(&out));
    let out = kubectl_at(&n1, &["create", "-f", "-"], Some(&lease("n2")))?;
    assert!(
        text(&out).contains("is not allowed to create lease"),
        "{}",
        text(&out)
    );
    let out = run(&["get", "lease", "n2", "-n", "kube-node-lease"])?;
    assert!(
        out.contains("can only access node lease with the same name as the requesting node"),
        "{out}"
    );

    // Its own EndpointSlice of kube-dns (its DNS server), no other.
    let slice = |name: &str| {
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}, namespace: kube-system, labels: {{kubernetes.io/service-name: kube-dns}}}}\naddressType: IPv4\nendpoints: [{{addresses: [10.1.0.1]}}]\n"
        )
    };
    let out = kubectl_at(&n1, &["create", "-f", "-"], Some(&slice("kube-dns-n1")))?;
    assert!(out.status.success(), "{}", text(&out));
    let out = kubectl_at(&n1, &["create", "-f", "-"], Some(&slice("kube-dns-n2")))?;
    assert!(
        text(&out).contains(r#"node "n1" is not allowed to create endpointslice "kube-dns-n2""#),
        "{}",
        text(&out)
    );
    c.apply(&slice("kube-dns-n2"))?;
    let out = run(&[
        "delete",
        "endpointslice",
        "kube-dns-n2",
        "-n",
        "kube-system",
    ])?;
    assert!(
        out.contains("can only write its own EndpointSlice kube-system/kube-dns-n1"),
        "{out}"
    );
    assert!(
        run(&[
            "delete",
            "endpointslice",
            "kube-dns-n1",
            "-n",
            "kube-system"
        ])?
        .contains("deleted")
    );
    Ok(())
}

/// `curl` of `path` on the cluster's server without credentials, trusting any certificate (as
/// a joining node does before it checks the pin): the HTTP status and the body.
fn anonymous_get(c: &Cluster, path: &str) -> Result<(String, String)> {
    let admin = std::fs::read_to_string(c.kubeconfig())?;
    let server = admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .context("a server")?;
    let out = Command::new("curl")
        .args(["-sk", "-w", "\n%{http_code}", &format!("{server}{path}")])
        .output()
        .context("running curl")?;
    let out = String::from_utf8(out.stdout)?;
    let (body, code) = out.rsplit_once('\n').context("a status")?;
    Ok((code.to_string(), body.to_string()))
}

#[test]
fn anyone_reads_cluster_info_and_nothing_else() -> Result<()> {
    let c = Cluster::start()?;
    let (code, body) = anonymous_get(&c, "/api/v1/namespaces/kube-public/configmaps/cluster-info")?;
    assert_eq!(code, "200", "{body}");
    let object: serde_json::Value = serde_json::from_str(&body)?;
    let published = object["data"]["kubeconfig"]
        .as_str()
        .context("a kubeconfig")?;
    let admin = std::fs::read_to_string(c.kubeconfig())?;
    let line = |config: &str, key: &str| {
        config
            .lines()
            .find(|l| l.trim_start().starts_with(key))
            .map(|l| l.trim().to_string())
    };
    for key in ["certificate-authority-data:", "server:"] {
        assert_eq!(line(published, key), line(&admin, key), "{published}");
    }
    for path in [
        "/api/v1/namespaces/kube-public/configmaps/kube-root-ca.crt",
        "/api/v1/namespaces/kube-public/configmaps",
        "/api/v1/namespaces/kube-system/secrets",
        "/api",
    ] {
        let (code, body) = anonymous_get(&c, path)?;
        assert_eq!(code, "401", "{path}: {body}");
    }
    Ok(())
}

/// `wasmkube join` with a `token create` line, up to the agent (whose containerd is missing
/// here, so that no pod network is touched): the CA found and pinned, the node's own key and
/// certificate in DATA/kubeconfig (0600) authenticating as `system:node:NAME`, the bootstrap
/// token and the admin's credentials nowhere in it; a wrong pin joins nothing.
#[test]
fn wasmkube_join_gets_the_nodes_own_certificate() -> Result<()> {
    let c = Cluster::start()?;
    let created = c.wasmkube(&["token", "create", "--ttl", "1h"])?;
    let mut lines = created.lines();
    let token = lines.next().context("a token")?.to_string();
    let line = lines.next().context("a join line")?;
    let args: Vec<&str> = line.split_whitespace().skip(2).collect();
    let dir = tempfile::tempdir()?;
    let join = |data: &Path, args: &[&str]| -> Result<std::process::Output> {
        Ok(Command::new(wasmkube_e2e::binary())
            .arg("join")
            .args(args)
            .arg("--data-dir")
            .arg(data)
            .args(["--node-name", "joiner", "--containerd"])
            .arg(dir.path().join("no-containerd.sock"))
            .env_remove("KUBECONFIG")
            .env("HOME", dir.path())
            .output()?)
    };

    let mut wrong: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let pin = wrong.last_mut().context("the pin")?;
    let flipped = if pin.ends_with('0') { '1' } else { '0' };
    pin.pop();
    pin.push(flipped);
    let wrong: Vec<&str> = wrong.iter().map(String::as_str).collect();
    let out = join(&dir.path().join("wrong"), &wrong)?;
    assert!(
        text(&out).contains("not the pinned") && !dir.path().join("wrong/kubeconfig").exists(),
        "{}",
        text(&out)
    );

    let data = dir.path().join("node");
    let out = join(&data, &args)?;
    let kubeconfig = data.join("kubeconfig");
    assert!(kubeconfig.exists(), "{}", text(&out));
    assert!(text(&out).contains("no-containerd.sock"), "{}", text(&out));
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&kubeconfig)?.permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        whoami(&kubeconfig)?,
        r#"system:node:joiner ["system:nodes","system:authenticated"]"#
    );
    let written = std::fs::read_to_string(&kubeconfig)?;
    assert!(
        !written.contains(&token) && !written.contains(&c.admin_certificate()?),
        "{written}"
    );
    let csr = c.ok(&["get", "csr", "-o", "jsonpath={.items[*].spec.username}"])?;
    assert_eq!(csr, format!("system:bootstrap:{}", &token[..6]));

    // Started again, the node uses its kubeconfig and asks for nothing.
    let out = join(&data, &args)?;
    assert!(text(&out).contains("no-containerd.sock"), "{}", text(&out));
    let csrs = c.ok(&["get", "csr", "-o", "name"])?;
    assert_eq!(csrs.lines().count(), 1, "{csrs}");
    Ok(())
}

/// `openssl s_server -www` on a free loopback port, presenting `cert` and `key` (it answers
/// any GET with a status page): the port, and the server, killed when dropped.
struct FakeAgent(std::process::Child);

impl FakeAgent {
    fn start(cert: &Path, key: &Path) -> Result<(u16, FakeAgent)> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(cert)
            .arg("-key")
            .arg(key)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("running openssl s_server")?;
        let agent = FakeAgent(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if std::time::Instant::now() > deadline {
                bail!("openssl s_server is not listening on {port}");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Ok((port, agent))
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The apiserver reaches a node agent only over TLS it verified: the serving certificate from
/// the cluster CA (a `kubelet-serving` request the admin approved: not a node's own, so not
/// approved on its own) and for the address it dials. A self-signed certificate, or the
/// cluster CA's for another address, gets `kubectl logs` a 500 naming the node, in Go's words.
#[test]
fn the_apiserver_reaches_only_an_agent_certified_for_its_address() -> Result<()> {
    let c = Cluster::start()?;
    let dir = tempfile::tempdir()?;
    c.apply("apiVersion: v1\nkind: Node\nmetadata: {name: impostor}\n")?;
    c.apply("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  nodeName: impostor\n  automountServiceAccountToken: false\n  containers: [{name: c, image: busybox}]\n")?;
    let agent_at = |port: u16| -> Result<()> {
        let status = format!(
            r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"127.0.0.1"}}],"daemonEndpoints":{{"kubeletEndpoint":{{"Port":{port}}}}}}}}}"#
        );
        c.ok(&[
            "patch",
            "node",
            "impostor",
            "--subresource=status",
            "--type=merge",
            "-p",
            &status,
        ])?;
        Ok(())
    };
    // The cluster CA's certificates for 127.0.0.1 and for 127.0.0.2.
    let issue = |name: &str, ip: &str| -> Result<(PathBuf, PathBuf)> {
        let subject = "/O=system:nodes/CN=system:node:impostor";
        let (key, pem) = request(dir.path(), name, subject, Some(&format!("IP:{ip}")))?;
        let usages = ["digital signature", "server auth"];
        c.apply(&csr_manifest(name, &pem, SERVING, &usages))?;
        assert!(c.ok(&["get", "csr", name])?.contains("Pending"));
        c.ok(&["certificate", "approve", name])?;
        let issued = c.ok(&["get", "csr", name, "-o", "jsonpath={.status.certificate}"])?;
        let cert = dir.path().join(format!("{name}.crt"));
        std::fs::write(
            &cert,
            base64::engine::general_purpose::STANDARD.decode(issued.trim())?,
        )?;
        Ok((cert, key))
    };
    let (right_cert, right_key) = issue("serving-right", "127.0.0.1")?;
    let (wrong_cert, wrong_key) = issue("serving-wrong", "127.0.0.2")?;
    let self_signed_key = dir.path().join("self.key");
    let self_signed_cert = dir.path().join("self.crt");
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/O=system:nodes/CN=system:node:impostor",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
            &self_signed_key.display().to_string(),
            "-out",
            &self_signed_cert.display().to_string(),
        ],
        None,
    )?;

    for (cert, key, why) in [
        (&self_signed_cert, &self_signed_key, "UnknownIssuer"),
        (&wrong_cert, &wrong_key, "not valid for name"),
    ] {
        let (port, _agent) = FakeAgent::start(cert, key)?;
        agent_at(port)?;
        let out = c.kubectl(&["logs", "p"])?;
        let said = text(&out);
        assert!(!out.status.success(), "{said}");
        let url = format!("Get \"https://127.0.0.1:{port}/containerLogs/default/p/c?container=c\"");
        assert!(
            said.contains("InternalError")
                && said.contains(&url)
                && said.contains("tls: failed to verify the serving certificate of node impostor")
                && said.contains(why),
            "{said}"
        );
    }
    let (port, _agent) = FakeAgent::start(&right_cert, &right_key)?;
    agent_at(port)?;
    let logs = c.ok(&["logs", "p"])?;
    assert!(logs.contains("s_server"), "{logs}");
    Ok(())
}
