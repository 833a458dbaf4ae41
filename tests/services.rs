//! The service proxy with real kubectl, containerd, CNI and nftables: a Deployment behind a
//! Service is reached by its ClusterIP (spread over every pod) and its NodePort, readiness and
//! deletion move traffic within the bounds Kubernetes users expect, a pod reaches itself through
//! its own Service, and what no Service serves is refused on this node at once.
//! Needs root (CI runs as root); scripts/setup.sh installs nftables and builds the image.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use wasmkube_e2e::{Cluster, eventually, host_get, service_cidr, target_dir};

const NODE: &str = "wk-svc";
const BRIDGE: &str = "wksvc0";
const POD_NETWORK: &str = "10.233.0.0/16";
/// An address of the cluster's service range (10.133.0.0/16) that no Service is given (the
/// allocator takes addresses at random; this one is checked to be free).
const UNOWNED: &str = "10.133.255.254";
const LONG: Duration = Duration::from_secs(90);

/// Three pods each serving a page that names it, ready while /www/down does not exist.
const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: httpd
        image: docker.io/library/busybox:latest
        imagePullPolicy: Never
        command: [sh, -c, 'mkdir -p /www && echo $HOSTNAME > /www/index.html && exec httpd -f -p 8080 -h /www']
        readinessProbe:
          exec: {command: [sh, -c, 'test ! -f /www/down']}
          periodSeconds: 1
          failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: sticky}
spec:
  selector: {app: web}
  sessionAffinity: ClientIP
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: empty}
spec:
  selector: {app: nothing}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: self}
spec:
  selector: {app: client}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: dns, labels: {app: dns}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: dnsmasq
    image: wasmkube.local/dnsmasq:latest
    imagePullPolicy: Never
    command: [dnsmasq, --keep-in-foreground, --pid-file, --no-resolv, --no-hosts, --user=root, --group=root, --address=/udp.test/10.1.2.3]
---
apiVersion: v1
kind: Service
metadata: {name: dns}
spec:
  selector: {app: dns}
  ports: [{name: dns, port: 53, targetPort: 53, protocol: UDP}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: Never
    command: [sh, -c, 'mkdir -p /www && echo $HOSTNAME > /www/index.html && httpd -p 8080 -h /www && exec sleep 3600']
"#;

/// A selectorless Service that keeps traffic on this node; its slice is [`local_slice`].
const LOCAL: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: local}\nspec:\n  internalTrafficPolicy: Local\n  ports: [{port: 80, targetPort: 8080}]\n";

/// The EndpointSlice of the `local` Service: one ready endpoint on `node`.
fn local_slice(ip: &str, node: &str) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: local-1\n  labels: {{kubernetes.io/service-name: local}}\naddressType: IPv4\nports: [{{port: 8080, protocol: TCP}}]\nendpoints:\n- addresses: [{ip}]\n  conditions: {{ready: true}}\n  nodeName: {node}\n"
    )
}

fn get(c: &Cluster, what: &[&str], path: &str) -> Result<String> {
    let mut args = vec!["get"];
    args.extend(what);
    let jsonpath = format!("jsonpath={path}");
    args.extend(["-o", &jsonpath]);
    c.ok(&args)
}

/// `sh -c script` in the client pod: its exit status and output (stdout, then stderr). (The
/// image's busybox wget crashes with `-q` or `-T`: `timeout` bounds it instead.)
fn in_client(c: &Cluster, script: &str) -> Result<(bool, String)> {
    let out = c.kubectl(&["exec", "client", "--", "sh", "-c", script])?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Ok((out.status.success(), text))
}

/// `n` requests from the client pod to `url`: how many each pod answered (`failed` for none).
fn spread(c: &Cluster, url: &str, n: u32) -> Result<BTreeMap<String, u32>> {
    let script = format!(
        "for i in $(seq {n}); do timeout 5 wget -O- {url} 2>/dev/null || echo failed; done"
    );
    let (_, out) = in_client(c, &script)?;
    let mut counts = BTreeMap::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        *counts.entry(line.trim().to_string()).or_insert(0) += 1;
    }
    Ok(counts)
}

/// Runs `command` in `pod`, tried again for up to 15 s: once in a full CI run (not in three runs
/// of this test alone) kubectl's exec some 30 s after the cluster's restart was refused on both
/// of its transports (WebSocket, then SPDY: "exec is served over a WebSocket"). This test is
/// about readiness; that exec failure is an open question of its own.
fn exec_in(c: &Cluster, pod: &str, command: &[&str]) -> Result<()> {
    let mut args = vec!["exec", pod, "--"];
    args.extend(command);
    let mut last = String::new();
    eventually(Duration::from_secs(15), || {
        let out = c.kubectl(&args)?;
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        Ok(out.status.success())
    })
    .with_context(|| format!("kubectl {}: {last}", args.join(" ")))
}

/// The web pods not being deleted, by name, with their IPs.
fn web_pods(c: &Cluster) -> Result<BTreeMap<String, String>> {
    let out = get(
        c,
        &["pods", "-l", "app=web"],
        r#"{range .items[*]}{.metadata.name} {.status.podIP} {.metadata.deletionTimestamp}{"\n"}{end}"#,
    )?;
    Ok(out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter_map(|fields| match fields[..] {
            [name, ip] => Some((name.to_string(), ip.to_string())),
            _ => None,
        })
        .collect())
}

/// The addresses the `web` EndpointSlices list as ready.
fn ready_endpoints(c: &Cluster) -> Result<Vec<String>> {
    ready_endpoints_of(c, "web")
}

/// The addresses the EndpointSlices of `service` list as ready.
fn ready_endpoints_of(c: &Cluster, service: &str) -> Result<Vec<String>> {
    let out = get(
        c,
        &[
            "endpointslices",
            "-l",
            &format!("kubernetes.io/service-name={service}"),
        ],
        r#"{range .items[*].endpoints[?(@.conditions.ready==true)]}{.addresses[0]}{"\n"}{end}"#,
    )?;
    Ok(out.lines().map(str::to_string).collect())
}

/// Waits until the `web` slices list `ip` as ready (or not), then, 1 s later (the proxy's bound
/// for a change to be in force), sends `n` requests to `url` from the client pod.
fn once_endpoint_is(
    c: &Cluster,
    ip: &str,
    ready: bool,
    url: &str,
    n: u32,
) -> Result<BTreeMap<String, u32>> {
    let ip = ip.to_string();
    eventually(Duration::from_secs(20), || {
        Ok(ready_endpoints(c)?.contains(&ip) == ready)
    })?;
    std::thread::sleep(Duration::from_secs(1));
    spread(c, url, n)
}

/// The Service chains of this cluster's proxy table, each with its kernel handle.
fn service_chains() -> Result<Vec<String>> {
    let out = std::process::Command::new("nft")
        .args(["-a", "list", "table", "ip", &format!("wasmkube-{BRIDGE}")])
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("chain svc-") || l.starts_with("chain ep-"))
        .map(str::to_string)
        .collect())
}

/// This cluster's proxy table holds the reject of its unowned service range, so a test packet
/// to that range cannot leave the machine.
fn range_is_fenced(c: &Cluster) -> Result<()> {
    let range = service_cidr(POD_NETWORK)?;
    let fenced = || -> Result<bool> {
        let out = std::process::Command::new("nft")
            .args([
                "list",
                "chain",
                "ip",
                &format!("wasmkube-{BRIDGE}"),
                "filter-output",
            ])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.contains(&format!("ip daddr {range} reject")))
    };
    eventually(Duration::from_secs(10), fenced)
        .map_err(|e| anyhow::anyhow!("no reject of {range}: {e}\n{}", c.log()))
}

#[test]
fn services_carry_traffic_and_refuse_what_no_service_serves() -> Result<()> {
    let mut c = Cluster::node(NODE, BRIDGE, POD_NETWORK, &[])?;
    range_is_fenced(&c)?;
    let dnsmasq = target_dir().join("images/dnsmasq.tar");
    c.wasmkube(&["image", "import", &dnsmasq.display().to_string()])?;
    c.apply(WEB)?;
    eventually(LONG, || {
        Ok(ready_endpoints(&c)?.len() == 3
            && ready_endpoints_of(&c, "dns")?.len() == 1
            && get(&c, &["pod", "client"], "{.status.phase}")? == "Running")
    })
    .map_err(|e| {
        anyhow::anyhow!(
            "{e}\n{}",
            c.ok(&["get", "pods,endpointslices", "-o", "wide"])
                .unwrap_or_default()
        )
    })?;
    let ip = get(&c, &["service", "web"], "{.spec.clusterIP}")?;
    ensure!(
        ip.starts_with("10.133."),
        "cluster IP {ip} from the cluster's own range"
    );
    ensure!(
        get(&c, &["services"], "{.items[*].spec.clusterIP}")?
            .split_whitespace()
            .all(|a| a != UNOWNED),
        "{UNOWNED} was allocated after all"
    );
    let url = format!("http://{ip}/");

    // 300 requests to the ClusterIP reach all three pods, each at least a fifth of them.
    let pods = web_pods(&c)?;
    ensure!(pods.len() == 3, "{pods:?}");
    let counts = spread(&c, &url, 300)?;
    for name in pods.keys() {
        let got = counts.get(name).copied().unwrap_or(0);
        ensure!(got >= 60, "{name} answered {got} of 300: {counts:?}");
    }

    // ClientIP affinity keeps a client on one pod.
    let sticky = get(&c, &["service", "sticky"], "{.spec.clusterIP}")?;
    let counts = spread(&c, &format!("http://{sticky}/"), 20)?;
    ensure!(
        counts.len() == 1 && !counts.contains_key("failed"),
        "sticky: {counts:?}"
    );

    // A restarted agent adopts its table: the same chains, not flushed and made again.
    let before = service_chains()?;
    ensure!(before.len() >= 5, "{before:?}");
    c.restart()?;
    eventually(Duration::from_secs(30), || {
        Ok(c.log().contains("service proxy programmed"))
    })?;
    // A restarted agent starts its readiness probes from "not ready" (as the kubelet), so the
    // web Service's chains may be rewritten meanwhile; the chains of Services whose endpoints
    // stay the same (the apiserver's own `kubernetes`, kube-dns) keep their kernel handles.
    let after = service_chains()?;
    let kept = before.iter().filter(|chain| after.contains(chain)).count();
    ensure!(
        kept >= 2,
        "the chains were rebuilt: before {before:?}, after {after:?}"
    );
    let counts = spread(&c, &url, 10)?;
    ensure!(
        !counts.contains_key("failed"),
        "after the restart: {counts:?}"
    );

    // The NodePort, on the node's address, from this host and from a pod.
    let node_port = get(&c, &["service", "web"], "{.spec.ports[0].nodePort}")?;
    let node_ip = get(
        &c,
        &["node", NODE],
        r#"{.status.addresses[?(@.type=="InternalIP")].address}"#,
    )?;
    let address: SocketAddr = format!("{node_ip}:{node_port}").parse()?;
    let page = host_get(address).with_context(|| format!("GET {address} from the host"))?;
    ensure!(pods.keys().any(|p| page.contains(p.as_str())), "{page}");
    let from_pod = spread(&c, &format!("http://{address}/"), 10)?;
    ensure!(
        !from_pod.contains_key("failed"),
        "NodePort from a pod: {from_pod:?}"
    );

    // An external IP: the node's own address (so that nothing could leave the machine even
    // without the rule) on a port nothing listens on.
    c.apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: ext}}\nspec:\n  selector: {{app: web}}\n  externalIPs: [{node_ip}]\n  ports: [{{port: 18080, targetPort: 8080}}]\n"
    ))?;
    let external: SocketAddr = format!("{node_ip}:18080").parse()?;
    eventually(Duration::from_secs(5), || {
        Ok(host_get(external).is_ok_and(|page| pods.keys().any(|p| page.contains(p.as_str()))))
    })
    .context("the external IP from the host")?;

    // Hairpin: the client reaches itself through its own Service.
    let self_ip = get(&c, &["service", "self"], "{.spec.clusterIP}")?;
    let (ok, out) = in_client(
        &c,
        &format!("timeout 5 wget -O- http://{self_ip}/ 2>/dev/null"),
    )?;
    ensure!(ok && out.trim() == "client", "hairpin: {out}");

    // internalTrafficPolicy: Local (as the per-node kube-dns Service): only endpoints on this
    // node: it answers while its endpoint is here, and refuses once the endpoint is elsewhere.
    let web_ip = pods.values().next().context("a web pod")?;
    for (node, answers) in [(NODE, true), ("elsewhere", false)] {
        c.apply(&format!("{LOCAL}---\n{}", local_slice(web_ip, node)))?;
        let local = get(&c, &["service", "local"], "{.spec.clusterIP}")?;
        eventually(Duration::from_secs(5), || {
            let (ok, out) = in_client(&c, &format!("timeout 5 wget -O- http://{local}/"))?;
            Ok(ok == answers && (answers || out.contains("refused")))
        })
        .with_context(|| format!("internalTrafficPolicy Local, endpoint on {node}"))?;
    }

    // UDP: a DNS query through the cluster IP of a Service of a dnsmasq pod.
    let dns = get(&c, &["service", "dns"], "{.spec.clusterIP}")?;
    let (ok, out) = in_client(&c, &format!("timeout 10 nslookup -type=a udp.test {dns}"))?;
    ensure!(
        ok && out.contains("10.1.2.3"),
        "DNS over UDP through {dns}: {out}"
    );

    // No endpoints, and an address no Service owns: refused at once, not a time-out.
    let empty = get(&c, &["service", "empty"], "{.spec.clusterIP}")?;
    for target in [empty.as_str(), UNOWNED] {
        let began = Instant::now();
        let (ok, out) = in_client(&c, &format!("timeout 20 wget -O- http://{target}/"))?;
        ensure!(!ok && out.contains("refused"), "{target}: {out}");
        ensure!(
            began.elapsed() < Duration::from_secs(5),
            "{target} took {:?}",
            began.elapsed()
        );
    }
    let refused =
        TcpStream::connect_timeout(&format!("{UNOWNED}:80").parse()?, Duration::from_secs(20));
    ensure!(
        refused
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused),
        "{UNOWNED} from the host: {refused:?}"
    );

    // A pod failing its readiness probe stops getting traffic once its endpoint is not ready.
    let (down, down_ip) = pods
        .iter()
        .next()
        .map(|(n, i)| (n.clone(), i.clone()))
        .context("a pod")?;
    exec_in(&c, &down, &["touch", "/www/down"])?;
    let counts = once_endpoint_is(&c, &down_ip, false, &url, 60)?;
    ensure!(
        !counts.contains_key(&down) && !counts.contains_key("failed"),
        "{down} not ready: {counts:?}"
    );
    // And gets it back when it recovers.
    exec_in(&c, &down, &["rm", "/www/down"])?;
    let counts = once_endpoint_is(&c, &down_ip, true, &url, 30)?;
    ensure!(counts.contains_key(&down), "{down} ready again: {counts:?}");

    // A deleted pod: once its endpoint is gone from the slice, no request goes to it.
    c.ok(&["delete", "pod", &down, "--wait=false"])?;
    let counts = once_endpoint_is(&c, &down_ip, false, &url, 60)?;
    ensure!(
        !counts.contains_key(&down) && !counts.contains_key("failed"),
        "{down} deleted: {counts:?}"
    );

    // The Service gone, its rules go: its ClusterIP is refused like any unowned address.
    c.ok(&["delete", "service", "self"])?;
    eventually(Duration::from_secs(10), || {
        let (ok, out) = in_client(&c, &format!("timeout 5 wget -O- http://{self_ip}/"))?;
        Ok(!ok && out.contains("refused"))
    })?;
    Ok(())
}
