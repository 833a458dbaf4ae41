//! Cluster DNS with a real node agent: a busybox pod asks the node's DNS server (on its pod
//! bridge's gateway address) about a Service, a headless Service and its StatefulSet pods, and
//! sees its own resolv.conf, /etc/hosts and hostname as the kubelet writes them; then reaches a
//! Service by its short, namespaced and full names through the kube-dns Service and the proxy.
//! Needs root, containerd and the busybox image (scripts/setup.sh).

use std::time::Duration;

use anyhow::{Result, bail};
use wasmkube_e2e::{Cluster, eventually};

const NODE: &str = "wk-dns";
const NS: &str = "dns";

/// A 2-replica busybox httpd Deployment or StatefulSet and its Service, named `name`, with a
/// port named `http`; a StatefulSet's Service is headless.
fn httpd(kind: &str, name: &str) -> String {
    let (service_name, cluster_ip) = match kind {
        "StatefulSet" => (format!("\n  serviceName: {name}"), "\n  clusterIP: None"),
        _ => (String::new(), ""),
    };
    format!(
        r#"
apiVersion: apps/v1
kind: {kind}
metadata: {{name: {name}, namespace: dns}}
spec:{service_name}
  replicas: 2
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {{name: httpd, image: docker.io/library/busybox:latest, imagePullPolicy: Never,
         command: [httpd, -f, -p, '8080', -h, /var/www], ports: [{{name: http, containerPort: 8080}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: dns}}
spec:{cluster_ip}
  selector: {{app: {name}}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---"#
    )
}

/// An ExternalName Service and two client pods: one with a hostname, subdomain and aliases,
/// one with its own DNS settings.
const MANIFESTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: dns}
spec: {type: ExternalName, externalName: example.org}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: dns}
spec:
  hostname: box
  subdomain: web
  setHostnameAsFQDN: true
  hostAliases: [{ip: 10.1.2.3, hostnames: [foo.remote, bar.remote]}]
  terminationGracePeriodSeconds: 1
  containers:
  - {name: sh, image: docker.io/library/busybox:latest, imagePullPolicy: Never, command: [sleep, '3600']}
---
apiVersion: v1
kind: Pod
metadata: {name: custom, namespace: dns}
spec:
  dnsPolicy: None
  dnsConfig:
    nameservers: [10.253.0.1]
    searches: [custom.example]
    options: [{name: ndots, value: '2'}, {name: edns0}]
  terminationGracePeriodSeconds: 1
  containers:
  - {name: sh, image: docker.io/library/busybox:latest, imagePullPolicy: Never, command: [sleep, '3600']}
"#;

/// Runs `command` in a pod's container; its stdout, or its output as the error.
fn exec(c: &Cluster, pod: &str, command: &[&str]) -> Result<String> {
    let mut args = vec!["exec", "-n", NS, pod, "--"];
    args.extend(command);
    let out = c.kubectl(&args)?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("{command:?} failed: {text}");
    }
    Ok(text)
}

/// `nslookup` from the client pod against the node's DNS server, until its output has `want`.
fn resolves(c: &Cluster, server: &str, query: &[&str], want: &str) -> Result<()> {
    let mut command = vec!["nslookup"];
    command.extend(query);
    command.push(server);
    let mut last = String::new();
    eventually(Duration::from_secs(60), || {
        last = exec(c, "client", &command).unwrap_or_else(|e| e.to_string());
        Ok(last.contains(want))
    })
    .map_err(|e| anyhow::anyhow!("{query:?} never answered {want:?}: {e}\nlast: {last}"))
}

fn get(c: &Cluster, args: &[&str]) -> Result<String> {
    let mut all = vec!["get", "-n", NS];
    all.extend(args);
    c.ok(&all)
}

#[test]
fn pods_resolve_services_and_statefulset_pods_through_the_node_dns() -> Result<()> {
    // Names outside the cluster domain go to a port on loopback where nothing listens, so
    // that no question (a search domain tried by a resolver) ever leaves the machine.
    let c = Cluster::node(
        NODE,
        "wkdns0",
        "10.253.0.0/16",
        &["--upstream-dns", "127.0.0.1:9"],
    )?;
    c.ok(&["create", "namespace", NS])?;
    c.apply(&[httpd("Deployment", "echo"), httpd("StatefulSet", "web")].concat())?;
    c.apply(MANIFESTS)?;

    // The cluster DNS Service, and this node's server as its endpoint.
    let kube_dns = ["get", "service", "kube-dns", "-n", "kube-system"];
    let cluster_ip = c.ok(&[&kube_dns[..], &["-o", "jsonpath={.spec.clusterIP}"]].concat())?;
    // The 10th address of the test cluster's service range (tests/lib.rs: 10.153.0.0/16 for
    // the pod network 10.253.0.0/16), as 10.96.0.10 is of the default 10.96.0.0/12.
    assert_eq!(cluster_ip, "10.153.0.10");
    let pod_cidr = c.ok(&["get", "node", NODE, "-o", "jsonpath={.spec.podCIDR}"])?;
    let server = pod_cidr.replace(".0/24", ".1");
    assert!(server.starts_with("10.253."), "{pod_cidr}");
    eventually(Duration::from_secs(30), || {
        let slice = c.kubectl(&[
            "get",
            "endpointslice",
            "-n",
            "kube-system",
            &format!("kube-dns-{NODE}"),
            "-o",
            "jsonpath={.endpoints[0].addresses[0]} {.endpoints[0].nodeName}",
        ])?;
        Ok(String::from_utf8_lossy(&slice.stdout) == format!("{server} {NODE}"))
    })?;

    eventually(Duration::from_secs(90), || {
        let phases = get(&c, &["pods", "-o", "jsonpath={.items[*].status.phase}"])?;
        Ok(phases.split(' ').filter(|p| *p == "Running").count() == 6)
    })?;

    // A Service: its ClusterIP, SRV for its named port, PTR back to its name.
    let echo_ip = get(&c, &["service", "echo", "-o", "jsonpath={.spec.clusterIP}"])?;
    let echo = format!("echo.{NS}.svc.cluster.local");
    resolves(&c, &server, &[&echo], &format!("Address: {echo_ip}"))?;
    let srv = format!("_http._tcp.{echo}");
    resolves(
        &c,
        &server,
        &["-type=srv", &srv],
        &format!("0 100 80 {echo}"),
    )?;
    resolves(&c, &server, &[&echo_ip], &format!("name = {echo}"))?;

    // A headless Service answers its ready pods; each StatefulSet pod has its own name.
    let web_0 = get(&c, &["pod", "web-0", "-o", "jsonpath={.status.podIP}"])?;
    let web_1 = get(&c, &["pod", "web-1", "-o", "jsonpath={.status.podIP}"])?;
    let web = format!("web.{NS}.svc.cluster.local");
    resolves(&c, &server, &[&web], &format!("Address: {web_0}"))?;
    resolves(&c, &server, &[&web], &format!("Address: {web_1}"))?;
    let pod_name = format!("web-0.{web}");
    resolves(&c, &server, &[&pod_name], &format!("Address: {web_0}"))?;
    let srv = format!("_http._tcp.{web}");
    resolves(
        &c,
        &server,
        &["-type=srv", &srv],
        &format!("8080 {pod_name}"),
    )?;
    resolves(&c, &server, &[&web_0], &format!("name = {pod_name}"))?;

    // ExternalName is a CNAME; unknown names are NXDOMAIN, known ones without the type NODATA.
    let ext = format!("ext.{NS}.svc.cluster.local");
    resolves(
        &c,
        &server,
        &["-type=cname", &ext],
        "canonical name = example.org",
    )?;
    let missing = format!("nope.{NS}.svc.cluster.local");
    let answer = exec(&c, "client", &["nslookup", &missing, &server]);
    let text = format!("{answer:?}");
    assert!(text.contains("NXDOMAIN"), "{text}");
    let answer = exec(&c, "client", &["nslookup", "-type=txt", &echo, &server])?;
    assert!(
        !answer.contains("NXDOMAIN") && !answer.contains("text ="),
        "NODATA: {answer}"
    );

    // The files and hostname the kubelet would give: ClusterFirst, hostname + subdomain as
    // FQDN, hostAliases; a StatefulSet pod's name in its own /etc/hosts; dnsPolicy None.
    let resolv = exec(&c, "client", &["cat", "/etc/resolv.conf"])?;
    let search = format!("search {NS}.svc.cluster.local svc.cluster.local cluster.local");
    assert!(resolv.starts_with(&search), "{resolv}");
    assert!(
        resolv.contains("\nnameserver 10.153.0.10\noptions ndots:5\n"),
        "{resolv}"
    );
    let fqdn = format!("box.web.{NS}.svc.cluster.local");
    assert_eq!(exec(&c, "client", &["hostname"])?.trim(), fqdn);
    let client_ip = get(&c, &["pod", "client", "-o", "jsonpath={.status.podIP}"])?;
    let hosts = exec(&c, "client", &["cat", "/etc/hosts"])?;
    assert!(
        hosts.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"),
        "{hosts}"
    );
    assert!(
        hosts.contains(&format!("\n{client_ip}\t{fqdn}\tbox\n")),
        "{hosts}"
    );
    assert!(
        hosts.ends_with("\n# Entries added by HostAliases.\n10.1.2.3\tfoo.remote\tbar.remote\n"),
        "{hosts}"
    );
    assert_eq!(exec(&c, "web-0", &["hostname"])?.trim(), "web-0");
    let hosts = exec(&c, "web-0", &["cat", "/etc/hosts"])?;
    assert!(
        hosts.contains(&format!("\n{web_0}\tweb-0.{web}\tweb-0\n")),
        "{hosts}"
    );
    let custom = exec(&c, "custom", &["cat", "/etc/resolv.conf"])?;
    assert_eq!(
        custom,
        "search custom.example\nnameserver 10.253.0.1\noptions ndots:2 edns0\n"
    );

    // Through the kube-dns Service: the pod's resolver asks the Service's ClusterIP, which the
    // node's proxy sends to this node's own server (internalTrafficPolicy: Local); the search
    // path makes the short names work, and the Service carries the request to a pod.
    for name in ["echo", &format!("echo.{NS}"), &echo, &echo_ip] {
        let url = format!("http://{name}/");
        let mut last = String::new();
        eventually(Duration::from_secs(30), || {
            last = exec(&c, "client", &["wget", "-O-", &url]).unwrap_or_else(|e| e.to_string());
            Ok(last.contains("wasmkube"))
        })
        .map_err(|e| anyhow::anyhow!("{url} never answered: {e}\nlast: {last}"))?;
    }
    resolves(&c, &cluster_ip, &[&echo], &format!("Address: {echo_ip}"))?;

    // The API from a pod's network: `kubernetes.default.svc` resolves to the first address of
    // the range, and https there answers /version with a certificate the CA in the namespace's
    // `kube-root-ca.crt` verifies. (busybox's wget speaks no TLS this server accepts, so the
    // node's curl runs in the pod's network namespace.)
    resolves(
        &c,
        &cluster_ip,
        &["kubernetes.default.svc.cluster.local"],
        "Address: 10.153.0.1",
    )?;
    let ca = get(
        &c,
        &[
            "configmap",
            "kube-root-ca.crt",
            "-o",
            "jsonpath={.data.ca\\.crt}",
        ],
    )?;
    let ca_file = c.dir.path().join("pod-ca.crt");
    std::fs::write(&ca_file, ca)?;
    let uid = get(&c, &["pod", "client", "-o", "jsonpath={.metadata.uid}"])?;
    let version = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/wk-{uid}"))
        .args(["curl", "-sS", "--max-time", "10", "--cacert"])
        .arg(&ca_file)
        .args(["--resolve", "kubernetes.default.svc:443:10.153.0.1"])
        .arg("https://kubernetes.default.svc/version")
        .output()?;
    let body = String::from_utf8_lossy(&version.stdout);
    assert!(
        body.contains("gitVersion"),
        "{body}{}",
        String::from_utf8_lossy(&version.stderr)
    );
    Ok(())
}
