//! Each check allowed and refused, with upstream's words; the admission decisions around them.

use serde_json::{Value, json};

use super::check::{PodView, describe, evaluate};
use super::policy::{Level, LevelVersion, Version};
use super::*;

/// The violations of `pod` (metadata and spec) at `level` and policy version `version`.
fn violations(level: Level, version: Version, pod: &Value) -> String {
    let meta: ObjectMeta = decode(&pod["metadata"]).expect("metadata");
    let spec: PodSpec = decode(&pod["spec"]).expect("spec");
    let view = PodView {
        meta: &meta,
        spec: &spec,
    };
    describe(&evaluate(LevelVersion { level, version }, &view))
}

/// A pod whose container `c` has `security_context`.
fn container(security_context: Value) -> Value {
    json!({"spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": security_context}]}})
}

/// A pod with the pod-level `security_context` and a plain container `c`.
fn pod_context(security_context: Value) -> Value {
    json!({"spec": {"securityContext": security_context, "containers": [{"name": "c", "image": "busybox"}]}})
}

/// A pod that meets the restricted level, with `extra` merged into its spec.
fn hardened(extra: Value) -> Value {
    let mut pod = json!({"spec": {
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "c", "image": "busybox", "securityContext": {
            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}],
    }});
    for (k, v) in extra.as_object().into_iter().flatten() {
        pod["spec"][k] = v.clone();
    }
    pod
}

#[test]
fn baseline_checks_allow_and_refuse_as_upstream() {
    let cases: Vec<(&str, Value, &str)> = vec![
        ("plain", container(json!({})), ""),
        (
            "apparmor field",
            container(json!({"appArmorProfile": {"type": "Unconfined"}})),
            r#"forbidden AppArmor profile (container "c" must not set AppArmor profile type to "Unconfined")"#,
        ),
        (
            "apparmor allowed",
            container(json!({"appArmorProfile": {"type": "RuntimeDefault"}})),
            "",
        ),
        (
            "apparmor annotation",
            json!({"metadata": {"annotations": {"container.apparmor.security.beta.kubernetes.io/c": "unconfined"}},
                "spec": {"containers": [{"name": "c", "image": "b"}]}}),
            r#"forbidden AppArmor profile (annotation must not set AppArmor profile type to "container.apparmor.security.beta.kubernetes.io/c="unconfined"")"#,
        ),
        (
            "capabilities",
            container(json!({"capabilities": {"add": ["SYS_ADMIN", "CHOWN", "NET_RAW"]}})),
            r#"non-default capabilities (container "c" must not include "NET_RAW", "SYS_ADMIN" in securityContext.capabilities.add)"#,
        ),
        (
            "default capabilities",
            container(json!({"capabilities": {"add": ["CHOWN", "NET_BIND_SERVICE"]}})),
            "",
        ),
        (
            "host namespaces",
            json!({"spec": {"hostNetwork": true, "hostIPC": true, "hostPID": false, "containers": [{"name": "c"}]}}),
            "host namespaces (hostNetwork=true, hostIPC=true)",
        ),
        (
            "hostPath",
            json!({"spec": {"containers": [{"name": "c"}], "volumes": [
                {"name": "a", "hostPath": {"path": "/"}}, {"name": "e", "emptyDir": {}},
                {"name": "b", "hostPath": {"path": "/etc"}}]}}),
            r#"hostPath volumes (volumes "a", "b")"#,
        ),
        (
            "hostPort",
            json!({"spec": {"containers": [
                {"name": "a", "ports": [{"containerPort": 80, "hostPort": 80}, {"containerPort": 9000, "hostPort": 9000}]},
                {"name": "b", "ports": [{"containerPort": 81}]}]}}),
            r#"hostPort (container "a" uses hostPorts 80, 9000)"#,
        ),
        (
            "privileged",
            json!({"spec": {"initContainers": [{"name": "i", "securityContext": {"privileged": true}}],
                "containers": [{"name": "c", "securityContext": {"privileged": true}}, {"name": "d", "securityContext": {"privileged": false}}]}}),
            r#"privileged (containers "i", "c" must not set securityContext.privileged=true)"#,
        ),
        (
            "procMount",
            container(json!({"procMount": "Unmasked"})),
            r#"procMount (container "c" must not set securityContext.procMount to "Unmasked")"#,
        ),
        (
            "procMount default",
            container(json!({"procMount": "Default"})),
            "",
        ),
        (
            "seLinuxOptions",
            pod_context(json!({"seLinuxOptions": {"type": "spc_t", "user": "root"}})),
            r#"seLinuxOptions (pod set forbidden securityContext.seLinuxOptions: type "spc_t"; user may not be set)"#,
        ),
        (
            "seLinuxOptions allowed",
            container(json!({"seLinuxOptions": {"type": "container_engine_t", "level": "s0:c1"}})),
            "",
        ),
        (
            "seccomp",
            json!({"spec": {"securityContext": {"seccompProfile": {"type": "Unconfined"}},
                "containers": [{"name": "c", "securityContext": {"seccompProfile": {"type": "Unconfined"}}}]}}),
            r#"seccompProfile (pod and container "c" must not set securityContext.seccompProfile.type to "Unconfined")"#,
        ),
        (
            "seccomp localhost",
            container(
                json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}}),
            ),
            "",
        ),
        (
            "sysctls",
            pod_context(
                json!({"sysctls": [{"name": "kernel.msgmax", "value": "1"}, {"name": "net.ipv4.tcp_rmem", "value": "1"}]}),
            ),
            "forbidden sysctls (kernel.msgmax)",
        ),
        (
            "hostProcess",
            json!({"spec": {"securityContext": {"windowsOptions": {"hostProcess": true}},
                "containers": [{"name": "c", "securityContext": {"windowsOptions": {"hostProcess": true}}}]}}),
            r#"hostProcess (pod and container "c" must not set securityContext.windowsOptions.hostProcess=true)"#,
        ),
        (
            "ephemeral containers are checked",
            json!({"spec": {"containers": [{"name": "c"}],
                "ephemeralContainers": [{"name": "debug", "securityContext": {"privileged": true}}]}}),
            r#"privileged (container "debug" must not set securityContext.privileged=true)"#,
        ),
    ];
    for (case, pod, want) in cases {
        assert_eq!(
            violations(Level::Baseline, Version::Latest, &pod),
            want,
            "{case}"
        );
        assert_eq!(
            violations(Level::Privileged, Version::Latest, &pod),
            "",
            "{case}"
        );
    }
}

#[test]
fn restricted_checks_allow_and_refuse_as_upstream() {
    let cases: Vec<(&str, Value, &str)> = vec![
        ("hardened", hardened(json!({})), ""),
        (
            "plain",
            container(json!({})),
            r#"allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#,
        ),
        (
            "capabilities added",
            hardened(json!({"containers": [{"name": "c", "securityContext": {
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE", "CHOWN"]}}}]})),
            r#"unrestricted capabilities (container "c" must not include "CHOWN" in securityContext.capabilities.add)"#,
        ),
        (
            "volumes",
            hardened(json!({"volumes": [{"name": "h", "hostPath": {"path": "/"}},
                {"name": "n", "nfs": {"server": "x", "path": "/"}}, {"name": "s", "secret": {"secretName": "s"}}]})),
            r#"restricted volume types (volumes "h", "n" use restricted volume types "hostPath", "nfs")"#,
        ),
        (
            "runAsNonRoot false",
            hardened(
                json!({"securityContext": {"runAsNonRoot": false, "seccompProfile": {"type": "RuntimeDefault"}}}),
            ),
            "runAsNonRoot != true (pod must not set securityContext.runAsNonRoot=false)",
        ),
        (
            "runAsUser 0",
            hardened(
                json!({"securityContext": {"runAsNonRoot": true, "runAsUser": 0, "seccompProfile": {"type": "Localhost"}}}),
            ),
            "runAsUser=0 (pod must not set runAsUser=0)",
        ),
        (
            "seccomp per container",
            hardened(
                json!({"securityContext": {"runAsNonRoot": true}, "containers": [{"name": "c", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"}}}]}),
            ),
            "",
        ),
        (
            "windows pods skip what Windows cannot set",
            json!({"spec": {"os": {"name": "windows"}, "securityContext": {"runAsNonRoot": true},
                "containers": [{"name": "c"}]}}),
            "",
        ),
        (
            "baseline still applies",
            hardened(json!({"hostNetwork": true})),
            "host namespaces (hostNetwork=true)",
        ),
    ];
    for (case, pod, want) in cases {
        assert_eq!(
            violations(Level::Restricted, Version::Latest, &pod),
            want,
            "{case}"
        );
    }
}

#[test]
fn versions_pick_each_checks_revision() {
    let root = hardened(
        json!({"securityContext": {"runAsNonRoot": true, "runAsUser": 0,
        "seccompProfile": {"type": "RuntimeDefault"}}}),
    );
    assert_eq!(violations(Level::Restricted, Version::Minor(22), &root), "");
    assert_eq!(
        violations(Level::Restricted, Version::Minor(23), &root),
        "runAsUser=0 (pod must not set runAsUser=0)"
    );
    // Before v1.22 the baseline capabilities check stands in for the restricted one.
    let caps = container(
        json!({"capabilities": {"add": ["SYS_ADMIN"]}, "allowPrivilegeEscalation": false}),
    );
    assert_eq!(
        violations(Level::Restricted, Version::Minor(18), &caps),
        r#"non-default capabilities (container "c" must not include "SYS_ADMIN" in securityContext.capabilities.add), runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true)"#
    );
    // Before v1.19 seccomp is read from the alpha annotations.
    let annotated = json!({"metadata": {"annotations": {"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}},
        "spec": {"containers": [{"name": "c"}]}});
    assert_eq!(
        violations(Level::Baseline, Version::Minor(18), &annotated),
        r#"seccompProfile (forbidden annotation seccomp.security.alpha.kubernetes.io/pod="unconfined")"#
    );
    assert_eq!(
        violations(Level::Baseline, Version::Minor(19), &annotated),
        ""
    );
    // The safe sysctls grew with the versions.
    let sysctl =
        pod_context(json!({"sysctls": [{"name": "net.ipv4.tcp_fin_timeout", "value": "1"}]}));
    assert_eq!(
        violations(Level::Baseline, Version::Minor(28), &sysctl),
        "forbidden sysctls (net.ipv4.tcp_fin_timeout)"
    );
    assert_eq!(violations(Level::Baseline, Version::Minor(29), &sysctl), "");
    // A version past the server's is the server's.
    let selinux = container(json!({"seLinuxOptions": {"type": "container_engine_t"}}));
    assert_eq!(
        violations(Level::Baseline, Version::Minor(99), &selinux),
        ""
    );
    assert_eq!(
        violations(Level::Baseline, Version::Minor(30), &selinux),
        r#"seLinuxOptions (container "c" set forbidden securityContext.seLinuxOptions: type "container_engine_t")"#
    );
}

fn info(api_version: &str, kind: &str) -> ResourceInfo {
    wasmkube_model::resource::builtins()
        .into_iter()
        .find(|i| i.api_version() == api_version && i.kind == kind)
        .expect("a built-in kind")
}

fn namespace(name: &str, labels: Value) -> Value {
    json!({"metadata": {"name": name, "labels": labels}})
}

fn admitted(write: &Write<'_>) -> Result<Vec<String>, String> {
    let mut warnings = Vec::new();
    admit(Level::Baseline, write, &mut warnings)
        .map(|()| warnings)
        .map_err(|e| e.to_string())
}

#[test]
fn pods_are_refused_and_workloads_warned_about() {
    let pods = info("v1", "Pod");
    let deployments = info("apps/v1", "Deployment");
    let ns = namespace("team", json!({}));
    let mut pod = container(json!({"privileged": true}));
    pod["metadata"] = json!({"name": "p"});
    let write = Write {
        info: &pods,
        namespace: &ns,
        obj: &pod,
        old: None,
        subresource: None,
    };
    assert_eq!(
        admitted(&write),
        Err(r#"pods "p" is forbidden: violates PodSecurity "baseline:latest": privileged (container "c" must not set securityContext.privileged=true)"#.into())
    );
    // The status subresource and updates that change no image are not checked.
    let status = Write {
        subresource: Some("status"),
        ..write
    };
    assert_eq!(admitted(&status), Ok(vec![]));
    let relabelled = Write {
        old: Some(&pod),
        ..write
    };
    assert_eq!(admitted(&relabelled), Ok(vec![]));
    let mut old = pod.clone();
    old["spec"]["containers"][0]["image"] = json!("busybox:old");
    let new_image = Write {
        old: Some(&old),
        ..write
    };
    assert!(admitted(&new_image).is_err());
    // kube-system is privileged by default.
    let system = namespace("kube-system", json!({}));
    let in_system = Write {
        namespace: &system,
        ..write
    };
    assert_eq!(admitted(&in_system), Ok(vec![]));

    let deployment = json!({"metadata": {"name": "d"}, "spec": {"template": pod.clone()}});
    let workload = Write {
        info: &deployments,
        obj: &deployment,
        ..write
    };
    assert_eq!(
        admitted(&workload),
        Ok(vec![r#"would violate PodSecurity "baseline:latest": privileged (container "c" must not set securityContext.privileged=true)"#.into()])
    );
    let quiet = namespace(
        "team",
        json!({"pod-security.kubernetes.io/warn": "privileged", "pod-security.kubernetes.io/audit": "privileged"}),
    );
    let unwarned = Write {
        namespace: &quiet,
        ..workload
    };
    assert_eq!(admitted(&unwarned), Ok(vec![]));
}

#[test]
fn namespace_labels_must_be_levels_and_versions() {
    let namespaces = info("v1", "Namespace");
    let good = namespace(
        "a",
        json!({"pod-security.kubernetes.io/enforce": "restricted"}),
    );
    assert!(admit_namespace(&namespaces, &good, None).is_ok());
    let bad = namespace(
        "a",
        json!({"pod-security.kubernetes.io/audit-version": "1.25"}),
    );
    assert_eq!(
        admit_namespace(&namespaces, &bad, None).map_err(|e| e.to_string()),
        Err(r#"Namespace "a" is invalid: metadata.labels[pod-security.kubernetes.io/audit-version]: Invalid value: "1.25": must be "latest" or "v1.x""#.into())
    );
    // Already invalid the same way: other changes go through.
    assert!(admit_namespace(&namespaces, &bad, Some(&bad)).is_ok());
    assert!(admit_namespace(&namespaces, &bad, Some(&good)).is_err());
}

#[test]
fn a_stricter_enforce_label_names_the_pods_it_would_refuse() {
    let plain = namespace("team", json!({}));
    let privileged = namespace(
        "team",
        json!({"pod-security.kubernetes.io/enforce": "privileged"}),
    );
    let restricted = namespace(
        "team",
        json!({"pod-security.kubernetes.io/enforce": "restricted"}),
    );
    let baseline_lv = LevelVersion {
        level: Level::Baseline,
        version: Version::Latest,
    };
    assert_eq!(
        stricter_enforce(Level::Baseline, &plain, &privileged),
        Some(baseline_lv)
    );
    assert_eq!(stricter_enforce(Level::Baseline, &privileged, &plain), None);
    assert_eq!(stricter_enforce(Level::Baseline, &plain, &restricted), None);
    assert_eq!(stricter_enforce(Level::Baseline, &plain, &plain), None);

    let pod = |name: &str, owner: Option<&str>, spec: Value| {
        let mut pod = json!({"metadata": {"name": name}, "spec": spec});
        if let Some(uid) = owner {
            pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": uid, "controller": true}]);
        }
        pod
    };
    let privileged_spec =
        json!({"containers": [{"name": "c", "securityContext": {"privileged": true}}]});
    let host_spec = json!({"hostNetwork": true, "containers": [{"name": "c"}]});
    let pods = [
        pod("web-b", Some("u1"), privileged_spec.clone()),
        pod("web-a", Some("u1"), privileged_spec.clone()),
        pod("web-c", Some("u1"), privileged_spec),
        pod("net", None, host_spec),
        pod("fine", None, json!({"containers": [{"name": "c"}]})),
    ];
    assert_eq!(
        existing_pods("team", baseline_lv, &pods),
        [
            r#"existing pods in namespace "team" violate the new PodSecurity enforce level "baseline:latest""#,
            "net: host namespaces",
            "web-a (and 2 other pods): privileged",
        ]
    );
}
