//! The real kubectl against a real server: everything a user does with ordinary manifests.

use std::time::Duration;

use anyhow::Result;
use wasmkube_e2e::{Cluster, demo_dir, eventually, lines_with, repo};

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
        wide.contains("CONTAINERS") && wide.contains("busybox:latest") && wide.contains("app=web"),
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
    // (Every namespace holds the cluster CA's ConfigMap, put there by the server.)
    let stored = c.ok(&["get", "deploy,cm", "-n", "default", "-o", "name"])?;
    let stored: Vec<&str> = stored
        .lines()
        .filter(|l| *l != "configmap/kube-root-ca.crt")
        .collect();
    assert!(stored.is_empty(), "nothing was stored: {stored:?}");
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
fn pods_on_nodes_are_deleted_gracefully_and_silent_nodes_tainted() -> Result<()> {
    let c = Cluster::start_with(&["--node-monitor-grace-period", "3s"])?;
    let manifests = "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  nodeName: n1\n  containers: [{name: web, image: busybox}]\n";
    let out = c.kubectl_stdin(&["apply", "-f", "-"], Some(manifests))?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |kind: &str, name: &str, path: &str| {
        c.ok(&["get", kind, name, "-o", &format!("jsonpath={path}")])
    };

    // The node gets a pod CIDR; the pod the default tolerations.
    eventually(Duration::from_secs(10), || {
        Ok(field("node", "n1", "{.spec.podCIDR}")? == "10.244.0.0/24")
    })?;
    let tolerations = field(
        "pod",
        "web",
        "{range .spec.tolerations[*]}{.key}={.tolerationSeconds} {end}",
    )?;
    assert_eq!(
        tolerations.trim(),
        "node.kubernetes.io/not-ready=300 node.kubernetes.io/unreachable=300"
    );

    // Nothing renews the node's Lease: after the grace period it is unreachable.
    eventually(Duration::from_secs(20), || {
        Ok(field("node", "n1", "{.spec.taints[*].effect}")? == "NoSchedule NoExecute")
    })?;
    let describe = c.ok(&["describe", "node", "n1"])?;
    assert!(
        describe.contains("node.kubernetes.io/unreachable:NoExecute")
            && describe.contains("Kubelet never posted node status."),
        "{describe}"
    );

    // The pod is on a node: deleting it marks it and waits for the node; `--force` with a grace
    // period of 0 deletes it at once.
    let deleted = c.ok(&["delete", "pod", "web", "--wait=false"])?;
    assert!(deleted.contains("pod \"web\" deleted"), "{deleted}");
    assert!(c.ok(&["get", "pod", "web"])?.contains("Terminating"));
    assert_eq!(
        field("pod", "web", "{.metadata.deletionGracePeriodSeconds}")?,
        "30"
    );
    c.ok(&["delete", "pod", "web", "--grace-period=0", "--force"])?;
    let gone = c.fails(&["get", "pod", "web"])?;
    assert!(gone.contains("NotFound"), "{gone}");
    Ok(())
}

/// The `kubernetes` Service's Endpoints and EndpointSlice name the address the apiserver
/// advertises and the port it serves on, as kube-apiserver's endpoint reconciler writes them.
#[test]
fn the_kubernetes_service_names_the_apiserver() -> Result<()> {
    let c = Cluster::start_with(&["--advertise-address", "198.51.100.7"])?;
    let expected = format!("198.51.100.7:{}", c.port);
    eventually(Duration::from_secs(10), || {
        Ok(c.ok(&[
            "get",
            "endpoints",
            "kubernetes",
            "-o",
            "jsonpath={.subsets[0].addresses[0].ip}:{.subsets[0].ports[0].port}",
        ])? == expected)
    })?;
    let slice = c.ok(&[
        "get",
        "endpointslice",
        "kubernetes",
        "-o",
        "jsonpath={.metadata.labels.kubernetes\\.io/service-name} {.endpoints[0].addresses[0]} {.ports[0].name} {.ports[0].port}",
    ])?;
    assert_eq!(slice, format!("kubernetes 198.51.100.7 https {}", c.port));
    // The endpoints controller leaves the selectorless Service's endpoints alone.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        c.ok(&["get", "endpoints", "kubernetes"])?
            .contains(&expected)
    );
    Ok(())
}

/// RBAC's four kinds are served as Kubernetes serves them (names like `system:…`, kubectl's
/// columns, roleRef immutable, rules checked), so charts and operators that ship RBAC apply.
#[test]
fn rbac_objects_apply_as_charts_ship_them() -> Result<()> {
    let c = Cluster::start()?;
    c.apply(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: system:pod-reader\nrules:\n- apiGroups: ['']\n  resources: [pods]\n  verbs: [get, list, watch]\n- nonResourceURLs: [/healthz]\n  verbs: [get]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: read-pods\n  namespace: default\nsubjects:\n- {kind: User, name: jane, apiGroup: rbac.authorization.k8s.io}\n- {kind: ServiceAccount, name: bot, namespace: default}\nroleRef: {kind: ClusterRole, name: 'system:pod-reader', apiGroup: rbac.authorization.k8s.io}\n",
    )?;
    c.ok(&[
        "create",
        "role",
        "cm-editor",
        "--verb=*",
        "--resource=configmaps",
    ])?;
    c.ok(&[
        "create",
        "clusterrolebinding",
        "ops",
        "--clusterrole=system:pod-reader",
        "--group=ops",
    ])?;
    let wide = c.ok(&["get", "rolebinding", "read-pods", "-o", "wide"])?;
    assert!(
        wide.lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            == ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"],
        "{wide}"
    );
    assert!(
        wide.contains("ClusterRole/system:pod-reader") && wide.contains("default/bot"),
        "{wide}"
    );
    assert!(c.ok(&["get", "clusterroles"])?.contains("CREATED AT"));
    assert!(
        c.ok(&["describe", "role", "cm-editor"])?
            .contains("configmaps")
    );

    let changed = c.fails(&[
        "patch",
        "rolebinding",
        "read-pods",
        "--type",
        "merge",
        "-p",
        r#"{"roleRef":{"name":"cluster-admin"}}"#,
    ])?;
    assert!(
        changed.contains("roleRef: Invalid value") && changed.contains("cannot change roleRef"),
        "{changed}"
    );
    let out = c.kubectl_stdin(
        &["create", "-f", "-"],
        Some("apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: empty\nrules:\n- apiGroups: ['']\n  resources: [pods]\n"),
    )?;
    let err = String::from_utf8(out.stderr)?;
    assert!(
        err.contains("rules[0].verbs: Required value: verbs must contain at least one value"),
        "{err}"
    );
    Ok(())
}
