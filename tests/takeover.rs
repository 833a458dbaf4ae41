//! Failure tests of the leader: the leading host killed while a Deployment rolls out and 100
//! pods are being scheduled, and the leading host cut off from etcd. Another host takes over;
//! nothing is lost, made twice or bound twice, and the two never lead at once.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use wasmkube_e2e::control_plane::FAST_ELECTION;
use wasmkube_e2e::{Cluster, SimulatedNode, eventually};
use wasmkube_store::etcd::testing::EtcdServer;

/// Two control-plane hosts on one etcd: `a` is started first (and so leads), `b` joins it with
/// `join --control-plane`. `a_store` is the store `a` uses (its own path to etcd, which a test
/// may cut).
fn two_hosts(etcd: &str, a_store: &str) -> Result<(Cluster, Cluster)> {
    let mut args = vec!["--store", a_store];
    args.extend(FAST_ELECTION);
    let a = Cluster::start_with(&args)?;
    let mut args = vec!["--store", etcd];
    args.extend(FAST_ELECTION);
    let b = a.another_host(&args)?;
    Ok((a, b))
}

fn deployment(name: &str, replicas: u32, image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: default}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  strategy: {{rollingUpdate: {{maxSurge: 5, maxUnavailable: 0}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec: {{containers: [{{name: c, image: {image}}}]}}
"
    )
}

/// `kubectl get pods --watch` through one host, from the start: every pod event, in order.
struct PodWatch {
    child: Child,
    events: std::sync::mpsc::Receiver<(String, serde_json::Value)>,
}

impl PodWatch {
    fn start(c: &Cluster) -> Result<PodWatch> {
        let mut child = Command::new("kubectl")
            .args([
                "get",
                "pods",
                "--watch",
                "--output-watch-events",
                "-o",
                "json",
            ])
            .env("KUBECONFIG", c.kubeconfig())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().context("kubectl's stdout")?;
        let (tx, events) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let stream = serde_json::Deserializer::from_reader(BufReader::new(stdout))
                .into_iter::<serde_json::Value>();
            for event in stream.map_while(Result::ok) {
                let kind = event["type"].as_str().unwrap_or_default().to_string();
                if tx.send((kind, event["object"].clone())).is_err() {
                    return;
                }
            }
        });
        Ok(PodWatch { child, events })
    }

    /// Every event received so far.
    fn drain(&self) -> Vec<(String, serde_json::Value)> {
        self.events.try_iter().collect()
    }
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a pod watch saw, per pod uid: its name, app label, the nodes it was bound to, and
/// whether it was deleted.
#[derive(Default)]
struct Seen {
    pods: BTreeMap<String, (String, String, BTreeSet<String>, bool)>,
}

impl Seen {
    fn add(&mut self, events: Vec<(String, serde_json::Value)>) {
        for (kind, pod) in events {
            let meta = &pod["metadata"];
            let uid = meta["uid"].as_str().unwrap_or_default().to_string();
            let entry = self.pods.entry(uid).or_insert_with(|| {
                let name = meta["name"].as_str().unwrap_or_default().to_string();
                let app = meta["labels"]["app"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                (name, app, BTreeSet::new(), false)
            });
            if let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                entry.2.insert(node.to_string());
            }
            entry.3 |= kind == "DELETED";
        }
    }

    /// Pods of `app` seen: (made, deleted).
    fn of(&self, app: &str) -> (usize, usize) {
        let of_app = self.pods.values().filter(|p| p.1 == app);
        let deleted = of_app.clone().filter(|p| p.3).count();
        (of_app.count(), deleted)
    }

    fn bound_twice(&self) -> Vec<String> {
        self.pods
            .values()
            .filter(|p| p.2.len() > 1)
            .map(|p| format!("{} on {:?}", p.0, p.2))
            .collect()
    }
}

fn count(c: &Cluster, kind: &str, selector: &str) -> Result<usize> {
    let out = c.ok(&["get", kind, "-l", selector, "-o", "name"])?;
    Ok(out.lines().filter(|l| !l.trim().is_empty()).count())
}

fn bound(c: &Cluster, selector: &str) -> Result<usize> {
    let out = c.ok(&[
        "get",
        "pods",
        "-l",
        selector,
        "-o",
        "jsonpath={range .items[*]}{.spec.nodeName}{\"\\n\"}{end}",
    ])?;
    Ok(out.lines().filter(|l| !l.trim().is_empty()).count())
}

#[test]
fn the_leader_killed_mid_rollout_loses_binds_and_doubles_nothing() -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let etcd = runtime
        .block_on(EtcdServer::start())
        .context("starting etcd (run scripts/etcd.sh)")?;
    let store = format!("etcd://{}", etcd.endpoint().trim_start_matches("http://"));
    let (mut a, b) = two_hosts(&store, &store)?;
    let leader = b.leader()?;
    assert!(a.log().contains(&leader), "the first host leads: {leader}");
    let watch = PodWatch::start(&b)?;
    let _node = SimulatedNode::start(b.kubeconfig());
    let mut seen = Seen::default();

    // A Deployment rolled out once, then updated while 100 more pods are created.
    b.apply(&deployment("roll", 20, "busybox:1"))?;
    eventually(Duration::from_secs(60), || {
        Ok(b.ok(&[
            "get",
            "deploy",
            "roll",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ])? == "20")
    })?;
    b.ok(&["set", "image", "deployment/roll", "c=busybox:2"])?;
    b.apply(&deployment("burst", 100, "busybox:1"))?;
    eventually(
        Duration::from_secs(30),
        || Ok(bound(&b, "app=burst")? >= 10),
    )?;
    let scheduled = bound(&b, "app=burst")?;
    a.kill();
    let killed = Instant::now();

    b.new_leader(&leader, Duration::from_secs(30))?;
    let took = killed.elapsed();
    assert!(
        took <= Duration::from_secs(20),
        "the second host took over {took:?} after the kill"
    );
    eprintln!("took over {took:?} after the kill, with {scheduled} of 100 pods bound");

    // Everything completes on the new leader.
    eventually(Duration::from_secs(120), || {
        let burst = b.ok(&[
            "get",
            "deploy",
            "burst",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ])?;
        let roll = b.ok(&[
            "get",
            "deploy",
            "roll",
            "-o",
            "jsonpath={.status.updatedReplicas} {.status.readyReplicas} {.status.replicas}",
        ])?;
        Ok(burst == "100" && roll == "20 20 20")
    })?;
    b.ok(&["rollout", "status", "deployment/roll", "--timeout=60s"])?;
    // Settled: let any late duplicate show itself, and the watch (kubectl printing every event
    // as JSON, on a busy machine) catch up with what the API lists.
    std::thread::sleep(Duration::from_secs(3));
    eventually(Duration::from_secs(60), || {
        seen.add(watch.drain());
        let (made, deleted) = seen.of("roll");
        Ok(made.saturating_sub(deleted) == 20 && seen.of("burst").0 >= 100)
    })
    .context("the pod watch never caught up")?;

    assert_eq!(count(&b, "pods", "app=burst")?, 100);
    assert_eq!(count(&b, "pods", "app=roll")?, 20);
    assert_eq!(bound(&b, "app=burst")?, 100, "every burst pod bound");
    let (made, deleted) = seen.of("burst");
    assert_eq!(
        (made, deleted),
        (100, 0),
        "burst pods made and deleted: a duplicate is made and then deleted"
    );
    let (made, deleted) = seen.of("roll");
    assert_eq!(
        made - deleted,
        20,
        "roll pods: {made} made, {deleted} deleted"
    );
    assert_eq!(made, 40, "the rollout made exactly one new pod per replica");
    let twice = seen.bound_twice();
    assert!(twice.is_empty(), "pods bound twice: {twice:?}");
    assert_eq!(count(&b, "replicasets", "app=roll")?, 2);
    drop(a);
    drop(etcd);
    Ok(())
}

/// A TCP proxy to etcd that the test can cut: while cut, it neither forwards nor closes
/// anything (packets dropped, as a partition does); healed, the held streams flow again.
struct Partition {
    port: u16,
    cut: Arc<AtomicBool>,
}

impl Partition {
    fn start(upstream: String) -> Result<Partition> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let cut = Arc::new(AtomicBool::new(false));
        let flag = cut.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else {
                        continue;
                    };
                    let flag = flag.clone();
                    std::thread::spawn(move || pipe(from, to, &flag));
                }
            }
        });
        Ok(Partition { port, cut })
    }

    fn set(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` until either closes, holding what it read while `cut` is set.
fn pipe(mut from: TcpStream, mut to: TcpStream, cut: &AtomicBool) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while cut.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// The time (as logged, RFC 3339 UTC) of the first line of `log` after `from` containing
/// `needle`.
fn logged_at(log: &str, from: usize, needle: &str) -> Option<String> {
    log.get(from..)?
        .lines()
        .find(|l| l.contains(needle))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_string)
}

#[test]
fn a_leader_cut_off_from_etcd_stops_before_another_starts() -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let etcd = runtime
        .block_on(EtcdServer::start())
        .context("starting etcd (run scripts/etcd.sh)")?;
    let endpoint = etcd.endpoint().trim_start_matches("http://").to_string();
    let partition = Partition::start(endpoint.clone())?;
    let a_store = format!("etcd://127.0.0.1:{}", partition.port);
    let (a, b) = two_hosts(&format!("etcd://{endpoint}"), &a_store)?;
    let leader = b.leader()?;
    assert!(a.log().contains(&leader), "the first host leads: {leader}");
    let _node = SimulatedNode::start(b.kubeconfig());
    let (a_from, b_from) = (a.log().len(), b.log().len());

    partition.set(true);
    b.new_leader(&leader, Duration::from_secs(30))?;
    let stopped = "no longer leading";
    let started = "leading: the controllers";
    eventually(Duration::from_secs(10), || {
        Ok(logged_at(&a.log(), a_from, stopped).is_some())
    })
    .with_context(|| format!("the cut-off leader never stopped:\n{}", a.log()))?;
    let (Some(a_stopped), Some(b_started)) = (
        logged_at(&a.log(), a_from, stopped),
        logged_at(&b.log(), b_from, started),
    ) else {
        bail!("no hand-over logged:\n{}\n{}", a.log(), b.log());
    };
    // RFC 3339 UTC times of equal precision order as strings.
    assert!(
        a_stopped < b_started,
        "the old leader stopped at {a_stopped}, the new one started at {b_started}"
    );

    // Work done by the new leader only, and nothing twice once the old one is back.
    b.apply(&deployment("after", 5, "busybox:1"))?;
    eventually(Duration::from_secs(30), || {
        Ok(b.ok(&[
            "get",
            "deploy",
            "after",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ])? == "5")
    })?;
    partition.set(false);
    eventually(Duration::from_secs(30), || {
        Ok(a.ok(&["get", "deploy", "after", "-o", "name"]).is_ok())
    })?;
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(count(&b, "replicasets", "app=after")?, 1);
    assert_eq!(count(&b, "pods", "app=after")?, 5);
    assert_eq!(a.leader()?, b.leader()?);
    assert_ne!(b.leader()?, leader, "the healed host took the lease back");
    Ok(())
}
