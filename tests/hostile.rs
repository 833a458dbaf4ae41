//! Hostile input: requests an attacker would send get the exact refusal (HTTP status, `Status`
//! naming the field), and the server keeps serving with nothing lost (docs/security.md).

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Result, bail};
use serde_json::Value;
use wasmkube_e2e::Cluster;

/// An HTTPS request to the cluster with its admin token: the status code and the body.
fn request(
    c: &Cluster,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Result<(u16, Value)> {
    let mut child = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "60",
            "-w",
            "\n%{http_code}",
            "-X",
            method,
        ])
        .arg("--cacert")
        .arg(c.dir.path().join("pki/ca.crt"))
        .args([
            "-H",
            &format!("Authorization: Bearer {}", c.token()?),
            "-H",
            &format!("Content-Type: {content_type}"),
            "--data-binary",
            "@-",
        ])
        .arg(format!("https://127.0.0.1:{}{path}", c.port))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?
        .write_all(body)?;
    let out = child.wait_with_output()?;
    let text = String::from_utf8(out.stdout)?;
    let Some((body, code)) = text.rsplit_once('\n') else {
        bail!("curl printed no status: {text:?}");
    };
    Ok((
        code.trim().parse()?,
        serde_json::from_str(body).unwrap_or(Value::Null),
    ))
}

/// Asserts a `Status` with `code` whose message contains `needle`.
fn refused(answer: (u16, Value), code: u16, needle: &str) {
    let (status, body) = answer;
    assert_eq!(status, code, "{body}");
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["code"], code, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "{needle:?} not in {message:?}");
}

/// Asserts a 422 `Status` whose causes name `field`.
fn invalid_field(answer: (u16, Value), field: &str, needle: &str) {
    let body = answer.1.clone();
    refused(answer, 422, needle);
    let causes = body["details"]["causes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        causes.iter().any(|c| c["field"] == field),
        "{field} not among the causes of {body}"
    );
}

/// Posts each pod body and asserts the 422 naming its field: (body, field, message part).
fn pods_refused(c: &Cluster, cases: &[(String, &str, &str)]) -> Result<()> {
    for (body, field, needle) in cases {
        invalid_field(
            request(c, "POST", PODS, JSON, body.as_bytes())?,
            field,
            needle,
        );
    }
    Ok(())
}

fn pod(name: &str, spec: &str) -> String {
    format!(r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},"spec":{spec}}}"#)
}

const PODS: &str = "/api/v1/namespaces/default/pods";
const JSON: &str = "application/json";

#[test]
fn hostile_requests_are_refused_and_the_server_lives() -> Result<()> {
    let c = Cluster::start()?;
    c.ok(&["create", "configmap", "victim", "--from-literal=k=v"])?;

    // 2. A grace period past chrono's range is capped (a panic once: the pod could not go).
    c.apply("apiVersion: v1\nkind: Node\nmetadata:\n  name: quiet\n")?;
    c.apply("apiVersion: v1\nkind: Pod\nmetadata:\n  name: huge\nspec:\n  nodeName: quiet\n  terminationGracePeriodSeconds: 9223372036854775807\n  containers: [{name: c, image: busybox}]\n")?;
    c.ok(&["delete", "pod", "huge", "--wait=false"])?;
    let marked = c.ok(&[
        "get",
        "pod",
        "huge",
        "-o",
        "jsonpath={.metadata.deletionGracePeriodSeconds}",
    ])?;
    assert_eq!(marked, "31536000", "a year at most");
    c.ok(&["delete", "pod", "huge", "--grace-period=0", "--force"])?;
    c.fails(&["get", "pod", "huge"])?;
    pods_refused(
        &c,
        &[(
            pod(
                "late",
                r#"{"activeDeadlineSeconds":9223372036854775807,"containers":[{"name":"c","image":"busybox"}]}"#,
            ),
            "spec.activeDeadlineSeconds",
            "must be between 1 and 2147483647, inclusive",
        )],
    )?;

    // 3. Patch and body amplification.
    c.ok(&[
        "create",
        "configmap",
        "amp",
        "--from-literal=a=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    ])?;
    let mut ops = vec![r#"{"op":"add","path":"/data/b","value":"y"}"#.to_string()];
    ops.push(r#"{"op":"add","path":"/metadata/annotations","value":{}}"#.into());
    for i in 0..24 {
        ops.push(format!(
            r#"{{"op":"copy","from":"/data","path":"/metadata/annotations/c{i}"}}"#
        ));
        ops.push(format!(
            r#"{{"op":"copy","from":"/metadata/annotations","path":"/data/d{i}"}}"#
        ));
    }
    let amp = "/api/v1/namespaces/default/configmaps/amp";
    refused(
        request(
            &c,
            "PATCH",
            amp,
            "application/json-patch+json",
            format!("[{}]", ops.join(",")).as_bytes(),
        )?,
        422,
        "accumulated size increase of copy",
    );
    let many = vec![r#"{"op":"test","path":"/kind","value":"ConfigMap"}"#; 10_001].join(",");
    refused(
        request(
            &c,
            "PATCH",
            amp,
            "application/json-patch+json",
            format!("[{many}]").as_bytes(),
        )?,
        413,
        "The allowed maximum operations in a JSON patch is 10000, got 10001",
    );
    // A billion laughs of ~300 KB, sent as server-side apply YAML.
    let mut laughs =
        String::from("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: laughs}\nx: &a [");
    laughs.push_str(&vec!["lol"; 66_000].join(","));
    laughs.push_str("]\ny: &b [");
    laughs.push_str(&vec!["*a"; 1000].join(","));
    laughs.push_str("]\nz: [");
    laughs.push_str(&vec!["*b"; 1000].join(","));
    laughs.push_str("]\n");
    assert!(laughs.len() > 250_000);
    refused(
        request(
            &c,
            "PATCH",
            "/api/v1/namespaces/default/configmaps/laughs?fieldManager=t",
            "application/apply-patch+yaml",
            laughs.as_bytes(),
        )?,
        400,
        "aliases expand to more than",
    );
    let deep = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"deep"}},"x":{}1{}}}"#,
        "[".repeat(120),
        "]".repeat(120)
    );
    refused(
        request(
            &c,
            "POST",
            "/api/v1/namespaces/default/configmaps",
            JSON,
            deep.as_bytes(),
        )?,
        400,
        "deeper than 100 levels",
    );

    // 4. Resource quantities.
    let resources = |requests: &str, limits: &str| {
        pod(
            "res",
            &format!(
                r#"{{"containers":[{{"name":"c","image":"busybox","resources":{{"requests":{requests},"limits":{limits}}}}}]}}"#
            ),
        )
    };
    pods_refused(
        &c,
        &[
            (
                resources(r#"{"cpu":"-100"}"#, "{}"),
                "spec.containers[0].resources.requests[cpu]",
                "must be greater than or equal to 0",
            ),
            (
                // A number, as YAML's `cpu: -100` sends it: a Quantity too, so the same 422.
                resources(r#"{"cpu":-100}"#, "{}"),
                "spec.containers[0].resources.requests[cpu]",
                "must be greater than or equal to 0",
            ),
            (
                resources("{}", r#"{"memory":"512mi"}"#),
                "spec.containers[0].resources.limits[memory]",
                "quantities must match the regular expression",
            ),
            (
                resources(r#"{"cpu":"2"}"#, r#"{"cpu":"1"}"#),
                "spec.containers[0].resources.requests[cpu]",
                "must be less than or equal to cpu limit of 1",
            ),
        ],
    )?;

    // Numeric quantities are accepted, as strings.
    let (code, created) = request(
        &c,
        "POST",
        PODS,
        JSON,
        resources(r#"{"cpu":1,"memory":1000000}"#, r#"{"cpu":2}"#).as_bytes(),
    )?;
    assert_eq!(code, 201, "{created}");
    assert_eq!(
        created["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "1"
    );
    assert_eq!(
        created["spec"]["containers"][0]["resources"]["limits"]["cpu"],
        "2"
    );

    // 5. Names and paths that would leave their volume or namespace.
    let volume = |volume: &str, mount: &str| {
        pod(
            "vol",
            &format!(
                r#"{{"volumes":[{volume}],"containers":[{{"name":"c","image":"busybox","volumeMounts":[{mount}]}}]}}"#
            ),
        )
    };
    pods_refused(
        &c,
        &[
            (
                volume(
                    r#"{"name":"v","configMap":{"name":"victim","items":[{"key":"k","path":"../../../../../tmp/x"}]}}"#,
                    r#"{"name":"v","mountPath":"/v"}"#,
                ),
                "spec.volumes[0].configMap.items[0].path",
                "must not contain '..'",
            ),
            (
                volume(
                    r#"{"name":"v","emptyDir":{}}"#,
                    r#"{"name":"v","mountPath":"/v","subPath":"../../.."}"#,
                ),
                "spec.containers[0].volumeMounts[0].subPath",
                "must not contain '..'",
            ),
            (
                volume(
                    r#"{"name":"v","secret":{"secretName":"../../kube-system/secrets/x"}}"#,
                    r#"{"name":"v","mountPath":"/v"}"#,
                ),
                "spec.volumes[0].secret.secretName",
                "a lowercase RFC 1123 subdomain",
            ),
            (
                volume(
                    r#"{"name":"../v","emptyDir":{}}"#,
                    r#"{"name":"../v","mountPath":"/v"}"#,
                ),
                "spec.volumes[0].name",
                "a lowercase RFC 1123 label",
            ),
        ],
    )?;

    // 6. A CRD may not take over a built-in resource, nor carry a pattern that does not compile.
    let crd = |group: &str, plural: &str, pattern: &str| {
        format!(
            r#"{{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{{"name":"{plural}.{group}"}},"spec":{{"group":"{group}","scope":"Namespaced","names":{{"plural":"{plural}","kind":"Thing"}},"versions":[{{"name":"v1","served":true,"storage":true,"schema":{{"openAPIV3Schema":{{"type":"object","properties":{{"x":{{"type":"string","pattern":"{pattern}"}}}}}}}}}}]}}}}"#
        )
    };
    let crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    invalid_field(
        request(
            &c,
            "POST",
            crds,
            JSON,
            crd("coordination.k8s.io", "leases", "^a$").as_bytes(),
        )?,
        "spec.group",
        "is served by the apiserver itself",
    );
    invalid_field(
        request(
            &c,
            "POST",
            crds,
            JSON,
            crd("example.com", "things", "(unclosed").as_bytes(),
        )?,
        "spec.versions[0].schema.openAPIV3Schema.properties[x].pattern",
        "must be a valid regular expression",
    );
    c.ok(&["get", "leases", "-A"])?;
    // Made-up paths make no metric series of their own, and no OpenAPI document.
    for i in 0..20 {
        let path = format!("/api/v1/namespaces/default/made-up-{i}");
        refused(request(&c, "GET", &path, JSON, b"")?, 404, "");
        let path = format!("/openapi/v3/apis/made.up/v{i}");
        assert_eq!(request(&c, "GET", &path, JSON, b"")?.0, 404);
    }
    let metrics = c.ok(&["get", "--raw", "/metrics"])?;
    assert!(!metrics.contains("made-up"));
    assert!(metrics.contains(r#"resource="unknown",code="404""#));

    // 8. System namespaces stay.
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let err = c.fails(&["delete", "namespace", ns])?;
        assert!(
            err.contains(&format!(
                "namespaces \"{ns}\" is forbidden: this namespace may not be deleted"
            )),
            "{err}"
        );
    }

    // Still serving, nothing lost.
    assert_eq!(c.ok(&["get", "--raw", "/readyz"])?, "ok");
    assert_eq!(
        c.ok(&["get", "configmap", "victim", "-o", "jsonpath={.data.k}"])?,
        "v"
    );
    assert_eq!(
        c.ok(&["get", "configmap", "amp", "-o", "jsonpath={.data.a}"])?,
        "x".repeat(32)
    );
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        c.ok(&["get", "namespace", ns])?;
    }
    c.ok(&["get", "pod", "res"])?;
    Ok(())
}

/// Holds `count` idle TCP connections to `port` (no TLS, nothing sent) in a bash process, so
/// that the test's own open-file limit is not what runs out; prints "open" once they are.
fn idle_connections(port: u16, count: usize) -> Result<std::process::Child> {
    let script = format!(
        "ulimit -n $(ulimit -Hn); for i in $(seq {count}); do exec {{fd}}<>/dev/tcp/127.0.0.1/{port} || break; done; echo open; sleep 600"
    );
    Ok(Command::new("bash")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?)
}

#[test]
fn twenty_thousand_idle_connections_do_not_stop_the_api() -> Result<()> {
    use std::io::BufRead;
    let c = Cluster::start()?;
    c.ok(&["create", "configmap", "victim", "--from-literal=k=v"])?;
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut holder = idle_connections(c.port, 10_000)?;
        let stdout = holder
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        assert_eq!(line.trim(), "open");
        holders.push(holder);
    }
    // While they are held, kubectl is served (a newcomer that finishes its handshake pushes
    // out the oldest connection still waiting in its own).
    assert_eq!(
        c.ok(&[
            "get",
            "configmap",
            "victim",
            "-o",
            "jsonpath={.data.k}",
            "--request-timeout=30s"
        ])?,
        "v"
    );
    for mut holder in holders {
        let _ = holder.kill();
        let _ = holder.wait();
    }
    assert_eq!(c.ok(&["get", "--raw", "/readyz"])?, "ok");
    c.ok(&["create", "configmap", "after", "--from-literal=k=v"])?;
    Ok(())
}

#[test]
fn events_expire_after_the_event_ttl() -> Result<()> {
    let c = Cluster::start_with(&["--event-ttl", "3s"])?;
    let event = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Event\nmetadata:\n  name: {name}\ninvolvedObject: {{kind: ConfigMap, name: x, namespace: default}}\nreason: Test\nmessage: m\ntype: Normal\n"
        )
    };
    c.apply(&event("short-lived"))?;
    c.ok(&["get", "event", "short-lived"])?;
    wasmkube_e2e::eventually(std::time::Duration::from_secs(20), || {
        Ok(!c
            .kubectl(&["get", "event", "short-lived"])?
            .status
            .success())
    })?;
    c.ok(&["get", "namespace", "default"])?;
    Ok(())
}

/// `curl` of `https://NAME:PORT/readyz` resolving NAME to 127.0.0.1 and trusting only the
/// cluster's CA: whether the serving certificate is valid for NAME.
fn certificate_names(c: &Cluster, name: &str) -> Result<bool> {
    let status = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--max-time", "20", "--resolve"])
        .arg(format!("{name}:{}:127.0.0.1", c.port))
        .arg("--cacert")
        .arg(c.dir.path().join("pki/ca.crt"))
        .arg(format!("https://{name}:{}/readyz", c.port))
        .status()?;
    Ok(status.success())
}

#[test]
fn the_api_listens_where_told_with_a_certificate_for_the_hosts_names() -> Result<()> {
    let c = Cluster::start_with(&[
        "--bind-address",
        "127.0.0.1",
        "--tls-san",
        "api.example.test",
    ])?;
    let kubeconfig = std::fs::read_to_string(c.kubeconfig())?;
    assert!(kubeconfig.contains(&format!("server: https://127.0.0.1:{}\n", c.port)));
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
    for name in ["api.example.test", "localhost", hostname.trim()] {
        assert!(certificate_names(&c, name)?, "{name}");
    }
    assert!(!certificate_names(&c, "other.example.test")?);
    // Bound to loopback: the host's other addresses do not answer.
    let ip = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()?;
    let global = String::from_utf8_lossy(&ip.stdout)
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next()?.parse::<std::net::IpAddr>().ok());
    if let Some(ip) = global {
        let addr = std::net::SocketAddr::new(ip, c.port);
        let refused =
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)).is_err();
        assert!(refused, "{addr} answers");
    }
    assert_eq!(c.ok(&["get", "--raw", "/readyz"])?, "ok");
    Ok(())
}

/// The data directory is private: the directories 0700, the CA and serving keys, the token, the
/// kubeconfig and the store (which holds every Secret) 0600. A token file cut short is refused
/// at start with an error that says what to do, and nothing starts serving with it.
#[test]
fn files_are_private_and_a_short_token_is_refused() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut c = Cluster::start()?;
    let dir = c.dir.path().to_path_buf();
    let mode = |path: &str| -> Result<u32> {
        Ok(std::fs::metadata(dir.join(path))?.permissions().mode() & 0o777)
    };
    for private_dir in ["", "pki"] {
        assert_eq!(mode(private_dir)?, 0o700, "{private_dir:?}");
    }
    for private_file in [
        "pki/ca.key",
        "pki/server.key",
        "pki/token",
        "kubeconfig",
        "store.redb",
    ] {
        assert_eq!(mode(private_file)?, 0o600, "{private_file}");
    }

    c.kill();
    std::fs::write(dir.join("pki/token"), "short\n")?;
    let started = Command::new(wasmkube_e2e::binary())
        .args(["server", "--port", "0", "--data-dir"])
        .arg(&dir)
        .env_remove("RUST_BACKTRACE")
        .output()?;
    assert!(!started.status.success());
    let err = String::from_utf8_lossy(&started.stderr);
    assert!(
        err.contains("holds a token shorter than 32 characters"),
        "{err}"
    );
    Ok(())
}
