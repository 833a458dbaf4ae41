//! The real kubectl against a real server running the built-in controllers as Wasm plugins, with a simulated node.

use std::time::Duration;

use anyhow::Result;
use wasmkube_e2e::{Cluster, SimulatedNode, demo_dir, eventually, lines_with};

/// Whether `wasmkube plugin list` shows each of `names` Running (the built-in plugins run too).
fn all_running(list: &str, names: &[&str]) -> bool {
    names.iter().all(|name| {
        list.lines()
            .any(|l| l.split_whitespace().next() == Some(*name) && l.contains("Running"))
    })
}

#[test]
fn replicaset_controller_runs_as_wasm() -> Result<()> {
    let plugin = wasmkube_e2e::plugin_dir().join("wasmkube_plugin_replicaset.wasm");
    assert!(
        plugin.exists(),
        "{} is missing: run scripts/build-plugins.sh",
        plugin.display()
    );
    let c = Cluster::start_with(&["--plugin", &plugin.display().to_string()])?;
    let rs = "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: web\nspec:\n  replicas: 3\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: busybox\n";
    let out = c.kubectl_stdin(&["apply", "-f", "-"], Some(rs))?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pods = || -> Result<usize> {
        Ok(c.ok(&["get", "pods", "-l", "app=web", "-o", "name"])?
            .lines()
            .count())
    };
    eventually(Duration::from_secs(20), || Ok(pods()? == 3))?;
    // Events about a cluster-scoped object name no namespace, so kubectl describe finds them.
    let describe = c.ok(&["describe", "plugin", "replicaset"])?;
    assert!(describe.contains("Started"), "{describe}");
    let table = c.ok(&["get", "rs", "web"])?;
    assert!(
        table.contains("DESIRED") && table.contains("web    3         3"),
        "{table}"
    );
    c.ok(&["scale", "rs", "web", "--replicas=1"])?;
    eventually(Duration::from_secs(20), || Ok(pods()? == 1))?;
    c.ok(&["delete", "rs", "web"])?;
    eventually(Duration::from_secs(20), || Ok(pods()? == 0))?;
    Ok(())
}

#[test]
fn deployment_rollouts_with_kubectl_and_plugins_installed_through_the_api() -> Result<()> {
    let c = Cluster::start()?;
    let release = wasmkube_e2e::plugin_dir();
    for name in ["replicaset", "deployment"] {
        let file = release.join(format!("wasmkube_plugin_{name}.wasm"));
        let file = file.display().to_string();
        c.wasmkube(&["plugin", "install", &file, "--name", name, "--yes"])?;
    }
    eventually(Duration::from_secs(20), || {
        Ok(all_running(
            &c.wasmkube(&["plugin", "list"])?,
            &["replicaset", "deployment"],
        ))
    })?;
    let _node = SimulatedNode::start(c.kubeconfig());

    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1",
        "--replicas=3",
    ])?;
    let status = c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"])?;
    assert!(status.contains("successfully rolled out"), "{status}");
    assert!(
        c.ok(&["get", "deployment", "web"])?
            .contains("3/3     3            3")
    );

    c.ok(&["set", "image", "deployment/web", "busybox=busybox:2"])?;
    c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"])?;
    let history = c.ok(&["rollout", "history", "deployment/web"])?;
    assert!(history.contains('1') && history.contains('2'), "{history}");
    assert_eq!(c.ok(&["get", "rs", "-o", "name"])?.lines().count(), 2);

    c.ok(&["rollout", "undo", "deployment/web"])?;
    c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"])?;
    let image = c.ok(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ])?;
    assert_eq!(image, "busybox:1");
    assert_eq!(
        c.ok(&["get", "rs", "-o", "name"])?.lines().count(),
        2,
        "undo reuses the first ReplicaSet"
    );

    c.ok(&["delete", "deployment", "web"])?;
    eventually(Duration::from_secs(20), || {
        Ok(c.ok(&["get", "rs,pods", "-o", "name"])?.trim().is_empty())
    })?;
    Ok(())
}

#[test]
fn staticsite_custom_controller_installs_upgrades_rolls_back_and_collects() -> Result<()> {
    let c = Cluster::start()?;
    let release = wasmkube_e2e::plugin_dir();
    let plugin = |file: &std::path::Path, name: &str| -> Result<String> {
        let file = file.display().to_string();
        let stdout = c.wasmkube(&["plugin", "install", &file, "--name", name, "--yes"])?;
        // "plugin.wasmkube.dev/N installed: sha256:<hex> (N bytes)"
        Ok(stdout
            .split_whitespace()
            .find(|w| w.starts_with("sha256:"))
            .unwrap_or_default()
            .to_string())
    };
    let list = || c.wasmkube(&["plugin", "list"]);
    let staticsite = release.join("wasmkube_plugin_staticsite.wasm");
    assert!(
        staticsite.exists(),
        "{} is missing: run scripts/build-plugins.sh",
        staticsite.display()
    );
    // The CRD first: a plugin naming a resource the server does not serve fails to load.
    let crd = format!("{}/staticsite-crd.yaml", demo_dir());
    c.ok(&["apply", "-f", &crd])?;
    eventually(Duration::from_secs(20), || {
        Ok(c.kubectl(&["get", "staticsites"])?.status.success())
    })?;
    for name in ["replicaset", "deployment"] {
        plugin(&release.join(format!("wasmkube_plugin_{name}.wasm")), name)?;
    }
    let v1 = plugin(&staticsite, "staticsite")?;
    assert!(v1.starts_with("sha256:"), "{v1}");
    eventually(Duration::from_secs(30), || {
        Ok(all_running(
            &list()?,
            &["replicaset", "deployment", "staticsite"],
        ))
    })
    .map_err(|e| anyhow::anyhow!("{e}: plugins:\n{}", list().unwrap_or_default()))?;
    let _node = SimulatedNode::start(c.kubeconfig());

    let site = "apiVersion: wasmkube.dev/v1\nkind: StaticSite\nmetadata:\n  name: docs\nspec:\n  content: \"<h1>docs</h1>\"\n  replicas: 2\n";
    eventually(Duration::from_secs(20), || {
        Ok(c.kubectl_stdin(&["apply", "-f", "-"], Some(site))?
            .status
            .success())
    })?;
    eventually(Duration::from_secs(30), || {
        Ok(c.kubectl(&[
            "get",
            "configmap/docs-content",
            "deployment/docs",
            "service/docs",
        ])?
        .status
        .success())
    })?;
    let content = c.ok(&[
        "get",
        "configmap",
        "docs-content",
        "-o",
        "jsonpath={.data.index\\.html}",
    ])?;
    assert_eq!(content, "<h1>docs</h1>");
    let owner = c.ok(&[
        "get",
        "deployment",
        "docs",
        "-o",
        "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}",
    ])?;
    assert_eq!(owner, "StaticSite/docs");
    let port = c.ok(&[
        "get",
        "service",
        "docs",
        "-o",
        "jsonpath={.spec.ports[0].port}->{.spec.ports[0].targetPort}",
    ])?;
    assert_eq!(port, "80->8080");
    let status = |path: &str| -> Result<String> {
        c.ok(&[
            "get",
            "staticsite",
            "docs",
            "-o",
            &format!("jsonpath={path}"),
        ])
    };
    eventually(Duration::from_secs(60), || {
        Ok(status("{.status.availableReplicas}")? == "2")
    })?;
    assert_eq!(status("{.status.url}")?, "http://docs.default.svc");
    assert_eq!(
        status("{.status.conditions[?(@.type==\"Ready\")].status}")?,
        "True"
    );

    // Upgrade: the same component with a trailing custom section, so a different digest.
    let mut bytes = std::fs::read(&staticsite)?;
    bytes.extend_from_slice(&[0x00, 10, 7]);
    bytes.extend_from_slice(b"upgradev2");
    let upgraded = c.dir.path().join("staticsite-v2.wasm");
    std::fs::write(&upgraded, &bytes)?;
    let v2 = plugin(&upgraded, "staticsite")?;
    assert_ne!(v1, v2);
    let active = || -> Result<String> {
        c.ok(&[
            "get",
            "plugin",
            "staticsite",
            "-o",
            "jsonpath={.status.phase} {.status.activeDigest}",
        ])
    };
    eventually(Duration::from_secs(30), || {
        Ok(active()? == format!("Running {v2}"))
    })?;
    let short = |d: &str| d.trim_start_matches("sha256:")[..12].to_string();
    assert!(
        list()?.lines().any(|l| l.starts_with("staticsite")
            && l.contains(&short(&v2))
            && l.contains("Running")),
        "{}",
        list()?
    );
    // The new version reconciles: a replicas change still reaches the Deployment.
    c.ok(&[
        "patch",
        "staticsite",
        "docs",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":1}}"#,
    ])?;
    eventually(Duration::from_secs(30), || {
        Ok(c.ok(&[
            "get",
            "deployment",
            "docs",
            "-o",
            "jsonpath={.spec.replicas}",
        ])? == "1")
    })?;

    // Roll back: install the previous file again.
    assert_eq!(plugin(&staticsite, "staticsite")?, v1);
    eventually(Duration::from_secs(30), || {
        Ok(active()? == format!("Running {v1}"))
    })?;
    assert!(list()?.contains(&short(&v1)), "{}", list()?);
    assert!(
        !c.log().contains("panicked"),
        "the server restarted or panicked:\n{}",
        c.log()
    );

    c.ok(&["delete", "staticsite", "docs"])?;
    eventually(Duration::from_secs(30), || {
        Ok(c.ok(&[
            "get",
            "configmap,deployment,service,rs,pods",
            "-l",
            "wasmkube.dev/staticsite=docs",
            "-o",
            "name",
        ])?
        .trim()
        .is_empty())
    })?;
    Ok(())
}

/// The server with the built-in plugins `names`, loaded from the release build.
fn cluster_with(names: &[&str]) -> Result<Cluster> {
    let release = wasmkube_e2e::plugin_dir();
    let files: Vec<String> = names
        .iter()
        .map(|n| {
            release
                .join(format!("wasmkube_plugin_{n}.wasm"))
                .display()
                .to_string()
        })
        .collect();
    let args: Vec<&str> = files
        .iter()
        .flat_map(|f| ["--plugin", f.as_str()])
        .collect();
    Cluster::start_with(&args)
}

#[test]
fn statefulset_daemonset_and_job_with_kubectl() -> Result<()> {
    let c = cluster_with(&["statefulset", "daemonset", "job"])?;
    let _node = SimulatedNode::start(c.kubeconfig());
    let manifests = r#"
apiVersion: v1
kind: Node
metadata: {name: node-1, labels: {disk: ssd}}
---
apiVersion: v1
kind: Node
metadata: {name: node-2}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      nodeSelector: {disk: ssd}
      containers: [{name: agent, image: "busybox:1"}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: "busybox:1"}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      storageClassName: local
      resources: {requests: {storage: 1Gi}}
---
# Claims of this class wait for their pod to be scheduled, so the scheduler lets the pods through.
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: local}
provisioner: wasmkube.dev/local-path
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  completions: 2
  template:
    spec:
      restartPolicy: Never
      containers: [{name: once, image: busybox}]
"#;
    let out = c.kubectl_stdin(&["apply", "-f", "-"], Some(manifests))?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The Job: pods run to completion on the simulated node; kubectl waits for the condition.
    let waited = c.ok(&[
        "wait",
        "--for=condition=complete",
        "job/once",
        "--timeout=60s",
    ])?;
    assert!(waited.contains("job.batch/once condition met"), "{waited}");
    assert!(c.ok(&["get", "job", "once"])?.contains("2/2"));

    // The StatefulSet: ordinal pods and their claims, `rollout status`, `scale`.
    let status = c.ok(&["rollout", "status", "statefulset/db", "--timeout=60s"])?;
    assert!(
        status.contains("partitioned roll out complete") || status.contains("roll out complete"),
        "{status}"
    );
    assert_eq!(
        c.ok(&["get", "pods", "-l", "app=db", "-o", "name"])?,
        "pod/db-0\npod/db-1\n"
    );
    assert_eq!(
        c.ok(&["get", "pvc", "-o", "name"])?,
        "persistentvolumeclaim/data-db-0\npersistentvolumeclaim/data-db-1\n"
    );
    c.ok(&["set", "image", "statefulset/db", "db=busybox:2"])?;
    c.ok(&["rollout", "status", "statefulset/db", "--timeout=60s"])?;
    let history = c.ok(&["rollout", "history", "statefulset/db"])?;
    assert_eq!(lines_with(&history, "<none>"), 2, "{history}");
    c.ok(&["rollout", "undo", "statefulset/db"])?;
    c.ok(&["rollout", "status", "statefulset/db", "--timeout=60s"])?;
    eventually(Duration::from_secs(30), || {
        let images = c.ok(&[
            "get",
            "pods",
            "-l",
            "app=db",
            "-o",
            "jsonpath={.items[*].spec.containers[0].image}",
        ])?;
        Ok(images == "busybox:1 busybox:1")
    })?;
    c.ok(&["scale", "statefulset/db", "--replicas=1"])?;
    eventually(Duration::from_secs(30), || {
        Ok(c.ok(&["get", "pods", "-l", "app=db", "-o", "name"])? == "pod/db-0\n")
    })?;
    assert_eq!(
        c.ok(&["get", "pvc", "-o", "name"])?.lines().count(),
        2,
        "claims survive scale-down"
    );

    // The DaemonSet: a pod on the labelled node only, then on a node labelled later;
    // `rollout status`, `history` and `undo` through its ControllerRevisions.
    c.ok(&["rollout", "status", "daemonset/agent", "--timeout=60s"])?;
    let on = || {
        c.ok(&[
            "get",
            "pods",
            "-l",
            "app=agent",
            "-o",
            "jsonpath={.items[*].spec.nodeName}",
        ])
    };
    assert_eq!(on()?, "node-1");
    c.ok(&["label", "node", "node-2", "disk=ssd"])?;
    eventually(
        Duration::from_secs(10),
        || Ok(on()?.split(' ').count() == 2),
    )?;
    c.ok(&["set", "image", "daemonset/agent", "agent=busybox:2"])?;
    c.ok(&["rollout", "status", "daemonset/agent", "--timeout=60s"])?;
    let history = c.ok(&["rollout", "history", "daemonset/agent"])?;
    assert_eq!(lines_with(&history, "<none>"), 2, "{history}");
    c.ok(&["rollout", "undo", "daemonset/agent"])?;
    c.ok(&["rollout", "status", "daemonset/agent", "--timeout=60s"])?;
    let image = c.ok(&[
        "get",
        "daemonset",
        "agent",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ])?;
    assert_eq!(image, "busybox:1");

    c.ok(&["delete", "daemonset/agent", "statefulset/db", "job/once"])?;
    eventually(Duration::from_secs(30), || {
        Ok(c.ok(&["get", "pods,controllerrevisions", "-o", "name"])?
            .trim()
            .is_empty())
    })?;
    Ok(())
}
