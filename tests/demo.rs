//! The README's demo, as a newcomer types it, on `wasmkube up` with nothing but the binary's
//! built-in plugins: the demo app runs and serves, a Job completes, a rollout is undone.
//! Needs root (CI runs as root); scripts/setup.sh starts containerd and builds the image.

use std::time::Duration;

use anyhow::Result;
use wasmkube_e2e::{Cluster, demo_dir, eventually, repo};

const NODE: &str = "wk-demo";

const JOB: &str = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: once\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: once\n        image: busybox\n        imagePullPolicy: IfNotPresent\n        command: [sh, -c, 'echo done']\n";

#[test]
fn the_readme_demo_runs_with_the_built_in_plugins() -> Result<()> {
    let c = Cluster::node(NODE, "wkdemo0", "10.250.0.0/16", &[])?;
    let minute = Duration::from_secs(60);
    let plugins = c.ok(&["get", "plugins", "-o", "name"])?;
    for builtin in ["deployment", "replicaset", "job", "default"] {
        assert!(
            plugins.contains(&format!("plugin.wasmkube.dev/{builtin}")),
            "{plugins}"
        );
    }

    // The README, line by line.
    let dir = demo_dir();
    c.ok(&["create", "namespace", "demo"])?;
    let _ = c.kubectl(&["apply", "-n", "demo", "-f", &dir])?;
    c.ok(&["apply", "-n", "demo", "-f", &dir])?;
    let all = c.ok(&["get", "all,cm,secret,staticsites", "-n", "demo"])?;
    assert!(
        all.contains("deployment.apps/web") && all.contains("staticsite.wasmkube.dev/hello"),
        "{all}"
    );
    let available = "jsonpath={.status.availableReplicas}";
    eventually(minute, || {
        Ok(c.ok(&["get", "deploy", "web", "-n", "demo", "-o", available])? == "2")
    })
    .map_err(|e| {
        let describe = c
            .ok(&["describe", "pods", "-n", "demo"])
            .unwrap_or_default();
        anyhow::anyhow!("demo pods not Running: {e}\n{describe}\n{}", c.log())
    })?;
    let addresses = "jsonpath={.subsets[*].addresses[*].ip}";
    eventually(minute, || {
        let ips = c.ok(&["get", "endpoints", "web", "-n", "demo", "-o", addresses])?;
        Ok(ips.split_whitespace().count() == 2)
    })?;
    c.ok(&[
        "run",
        "web",
        "--image=busybox",
        "--image-pull-policy=IfNotPresent",
        "--",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/var/www",
    ])?;
    eventually(minute, || {
        Ok(c.ok(&["get", "pod", "web", "-o", "jsonpath={.status.phase}"])? == "Running")
    })?;
    let wide = c.ok(&["get", "pod", "web", "-o", "wide"])?;
    assert!(
        wide.contains("Running") && wide.contains("10.250."),
        "{wide}"
    );

    // A Job runs to completion.
    c.apply(JOB)?;
    eventually(minute, || {
        Ok(c.ok(&["get", "job", "once", "-o", "jsonpath={.status.succeeded}"])? == "1")
    })?;

    // A rollout, undone.
    let rolled_out = || {
        c.ok(&[
            "rollout",
            "status",
            "deployment/web",
            "-n",
            "demo",
            "--timeout=60s",
        ])
    };
    c.ok(&["set", "env", "deployment/web", "-n", "demo", "STAGE=two"])?;
    rolled_out()?;
    c.ok(&["rollout", "undo", "deployment/web", "-n", "demo"])?;
    rolled_out()?;
    let env = c.ok(&[
        "get",
        "deploy",
        "web",
        "-n",
        "demo",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].env[*].name}",
    ])?;
    assert!(!env.contains("STAGE"), "{env}");
    let history = c.ok(&["rollout", "history", "deployment/web", "-n", "demo"])?;
    assert!(history.contains('3'), "{history}");

    // Services by name, as the README types them.
    c.ok(&[
        "create",
        "deployment",
        "echo",
        "--image=busybox:stable",
        "--replicas=2",
        "--",
        "httpd",
        "-f",
        "-p",
        "8080",
        "-h",
        "/var/www",
    ])?;
    c.ok(&[
        "expose",
        "deployment",
        "echo",
        "--port",
        "80",
        "--target-port",
        "8080",
    ])?;
    c.ok(&[
        "wait",
        "--for=condition=Available",
        "deployment/echo",
        "--timeout=120s",
    ])?;
    let page = client(&c, "default", "http://echo/")?;
    assert!(page.contains("wasmkube"), "{page}");

    // The two-tier app: the web tier calls the backend by name, inside and through a NodePort.
    c.ok(&["create", "namespace", "shop"])?;
    let two_tier = repo().join("manifests/two-tier").display().to_string();
    c.ok(&["apply", "-n", "shop", "-f", &two_tier])?;
    c.ok(&[
        "wait",
        "-n",
        "shop",
        "--for=condition=Available",
        "deployment",
        "--all",
        "--timeout=120s",
    ])?;
    let answer = client(&c, "shop", "http://web/cgi-bin/index.cgi")?;
    assert!(
        answer.contains("asked http://backend/ and got:")
            && answer.contains("hello from the backend"),
        "{answer}"
    );
    let node_ip = c.ok(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={.items[0].status.addresses[?(@.type==\"InternalIP\")].address}",
    ])?;
    let port = c.ok(&[
        "get",
        "service",
        "web",
        "-n",
        "shop",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ])?;
    let curl = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .arg(format!("http://{node_ip}:{port}/cgi-bin/index.cgi"))
        .output()?;
    let page = String::from_utf8_lossy(&curl.stdout);
    assert!(page.contains("hello from the backend"), "{page}");
    Ok(())
}

/// `kubectl run client --rm -i --restart=Never --image=busybox:stable -- wget -O- URL` in `ns`,
/// as the README runs it: what the client printed.
fn client(c: &Cluster, ns: &str, url: &str) -> Result<String> {
    let mut last = String::new();
    eventually(Duration::from_secs(60), || {
        let out = c.kubectl(&[
            "run",
            "client",
            "-n",
            ns,
            "--rm",
            "-i",
            "--restart=Never",
            "--image=busybox:stable",
            "--",
            "wget",
            "-O-",
            url,
        ])?;
        last = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(out.status.success())
    })
    .map_err(|e| anyhow::anyhow!("{url} from a client pod: {e}\n{last}"))?;
    Ok(last)
}
