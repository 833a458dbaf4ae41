//! Leader election: two control-plane hosts on one etcd (the second joined with `wasmkube join
//! --control-plane`) run the controllers, the scheduler and the compactor once; the survivor
//! takes over when the leader is killed, at once when it stops cleanly.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use wasmkube_e2e::control_plane::FAST_ELECTION;
use wasmkube_e2e::{Cluster, eventually};
use wasmkube_store::etcd::testing::EtcdServer;

fn deployment(name: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: default}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec: {{containers: [{{name: c, image: busybox}}]}}
"
    )
}

/// The names of what `kind` lists with the label `app=name`.
fn named(c: &Cluster, kind: &str, name: &str) -> Result<Vec<String>> {
    let label = format!("app={name}");
    let out = c.ok(&["get", kind, "-l", &label, "-o", "name"])?;
    Ok(out.lines().map(str::to_string).collect())
}

/// The joined host has the first's CA, its own serving certificate (for its own names) from
/// that CA, and its own admin kubeconfig; the first host's kubeconfig (so its CA and admin
/// certificate) works against it.
fn same_ca_other_serving_certificate(a: &Cluster, b: &Cluster) -> Result<()> {
    let read = |c: &Cluster, f: &str| std::fs::read(c.dir.path().join("pki").join(f));
    assert_eq!(read(a, "ca.crt")?, read(b, "ca.crt")?);
    assert_ne!(read(a, "server.crt")?, read(b, "server.crt")?);
    assert_ne!(a.admin_certificate()?, b.admin_certificate()?);
    let verify = std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(a.dir.path().join("pki/ca.crt"))
        .arg(b.dir.path().join("pki/server.crt"))
        .output()?;
    assert!(verify.status.success(), "{verify:?}");
    let b_url = format!("https://127.0.0.1:{}", b.port);
    let kubeconfig = a.kubeconfig();
    let out = wasmkube_e2e::kubectl_at(
        &kubeconfig,
        &["--server", &b_url, "get", "ns", "kube-system"],
        None,
    )?;
    assert!(out.status.success(), "{out:?}");
    use std::os::unix::fs::PermissionsExt as _;
    for file in ["ca.key", "sa.key", "token", "server.key"] {
        let mode = std::fs::metadata(b.dir.path().join("pki").join(file))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    Ok(())
}

#[test]
fn one_host_leads_and_the_other_takes_over_when_it_dies() -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let etcd = runtime
        .block_on(EtcdServer::start())
        .context("starting etcd (run scripts/etcd.sh)")?;
    let store = format!("etcd://{}", etcd.endpoint().trim_start_matches("http://"));
    let mut args = vec!["--store", store.as_str()];
    args.extend(FAST_ELECTION);
    let mut a = Cluster::start_with(&args)?;
    // The second host joins with the certificates the first uploads, encrypted.
    let mut b = a.another_host(&args)?;
    same_ca_other_serving_certificate(&a, &b)?;

    // One lease, held by the first host; the second follows.
    let leases = b.ok(&["get", "leases", "-n", "kube-system", "-o", "name"])?;
    assert_eq!(
        leases.trim(),
        "lease.coordination.k8s.io/kube-controller-manager"
    );
    let leader = b.leader()?;
    assert!(a.log().contains(&leader), "the first host leads: {leader}");
    assert!(!b.log().contains(&leader), "{leader} is the first host's");

    // Written through the follower's apiserver, acted on once by the leader's controllers.
    b.apply(&deployment("before"))?;
    eventually(Duration::from_secs(20), || {
        Ok(named(&a, "replicasets", "before")?.len() == 1
            && named(&a, "pods", "before")?.len() == 2)
    })?;
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(named(&b, "replicasets", "before")?.len(), 1);
    assert_eq!(named(&b, "pods", "before")?.len(), 2, "pods made twice");
    assert!(
        !b.log().contains("leading: the controllers"),
        "the follower started its controllers:\n{}",
        b.log()
    );

    // The leader dies without releasing the lease: the other host takes it once it expires.
    a.kill();
    let killed = Instant::now();
    let new_leader = b.new_leader(&leader, Duration::from_secs(20))?;
    let took = killed.elapsed();
    assert!(
        b.log().contains(&new_leader),
        "{new_leader} is not the second host"
    );
    assert!(
        took >= Duration::from_secs(3),
        "the lease was taken after {took:?}, unexpired"
    );
    b.apply(&deployment("after"))?;
    eventually(Duration::from_secs(20), || {
        Ok(named(&b, "replicasets", "after")?.len() == 1 && named(&b, "pods", "after")?.len() == 2)
    })?;

    // The first host comes back and follows; the second stops cleanly, releasing the lease:
    // the first takes it without waiting for it to expire.
    a.restart()?;
    assert_eq!(a.leader()?, new_leader);
    b.terminate()?;
    let terminated = Instant::now();
    let again = a.new_leader(&new_leader, Duration::from_secs(20))?;
    let took = terminated.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "a released lease was taken after {took:?}"
    );
    assert!(a.log().contains(&again), "the first host leads again");
    drop(a);
    drop(etcd);
    Ok(())
}
