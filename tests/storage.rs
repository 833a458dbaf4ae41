//! PersistentVolumeClaims on a real node: the default `local-path` StorageClass, a claim
//! provisioned for its first pod, its data outliving the pod, and the volume deleted with the
//! claim. Needs root, containerd and the busybox image, as tests/node.rs does.

use std::time::Duration;

use anyhow::Result;
use wasmkube_e2e::{Cluster, eventually};

const CLAIM: &str = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: data\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 64Mi}}\n";

/// A pod (placed by the scheduler) running `script` with claim `data` at /data.
fn pod(name: &str, script: &str, read_only: bool) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: busybox\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, {script:?}]\n    volumeMounts: [{{name: data, mountPath: /data}}]\n  volumes:\n  - name: data\n    persistentVolumeClaim: {{claimName: data, readOnly: {read_only}}}\n"
    )
}

/// Waits until `kubectl get KIND NAME -o jsonpath=PATH` prints `want`.
fn until(c: &Cluster, object: &[&str], path: &str, want: &str) -> Result<()> {
    let jsonpath = format!("jsonpath={{{path}}}");
    let args: Vec<&str> = ["get"]
        .into_iter()
        .chain(object.iter().copied())
        .chain(["-o", &jsonpath])
        .collect();
    let mut seen = String::new();
    eventually(Duration::from_secs(60), || {
        seen = c.ok(&args)?;
        Ok(seen == want)
    })
    .map_err(|e| {
        let describe = c.ok(&["describe", "pods"]).unwrap_or_default();
        anyhow::anyhow!(
            "{object:?} {path} is {seen:?}, not {want:?}: {e}\n{describe}\n{}",
            c.log()
        )
    })
}

#[test]
fn claims_get_local_volumes_that_outlive_their_pods() -> Result<()> {
    let c = Cluster::node("wk-storage", "wkpvc0", "10.248.0.0/16", &[])?;

    let classes = c.ok(&["get", "storageclass"])?;
    let line = classes
        .lines()
        .find(|l| l.starts_with("local-path (default)"))
        .unwrap_or_default();
    for column in ["wasmkube.dev/local-path", "Delete", "WaitForFirstConsumer"] {
        assert!(line.contains(column), "{classes}");
    }

    // The claim gets the default class and waits for its first pod.
    c.apply(CLAIM)?;
    until(&c, &["pvc", "data"], ".spec.storageClassName", "local-path")?;
    let uid = c.ok(&["get", "pvc", "data", "-o", "jsonpath={.metadata.uid}"])?;
    let volume = format!("pvc-{uid}");
    assert_eq!(
        c.ok(&["get", "pvc", "data", "-o", "jsonpath={.spec.volumeName}"])?,
        ""
    );

    c.apply(&pod("writer", "echo kept > /data/file", false))?;
    until(&c, &["pod", "writer"], ".status.phase", "Succeeded")?;
    until(&c, &["pvc", "data"], ".status.phase", "Bound")?;
    let claims = c.ok(&["get", "pvc"])?;
    assert!(
        claims.contains(&volume) && claims.contains("64Mi") && claims.contains("RWO"),
        "{claims}"
    );
    let volumes = c.ok(&["get", "pv"])?;
    let row = volumes
        .lines()
        .find(|l| l.starts_with(&volume))
        .unwrap_or_default();
    for column in [
        "64Mi",
        "RWO",
        "Delete",
        "Bound",
        "default/data",
        "local-path",
    ] {
        assert!(row.contains(column), "{volumes}");
    }
    let affinity = ".spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]";
    until(&c, &["pv", &volume], affinity, "wk-storage")?;
    let dir = c.dir.path().join("node/storage").join(&volume);
    assert_eq!(std::fs::read_to_string(dir.join("file"))?, "kept\n");

    // A second pod reads it back, and a read-only mount refuses writes.
    c.ok(&["delete", "pod", "writer"])?;
    let check = "test \"$(cat /data/file)\" = kept && ! touch /data/other";
    c.apply(&pod("reader", check, true))?;
    until(&c, &["pod", "reader"], ".status.phase", "Succeeded")?;
    c.ok(&["delete", "pod", "reader"])?;

    // Deleting the claim deletes its volume and the directory (reclaim policy Delete).
    c.ok(&["delete", "pvc", "data"])?;
    eventually(Duration::from_secs(30), || {
        let out = c.kubectl(&["get", "pv", &volume])?;
        Ok(!out.status.success() && !dir.exists())
    })?;
    Ok(())
}
