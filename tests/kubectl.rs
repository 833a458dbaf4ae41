//! The real kubectl against a real server: everything a user does with ordinary manifests.

use std::time::Duration;

use anyhow::Result;
use wasmkube_e2e::{Cluster, eventually, repo};

fn demo_dir() -> String {
    repo().join("manifests/demo").display().to_string()
}

fn lines_with(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn apply_get_and_delete_a_directory() -> Result<()> {
    let c = Cluster::start()?;
    let dir = demo_dir();
    assert!(
        c.ok(&["create", "namespace", "demo"])?
            .contains("namespace/demo created")
    );

    // kubectl maps every object before applying any, so the custom resource of a CRD created in
    // the same run is refused client-side (upstream kubectl#1179); everything else is created.
    let out = c.kubectl(&["apply", "-n", "demo", "-f", &dir])?;
    let (first, err) = (
        String::from_utf8(out.stdout)?,
        String::from_utf8(out.stderr)?,
    );
    for created in [
        "deployment.apps/web created",
        "service/web created",
        "configmap/web-config created",
        "secret/web-credentials created",
        "customresourcedefinition.apiextensions.k8s.io/staticsites.wasmkube.dev created",
    ] {
        assert!(
            first.contains(created),
            "{created} missing from:\n{first}{err}"
        );
    }
    assert!(
        err.contains(r#"no matches for kind "StaticSite" in version "wasmkube.dev/v1""#),
        "{err}"
    );
    let second = c.ok(&["apply", "-n", "demo", "-f", &dir])?;
    assert!(
        second.contains("staticsite.wasmkube.dev/hello created"),
        "{second}"
    );
    assert_eq!(lines_with(&second, "unchanged"), 5, "{second}");
    let again = c.ok(&["apply", "-n", "demo", "-f", &dir])?;
    assert_eq!(lines_with(&again, "unchanged"), 6, "{again}");

    // Tables with the columns kubectl users know.
    let deploy = c.ok(&["get", "deployments", "-n", "demo"])?;
    assert!(
        deploy.starts_with("NAME   READY   UP-TO-DATE   AVAILABLE   AGE"),
        "{deploy}"
    );
    assert!(deploy.contains("web    0/2"), "{deploy}");
    let wide = c.ok(&["get", "deployments", "-n", "demo", "-o", "wide"])?;
    assert!(
        wide.contains("CONTAINERS")
            && wide.contains("wasmkube.local/busybox:latest")
            && wide.contains("app=web"),
        "{wide}"
    );
    let svc = c.ok(&["get", "svc", "-n", "demo"])?;
    assert!(
        svc.contains("TYPE") && svc.contains("ClusterIP") && svc.contains("80/TCP"),
        "{svc}"
    );
    let cm = c.ok(&["get", "configmap", "web-config", "-n", "demo"])?;
    assert!(cm.contains("DATA") && cm.contains("web-config   2"), "{cm}");
    let secret = c.ok(&["get", "secret", "-n", "demo", "-o", "json"])?;
    let secret: serde_json::Value = serde_json::from_str(&secret)?;
    assert_eq!(secret["items"][0]["data"]["username"], "YWRtaW4=");
    let site = c.ok(&["get", "staticsites", "-n", "demo", "-o", "yaml"])?;
    assert!(site.contains("content: <h1>hello</h1>"), "{site}");
    let pods = c.ok(&["get", "pods", "-n", "demo", "-o", "wide"])?;
    assert!(pods.is_empty() || pods.contains("NOMINATED NODE"), "{pods}");

    // Selectors.
    let labelled = c.ok(&[
        "get",
        "deploy,svc,cm,secret",
        "-n",
        "demo",
        "-l",
        "app=web",
        "-o",
        "name",
    ])?;
    assert_eq!(labelled.lines().count(), 4, "{labelled}");
    let set_based = c.ok(&[
        "get",
        "deploy,svc",
        "-n",
        "demo",
        "-l",
        "tier in (a,b)",
        "-o",
        "name",
    ])?;
    assert_eq!(
        set_based.lines().collect::<Vec<_>>(),
        vec!["deployment.apps/web", "service/web"]
    );
    let by_field = c.ok(&[
        "get",
        "configmaps",
        "-n",
        "demo",
        "--field-selector",
        "metadata.name=web-config",
        "-o",
        "name",
    ])?;
    assert_eq!(by_field.trim(), "configmap/web-config");

    // Editing a field is "configured"; describe, label, annotate.
    let edited = std::fs::read_to_string(repo().join("manifests/demo/configmap.yaml"))?
        .replace("greeting: hello", "greeting: bonjour");
    let out = c.kubectl_stdin(&["apply", "-n", "demo", "-f", "-"], Some(&edited))?;
    assert!(String::from_utf8(out.stdout)?.contains("configmap/web-config configured"));
    let described = c.ok(&["describe", "deployment", "web", "-n", "demo"])?;
    assert!(
        described.contains("Replicas:") && described.contains("2 desired"),
        "{described}"
    );
    c.ok(&[
        "label",
        "deployment",
        "web",
        "-n",
        "demo",
        "tier=z",
        "--overwrite",
    ])?;
    c.ok(&[
        "annotate",
        "deployment",
        "web",
        "-n",
        "demo",
        "team=platform",
    ])?;
    let labels = c.ok(&[
        "get",
        "deployment",
        "web",
        "-n",
        "demo",
        "-o",
        "jsonpath={.metadata.labels.tier} {.metadata.annotations.team}",
    ])?;
    assert_eq!(labels, "z platform");

    // Delete the directory, then the namespace removes what was left in it.
    c.ok(&[
        "create",
        "configmap",
        "leftover",
        "-n",
        "demo",
        "--from-literal=a=b",
    ])?;
    let deleted = c.ok(&["delete", "-n", "demo", "-f", &dir])?;
    assert_eq!(lines_with(&deleted, "deleted"), 6, "{deleted}");
    assert!(
        c.ok(&["get", "deploy,svc", "-n", "demo", "-o", "name"])?
            .is_empty()
    );
    c.ok(&["delete", "namespace", "demo"])?;
    let left = c.fails(&["get", "configmap", "leftover", "-n", "demo"])?;
    assert!(left.contains("not found"), "{left}");
    assert!(
        c.fails(&["get", "namespace", "demo"])?
            .contains("not found")
    );
    Ok(())
}

#[test]
fn scale_patch_server_side_apply_and_explain() -> Result<()> {
    let c = Cluster::start()?;
    c.ok(&[
        "apply",
        "-n",
        "default",
        "-f",
        &format!("{}/deployment.yaml", demo_dir()),
    ])?;
    c.ok(&["scale", "deployment", "web", "--replicas=5"])?;
    assert_eq!(
        c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"])?,
        "5"
    );

    c.ok(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"busybox:2"}]}}}}"#,
    ])?;
    c.ok(&[
        "patch",
        "deployment",
        "web",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"labels":{"merged":"yes"}}}"#,
    ])?;
    c.ok(&[
        "patch",
        "deployment",
        "web",
        "--type",
        "json",
        "-p",
        r#"[{"op":"add","path":"/spec/minReadySeconds","value":7}]"#,
    ])?;
    let got = c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].ports[0].containerPort} {.metadata.labels.merged} {.spec.minReadySeconds} {.metadata.generation}"])?;
    assert_eq!(got, "busybox:2 8080 yes 7 4");

    // Server-side apply conflicts with the replicas kubectl scale set, until forced.
    let conflict = c.fails(&[
        "apply",
        "--server-side",
        "-f",
        &format!("{}/deployment.yaml", demo_dir()),
    ])?;
    assert!(
        conflict.contains("conflict") && conflict.contains(".spec.replicas"),
        "{conflict}"
    );
    let forced = c.ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        &format!("{}/deployment.yaml", demo_dir()),
    ])?;
    assert!(forced.contains("serverside-applied"), "{forced}");
    assert_eq!(
        c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"])?,
        "2"
    );

    let explained = c.ok(&["explain", "deployment.spec.replicas"])?;
    assert!(
        explained.contains("FIELD: replicas <integer>")
            && explained.contains("Number of desired pods"),
        "{explained}"
    );
    Ok(())
}

#[test]
fn bad_manifests_are_refused_and_change_nothing() -> Result<()> {
    let c = Cluster::start()?;
    let invalid = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: bad\nspec:\n  replicas: -1\n  selector:\n    matchLabels: {app: bad}\n  template:\n    metadata:\n      labels: {app: bad}\n    spec:\n      containers:\n      - name: c\n";
    let out = c.kubectl_stdin(&["apply", "-f", "-"], Some(invalid))?;
    let err = String::from_utf8(out.stderr)?;
    assert!(!out.status.success());
    assert!(
        err.contains("spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
        "{err}"
    );
    assert!(
        err.contains("spec.template.spec.containers[0].image: Required value"),
        "{err}"
    );
    let malformed = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n data: [\n";
    let out = c.kubectl_stdin(&["apply", "-f", "-"], Some(malformed))?;
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr)?.contains("error"));
    let unknown = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\nbogus: 1\n";
    let out = c.kubectl_stdin(&["apply", "-f", "-"], Some(unknown))?;
    assert!(String::from_utf8(out.stderr)?.contains(r#"unknown field "bogus""#));
    assert_eq!(
        c.ok(&["get", "deploy,cm", "-n", "default", "-o", "name"])?,
        "",
        "nothing was stored"
    );
    Ok(())
}

#[test]
fn get_watch_prints_new_pods() -> Result<()> {
    let c = Cluster::start()?;
    let mut watch = std::process::Command::new("kubectl")
        .args(["get", "pods", "-w"])
        .env("KUBECONFIG", c.kubeconfig())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let stdout = watch.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.starts_with("watched "))
    });
    // Wait until kubectl's watch is open on the server, then create the pod from "another shell".
    eventually(Duration::from_secs(10), || {
        Ok(c.ok(&["get", "--raw", "/metrics"])?
            .contains("apiserver_registered_watchers 1"))
    })?;
    c.ok(&["run", "watched", "--image=busybox"])?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !reader.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(
        reader.join().unwrap_or(false),
        "kubectl get pods -w never printed the new pod"
    );
    Ok(())
}

#[test]
fn replicaset_controller_runs_as_wasm() -> Result<()> {
    let plugin =
        wasmkube_e2e::target_dir().join("wasm32-wasip2/release/wasmkube_plugin_replicaset.wasm");
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

/// Acts as a node until dropped: every pod that is not ready yet is reported Running and Ready
/// through the status subresource, the way a node agent would.
struct SimulatedNode {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SimulatedNode {
    fn start(kubeconfig: std::path::PathBuf) -> SimulatedNode {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let kubectl = |args: &[&str]| {
                std::process::Command::new("kubectl")
                    .args(args)
                    .env("KUBECONFIG", &kubeconfig)
                    .output()
            };
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let pending = kubectl(&[
                    "get",
                    "pods",
                    "-o",
                    "jsonpath={range .items[?(@.status.phase==\"Pending\")]}{.metadata.name} {end}",
                ]);
                for name in pending
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default()
                    .split_whitespace()
                {
                    let status = r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}"#;
                    let _ = kubectl(&[
                        "patch",
                        "pod",
                        name,
                        "--subresource=status",
                        "--type=merge",
                        "-p",
                        status,
                    ]);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        SimulatedNode {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SimulatedNode {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn deployment_rollouts_with_kubectl_and_plugins_installed_through_the_api() -> Result<()> {
    let c = Cluster::start()?;
    let release = wasmkube_e2e::target_dir().join("wasm32-wasip2/release");
    for name in ["replicaset", "deployment"] {
        let file = release.join(format!("wasmkube_plugin_{name}.wasm"));
        let out = std::process::Command::new(wasmkube_e2e::binary())
            .args(["plugin", "install"])
            .arg(&file)
            .args(["--name", name])
            .env("KUBECONFIG", c.kubeconfig())
            .output()?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eventually(Duration::from_secs(20), || {
        let list = std::process::Command::new(wasmkube_e2e::binary())
            .args(["plugin", "list"])
            .env("KUBECONFIG", c.kubeconfig())
            .output()?;
        Ok(String::from_utf8_lossy(&list.stdout)
            .lines()
            .filter(|l| l.contains("Running"))
            .count()
            == 2)
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
    let release = wasmkube_e2e::target_dir().join("wasm32-wasip2/release");
    let plugin = |file: &std::path::Path, name: &str| -> Result<String> {
        let out = std::process::Command::new(wasmkube_e2e::binary())
            .args(["plugin", "install"])
            .arg(file)
            .args(["--name", name])
            .env("KUBECONFIG", c.kubeconfig())
            .output()?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // "plugin.wasmkube.dev/N installed: sha256:<hex> (N bytes)"
        Ok(stdout
            .split_whitespace()
            .find(|w| w.starts_with("sha256:"))
            .unwrap_or_default()
            .to_string())
    };
    let list = || -> Result<String> {
        let out = std::process::Command::new(wasmkube_e2e::binary())
            .args(["plugin", "list"])
            .env("KUBECONFIG", c.kubeconfig())
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
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
        Ok(lines_with(&list()?, "Running") == 3)
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
