//! The baseline checks (upstream's `policy/check_*.go` at level baseline): no known privilege escalation through host namespaces, host paths, privileged containers, extra capabilities and the like.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{PodSpec, SELinuxOptions};

use super::check::{
    Check, PodView, Versioned, Violation, containers, containers_of, containers_where, join_quote,
    pluralize, setters,
};
use super::policy::Level;

/// The IDs restricted checks override.
pub const CAPABILITIES: &str = "capabilities_baseline";
pub const HOST_PATH_VOLUMES: &str = "hostPathVolumes";
pub const SECCOMP: &str = "seccompProfile_baseline";

const fn v(since: u32, check: super::check::CheckFn) -> Versioned {
    Versioned {
        since,
        check,
        overrides: &[],
    }
}

const fn baseline(id: &'static str, versions: &'static [Versioned]) -> Check {
    Check {
        id,
        level: Level::Baseline,
        versions,
    }
}

/// Sorted by ID.
pub static CHECKS: &[Check] = &[
    baseline("appArmorProfile", &[v(0, app_armor_profile)]),
    baseline(CAPABILITIES, &[v(0, capabilities)]),
    baseline("hostNamespaces", &[v(0, host_namespaces)]),
    baseline(HOST_PATH_VOLUMES, &[v(0, host_path_volumes)]),
    baseline("hostPorts", &[v(0, host_ports)]),
    baseline("privileged", &[v(0, privileged)]),
    baseline("procMount", &[v(0, proc_mount)]),
    baseline(
        "seLinuxOptions",
        &[v(0, se_linux_options_1_0), v(31, se_linux_options_1_31)],
    ),
    baseline(SECCOMP, &[v(0, seccomp_annotations), v(19, seccomp_fields)]),
    baseline(
        "sysctls",
        &[
            v(0, sysctls_1_0),
            v(27, sysctls_1_27),
            v(29, sysctls_1_29),
            v(32, sysctls_1_32),
        ],
    ),
    baseline("windowsHostProcess", &[v(0, windows_host_process)]),
];

fn violation(reason: &'static str, detail: String) -> Option<Violation> {
    Some(Violation { reason, detail })
}

/// `must not set TYPE to "A", "B"` for the pod or containers that set a type outside `allowed`,
/// as the AppArmor and seccomp checks word it.
fn bad_profile_types<'a>(
    spec: &'a PodSpec,
    pod_type: Option<&'a str>,
    container_type: impl Fn(&'a k8s_openapi::api::core::v1::SecurityContext) -> Option<&'a str>,
    allowed: &[&str],
) -> (Vec<String>, BTreeSet<&'a str>) {
    let mut values = BTreeSet::new();
    let pod_bad = pod_type.filter(|t| !allowed.contains(t));
    values.extend(pod_bad);
    let mut bad = Vec::new();
    for c in containers_of(spec) {
        if let Some(t) = c.security_context.and_then(&container_type)
            && !allowed.contains(&t)
        {
            bad.push(c.name);
            values.insert(t);
        }
    }
    (setters(pod_bad.is_some(), &bad), values)
}

const APPARMOR_ANNOTATION: &str = "container.apparmor.security.beta.kubernetes.io/";

/// AppArmor: `RuntimeDefault` or `Localhost` profiles only (annotations: `runtime/default`,
/// `localhost/*` or empty).
fn app_armor_profile(pod: &PodView) -> Option<Violation> {
    let spec = pod.spec;
    let pod_type = spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.app_armor_profile.as_ref())
        .map(|p| p.type_.as_str());
    let (mut setters, values) = bad_profile_types(
        spec,
        pod_type,
        |sc| sc.app_armor_profile.as_ref().map(|p| p.type_.as_str()),
        &["RuntimeDefault", "Localhost"],
    );
    let mut values: Vec<String> = values.into_iter().map(String::from).collect();
    let mut annotations: Vec<String> = pod
        .meta
        .annotations
        .iter()
        .flatten()
        .filter(|(k, v)| {
            k.starts_with(APPARMOR_ANNOTATION)
                && !(v.is_empty() || *v == "runtime/default" || v.starts_with("localhost/"))
        })
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    if !annotations.is_empty() {
        annotations.sort();
        setters.push(pluralize("annotation", "annotations", annotations.len()).into());
        values.append(&mut annotations);
    }
    if setters.is_empty() {
        return None;
    }
    violation(
        pluralize(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            values.len(),
        ),
        format!(
            "{} must not set AppArmor profile type to {}",
            setters.join(" and "),
            join_quote(&values)
        ),
    )
}

/// The capabilities a baseline container may add.
const DEFAULT_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn capabilities(pod: &PodView) -> Option<Violation> {
    let mut added = BTreeSet::new();
    let mut bad = Vec::new();
    for c in containers_of(pod.spec) {
        let adds = c
            .security_context
            .and_then(|sc| sc.capabilities.as_ref())
            .and_then(|caps| caps.add.as_deref())
            .unwrap_or_default();
        let extra: Vec<&str> = adds
            .iter()
            .map(String::as_str)
            .filter(|cap| !DEFAULT_CAPABILITIES.contains(cap))
            .collect();
        if !extra.is_empty() {
            bad.push(c.name);
            added.extend(extra);
        }
    }
    if bad.is_empty() {
        return None;
    }
    violation(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers(&bad),
            join_quote(&added)
        ),
    )
}

fn host_namespaces(pod: &PodView) -> Option<Violation> {
    let spec = pod.spec;
    let shared: Vec<&str> = [
        (spec.host_network, "hostNetwork=true"),
        (spec.host_pid, "hostPID=true"),
        (spec.host_ipc, "hostIPC=true"),
    ]
    .into_iter()
    .filter(|(set, _)| *set == Some(true))
    .map(|(_, text)| text)
    .collect();
    if shared.is_empty() {
        return None;
    }
    violation("host namespaces", shared.join(", "))
}

fn host_path_volumes(pod: &PodView) -> Option<Violation> {
    let volumes: Vec<&str> = pod
        .spec
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.host_path.is_some())
        .map(|v| v.name.as_str())
        .collect();
    if volumes.is_empty() {
        return None;
    }
    violation(
        "hostPath volumes",
        format!(
            "{} {}",
            pluralize("volume", "volumes", volumes.len()),
            join_quote(&volumes)
        ),
    )
}

fn host_ports(pod: &PodView) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut ports = BTreeSet::new();
    for c in containers_of(pod.spec) {
        let used: Vec<String> = c
            .ports
            .iter()
            .filter_map(|p| p.host_port.filter(|&port| port != 0))
            .map(|port| port.to_string())
            .collect();
        if !used.is_empty() {
            bad.push(c.name);
            ports.extend(used);
        }
    }
    if bad.is_empty() {
        return None;
    }
    // Upstream sorts the ports as strings.
    let ports: Vec<String> = ports.into_iter().collect();
    violation(
        "hostPort",
        format!(
            "{} {} {} {}",
            containers(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            ports.join(", ")
        ),
    )
}

fn privileged(pod: &PodView) -> Option<Violation> {
    let bad = containers_where(pod.spec, |sc| sc.privileged == Some(true));
    if bad.is_empty() {
        return None;
    }
    violation(
        "privileged",
        format!(
            "{} must not set securityContext.privileged=true",
            containers(&bad)
        ),
    )
}

fn proc_mount(pod: &PodView) -> Option<Violation> {
    let mut types = BTreeSet::new();
    let mut bad = Vec::new();
    for c in containers_of(pod.spec) {
        if let Some(m) = c.security_context.and_then(|sc| sc.proc_mount.as_deref())
            && m != "Default"
        {
            bad.push(c.name);
            types.insert(m);
        }
    }
    if bad.is_empty() {
        return None;
    }
    violation(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            containers(&bad),
            join_quote(&types)
        ),
    )
}

fn se_linux_options_1_0(pod: &PodView) -> Option<Violation> {
    se_linux_options(
        pod,
        &["", "container_t", "container_init_t", "container_kvm_t"],
    )
}

fn se_linux_options_1_31(pod: &PodView) -> Option<Violation> {
    se_linux_options(
        pod,
        &[
            "",
            "container_t",
            "container_init_t",
            "container_kvm_t",
            "container_engine_t",
        ],
    )
}

/// SELinux: only the container types in `allowed`, never a user or role.
fn se_linux_options(pod: &PodView, allowed: &[&str]) -> Option<Violation> {
    let mut types = BTreeSet::new();
    let (mut user, mut role) = (false, false);
    let mut valid = |opts: &SELinuxOptions| {
        let ty = opts.type_.as_deref().unwrap_or_default();
        let mut ok = true;
        if !allowed.contains(&ty) {
            ok = false;
            types.insert(ty.to_string());
        }
        if opts.user.as_deref().is_some_and(|u| !u.is_empty()) {
            ok = false;
            user = true;
        }
        if opts.role.as_deref().is_some_and(|r| !r.is_empty()) {
            ok = false;
            role = true;
        }
        ok
    };
    let pod_bad = pod
        .spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.se_linux_options.as_ref())
        .is_some_and(|o| !valid(o));
    let mut bad = Vec::new();
    for c in containers_of(pod.spec) {
        if let Some(opts) = c
            .security_context
            .and_then(|sc| sc.se_linux_options.as_ref())
            && !valid(opts)
        {
            bad.push(c.name);
        }
    }
    let setters = setters(pod_bad, &bad);
    if setters.is_empty() {
        return None;
    }
    let mut data = Vec::new();
    if !types.is_empty() {
        data.push(format!(
            "{} {}",
            pluralize("type", "types", types.len()),
            join_quote(&types)
        ));
    }
    if user {
        data.push("user may not be set".to_string());
    }
    if role {
        data.push("role may not be set".to_string());
    }
    violation(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters.join(" and "),
            data.join("; ")
        ),
    )
}

const SECCOMP_POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";
const SECCOMP_CONTAINER_ANNOTATION: &str = "container.seccomp.security.alpha.kubernetes.io/";

/// Policy versions before 1.19: the alpha seccomp annotations may not ask for `unconfined`.
fn seccomp_annotations(pod: &PodView) -> Option<Violation> {
    let valid =
        |v: &str| v == "runtime/default" || v == "docker/default" || v.starts_with("localhost/");
    let annotations = pod.meta.annotations.as_ref();
    let get = |key: &str| annotations.and_then(|a| a.get(key));
    let mut forbidden = BTreeSet::new();
    let keys = std::iter::once(SECCOMP_POD_ANNOTATION.to_string()).chain(
        containers_of(pod.spec).map(|c| format!("{SECCOMP_CONTAINER_ANNOTATION}{}", c.name)),
    );
    for key in keys {
        if let Some(value) = get(&key)
            && !valid(value)
        {
            forbidden.insert(format!("{key}={value:?}"));
        }
    }
    if forbidden.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            "forbidden {} {}",
            pluralize("annotation", "annotations", forbidden.len()),
            forbidden.into_iter().collect::<Vec<_>>().join(", ")
        ),
    )
}

/// The seccomp profile types a pod may ask for.
pub const SECCOMP_TYPES: &[&str] = &["RuntimeDefault", "Localhost"];

/// The pod's own `securityContext.seccompProfile.type`.
pub fn pod_seccomp(spec: &PodSpec) -> Option<&str> {
    spec.security_context
        .as_ref()
        .and_then(|sc| sc.seccomp_profile.as_ref())
        .map(|p| p.type_.as_str())
}

/// The setters and values of seccomp profile types other than `RuntimeDefault` and
/// `Localhost`; `Unconfined` is the one that matters.
pub fn bad_seccomp(spec: &PodSpec) -> (Vec<String>, BTreeSet<&str>) {
    bad_profile_types(
        spec,
        pod_seccomp(spec),
        |sc| sc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
        SECCOMP_TYPES,
    )
}

/// `pod and container "c" must not set securityContext.seccompProfile.type to "Unconfined"`.
pub fn seccomp_violation(setters: &[String], values: &BTreeSet<&str>) -> Option<Violation> {
    violation(
        "seccompProfile",
        format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            setters.join(" and "),
            join_quote(values)
        ),
    )
}

fn seccomp_fields(pod: &PodView) -> Option<Violation> {
    let (setters, values) = bad_seccomp(pod.spec);
    if setters.is_empty() {
        return None;
    }
    seccomp_violation(&setters, &values)
}

const SAFE_SYSCTLS_1_0: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
];
const SAFE_SYSCTLS_1_27: &[&str] = &["net.ipv4.ip_local_reserved_ports"];
const SAFE_SYSCTLS_1_29: &[&str] = &[
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];
const SAFE_SYSCTLS_1_32: &[&str] = &["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"];

fn sysctls_1_0(pod: &PodView) -> Option<Violation> {
    sysctls(pod, &[SAFE_SYSCTLS_1_0])
}

fn sysctls_1_27(pod: &PodView) -> Option<Violation> {
    sysctls(pod, &[SAFE_SYSCTLS_1_0, SAFE_SYSCTLS_1_27])
}

fn sysctls_1_29(pod: &PodView) -> Option<Violation> {
    sysctls(
        pod,
        &[SAFE_SYSCTLS_1_0, SAFE_SYSCTLS_1_27, SAFE_SYSCTLS_1_29],
    )
}

fn sysctls_1_32(pod: &PodView) -> Option<Violation> {
    let all = [
        SAFE_SYSCTLS_1_0,
        SAFE_SYSCTLS_1_27,
        SAFE_SYSCTLS_1_29,
        SAFE_SYSCTLS_1_32,
    ];
    sysctls(pod, &all)
}

/// Sysctls outside the safe (namespaced, isolated) sets.
fn sysctls(pod: &PodView, safe: &[&[&str]]) -> Option<Violation> {
    let forbidden: Vec<&str> = pod
        .spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.sysctls.as_deref())
        .unwrap_or_default()
        .iter()
        .map(|s| s.name.as_str())
        .filter(|name| !safe.iter().any(|set| set.contains(name)))
        .collect();
    if forbidden.is_empty() {
        return None;
    }
    violation("forbidden sysctls", forbidden.join(", "))
}

fn windows_host_process(pod: &PodView) -> Option<Violation> {
    let pod_bad = pod
        .spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.windows_options.as_ref())
        .is_some_and(|w| w.host_process == Some(true));
    let bad = containers_where(pod.spec, |sc| {
        sc.windows_options
            .as_ref()
            .is_some_and(|w| w.host_process == Some(true))
    });
    let setters = setters(pod_bad, &bad);
    if setters.is_empty() {
        return None;
    }
    violation(
        "hostProcess",
        format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            setters.join(" and ")
        ),
    )
}
