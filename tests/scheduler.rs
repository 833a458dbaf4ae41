//! The scheduler with its default policy in Wasm, driven by the real kubectl: pods land where
//! Kubernetes would put them, an unschedulable pod says why and is scheduled once a node fits,
//! and the PreferLabel example policy is judged in shadow mode (its log lines labelled so),
//! swapped in under load and out.

use std::time::Duration;

use anyhow::Result;
use wasmkube_e2e::{Cluster, eventually};

/// A Node with a zone, labels, CPUs and taints, as YAML.
fn node(name: &str, zone: &str, labels: &str, cpu: u32, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels: {{kubernetes.io/hostname: {name}, topology.kubernetes.io/zone: {zone}{labels}}}\nspec: {{{extra_spec}}}\nstatus:\n  allocatable: {{cpu: '{cpu}', memory: 8Gi, pods: '110'}}\n  capacity: {{cpu: '{cpu}', memory: 8Gi, pods: '110'}}\n---\n"
    )
}

fn pod(name: &str, labels: &str, spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\nspec:\n  containers: [{{name: c, image: busybox}}]\n{spec}---\n"
    )
}

/// The nodes here are static (nothing renews their Leases): a grace period longer than the
/// tests keeps the node lifecycle controller from marking them unreachable and tainting them.
const STATIC_NODES: [&str; 2] = ["--node-monitor-grace-period", "1h"];

/// The node a pod is bound to, once it is.
fn node_of(c: &Cluster, pod: &str) -> Result<String> {
    let mut node = String::new();
    eventually(Duration::from_secs(20), || {
        node = c.ok(&["get", "pod", pod, "-o", "jsonpath={.spec.nodeName}"])?;
        Ok(!node.is_empty())
    })?;
    Ok(node)
}

#[test]
fn pods_land_where_kubernetes_would_put_them() -> Result<()> {
    let c = Cluster::start_with(&STATIC_NODES)?;
    let nodes = [
        node("n1", "zone-a", ", disk: ssd, pool: spread", 2, ""),
        node("n2", "zone-b", ", pool: spread", 2, ""),
        node(
            "n3",
            "zone-c",
            "",
            4,
            "taints: [{key: dedicated, value: gpu, effect: NoSchedule}]",
        ),
        node("n4", "zone-a", "", 1, "unschedulable: true"),
    ];
    c.apply(&nodes.concat())?;

    // An unschedulable pod: each node fails for its first reason, counted as kube-scheduler does.
    let big = "  containers: [{name: c, image: busybox, resources: {requests: {cpu: '3'}}}]\n";
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: big}}\nspec:\n{big}"
    ))?;
    let message = "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) were unschedulable, 2 Insufficient cpu.";
    eventually(Duration::from_secs(20), || {
        Ok(c.ok(&["describe", "pod", "big"])?.contains(message))
    })?;
    let describe = c.ok(&["describe", "pod", "big"])?;
    assert!(describe.contains("FailedScheduling"), "{describe}");
    let condition = c.ok(&[
        "get",
        "pod",
        "big",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].reason}",
    ])?;
    assert_eq!(condition, "Unschedulable");

    // A node that fits appears: the pod is scheduled onto it at once.
    c.apply(&node("n5", "zone-b", "", 8, ""))?;
    assert_eq!(node_of(&c, "big")?, "n5");
    let describe = c.ok(&["describe", "pod", "big"])?;
    assert!(
        describe.contains("Successfully assigned default/big to n5"),
        "{describe}"
    );

    // nodeSelector; a toleration with required node affinity.
    c.apply(&pod("ssd", "", "  nodeSelector: {disk: ssd}\n"))?;
    assert_eq!(node_of(&c, "ssd")?, "n1");
    let gpu = "  tolerations: [{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}]\n  affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n        nodeSelectorTerms: [{matchExpressions: [{key: topology.kubernetes.io/zone, operator: In, values: [zone-c]}]}]\n";
    c.apply(&pod("gpu", "", gpu))?;
    assert_eq!(node_of(&c, "gpu")?, "n3");

    // Required anti-affinity per hostname over the two spread-pool nodes.
    let anti = "  nodeSelector: {pool: spread}\n  affinity:\n    podAntiAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution: [{topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app: web}}}]\n";
    c.apply(&pod("web-1", "app: web", anti))?;
    let first = node_of(&c, "web-1")?;
    c.apply(&pod("web-2", "app: web", anti))?;
    let second = node_of(&c, "web-2")?;
    assert_ne!(first, second, "anti-affinity keeps them apart");
    c.apply(&pod("web-3", "app: web", anti))?;
    eventually(Duration::from_secs(20), || {
        Ok(c.ok(&["describe", "pod", "web-3"])?
            .contains("didn't match pod anti-affinity rules"))
    })?;

    // Topology spread by zone, maxSkew 1, over zone-a (n1) and zone-b (n2): two and two.
    let spread = "  nodeSelector: {pool: spread}\n  topologySpreadConstraints: [{maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: spread}}}]\n";
    let mut zones = Vec::new();
    for i in 0..4 {
        let name = format!("spread-{i}");
        c.apply(&pod(&name, "app: spread", spread))?;
        zones.push(node_of(&c, &name)?);
    }
    zones.sort();
    assert_eq!(zones, ["n1", "n1", "n2", "n2"]);

    // A preferred node-affinity term outweighs the small difference in allocation.
    let preferred = "  nodeSelector: {pool: spread}\n  affinity:\n    nodeAffinity:\n      preferredDuringSchedulingIgnoredDuringExecution: [{weight: 100, preference: {matchExpressions: [{key: disk, operator: In, values: [ssd]}]}}]\n";
    c.apply(&pod("prefers-ssd", "", preferred))?;
    assert_eq!(node_of(&c, "prefers-ssd")?, "n1");

    // Pods for another scheduler are left alone.
    c.apply(&pod("other", "", "  schedulerName: someone-else\n"))?;
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        c.ok(&["get", "pod", "other", "-o", "jsonpath={.spec.nodeName}"])?,
        ""
    );
    Ok(())
}

#[test]
fn a_label_policy_is_judged_in_shadow_swapped_in_under_load_and_out() -> Result<()> {
    let c = Cluster::start_with(&STATIC_NODES)?;
    let plugin = wasmkube_e2e::plugin_dir().join("wasmkube_policy_preferlabel.wasm");
    let plugin = plugin.display().to_string();
    c.wasmkube(&[
        "plugin",
        "install",
        &plugin,
        "--name",
        "preferlabel",
        "--kind",
        "scheduler",
        "--yes",
    ])?;
    let nodes = [
        node("gold", "zone-a", ", tier: gold", 8, ""),
        node("silver-1", "zone-a", "", 8, ""),
        node("silver-2", "zone-a", "", 8, ""),
    ];
    c.apply(&nodes.concat())?;

    // Shadow mode: the candidate runs on every pod and binds nothing.
    let prefer = "{plugin: preferlabel, scores: [{name: PreferLabel, weight: 100, args: {key: tier, value: gold}}]}";
    let shadow = format!(
        "apiVersion: wasmkube.dev/v1alpha1\nkind: SchedulerProfile\nmetadata: {{name: default-scheduler}}\nspec:\n  policies: [{{plugin: default}}]\n  shadow:\n    policies: [{{plugin: default}}, {prefer}]\n"
    );
    c.apply(&shadow)?;
    eventually(Duration::from_secs(20), || {
        Ok(c.ok(&[
            "get",
            "schedulerprofile",
            "default-scheduler",
            "-o",
            "jsonpath={.status.phase}",
        ])? == "Running")
    })?;
    // Each policy's log says which role loaded it: the default runs both ways.
    let loaded = |plugin: &str, role: &str| -> Result<bool> {
        let log = c.wasmkube(&["plugin", "logs", plugin])?;
        Ok(log.lines().any(|l| {
            l.starts_with(&format!("{role}@"))
                && l.contains(" Started loaded for a scheduling profile")
        }))
    };
    assert!(loaded("preferlabel", "shadow")?);
    assert!(!loaded("preferlabel", "active")?);
    assert!(loaded("default", "shadow")? && loaded("default", "active")?);
    let batch = |prefix: &str, n: usize| -> String {
        (0..n)
            .map(|i| pod(&format!("{prefix}-{i}"), "batch: x", ""))
            .collect()
    };
    c.apply(&batch("judged", 9))?;
    let on_gold = |prefix: &str, n: usize| -> Result<usize> {
        let mut gold = 0;
        for i in 0..n {
            gold += usize::from(node_of(&c, &format!("{prefix}-{i}"))? == "gold");
        }
        Ok(gold)
    };
    let judged_on_gold = on_gold("judged", 9)?;
    assert!(
        judged_on_gold < 9,
        "the default policy spreads pods; the candidate binds nothing"
    );
    eventually(Duration::from_secs(20), || {
        let pods = c.ok(&[
            "get",
            "schedulerprofile",
            "default-scheduler",
            "-o",
            "jsonpath={.status.shadow.pods}",
        ])?;
        Ok(pods == "9")
    })?;
    let disagreements: usize = c
        .ok(&[
            "get",
            "schedulerprofile",
            "default-scheduler",
            "-o",
            "jsonpath={.status.shadow.disagreements}",
        ])?
        .parse()?;
    assert_eq!(
        disagreements,
        9 - judged_on_gold,
        "it disagrees exactly where the default did not pick gold"
    );
    let table = c.ok(&["get", "schedulerprofiles"])?;
    assert!(
        table.contains("DISAGREEMENTS") && table.contains("Running"),
        "{table}"
    );

    // Under load: pods keep coming while the candidate is made active and then removed.
    let load = std::thread::scope(|scope| -> Result<()> {
        let feeder = scope.spawn(|| -> Result<()> {
            for i in 0..30 {
                c.apply(&pod(&format!("load-{i}"), "batch: load", ""))?;
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(())
        });
        std::thread::sleep(Duration::from_millis(500));
        let active = format!(
            "apiVersion: wasmkube.dev/v1alpha1\nkind: SchedulerProfile\nmetadata: {{name: default-scheduler}}\nspec:\n  policies: [{{plugin: default}}, {prefer}]\n"
        );
        c.apply(&active)?;
        eventually(Duration::from_secs(20), || {
            Ok(c.ok(&[
                "get",
                "schedulerprofile",
                "default-scheduler",
                "-o",
                "jsonpath={.status.policies}",
            ])?
            .contains("preferlabel@"))
        })?;
        c.apply(&batch("preferred", 6))?;
        assert_eq!(
            on_gold("preferred", 6)?,
            6,
            "the active candidate puts every pod on gold"
        );
        c.ok(&["delete", "schedulerprofile", "default-scheduler"])?;
        feeder
            .join()
            .map_err(|_| anyhow::anyhow!("feeder panicked"))?
    });
    load?;
    c.apply(&batch("after", 9))?;
    assert!(on_gold("after", 9)? < 9, "back on the default policy");

    // Every pod bound once: none pending, no binding refused.
    eventually(Duration::from_secs(20), || {
        let pending = c.ok(&[
            "get",
            "pods",
            "--field-selector=spec.nodeName=",
            "-o",
            "name",
        ])?;
        Ok(pending.trim().is_empty())
    })?;
    let total = c.ok(&["get", "pods", "-o", "name"])?.lines().count();
    assert_eq!(total, 9 + 30 + 6 + 9);
    let metrics = c.ok(&["get", "--raw", "/metrics"])?;
    assert!(
        metrics.contains("wasmkube_scheduler_schedule_attempts_total{result=\"error\"} 0"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("wasmkube_scheduler"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok(())
}
