//! The OCI runtime spec of a container, as runc wants it: containerd's defaults plus the pod's
//! namespaces, mounts, user, capabilities and cgroup limits.

use std::path::PathBuf;

use serde_json::{Value, json};

/// The capabilities a container has unless its securityContext says otherwise (containerd's
/// and Docker's default set).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The PATH of processes whose image sets none.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Every capability Linux has, for privileged containers.
const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// A bind mount into the container.
#[derive(Clone, Debug, PartialEq)]
pub struct Bind {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

/// cgroup limits from the container's resources.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Limits {
    /// `cpu.shares` from the CPU request (2 when none, as the kubelet does).
    pub cpu_shares: u64,
    /// `cpu.cfs_quota_us` from the CPU limit, with a 100 ms period.
    pub cpu_quota: Option<i64>,
    /// The memory limit in bytes.
    pub memory: Option<i64>,
    /// The most processes (and threads) its cgroup may hold.
    pub pids: Option<i64>,
}

/// The seccomp filter a container's processes run under.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Seccomp {
    /// None (Kubernetes' default when the pod names no profile).
    #[default]
    Unconfined,
    /// The runtime's default profile ([`crate::seccomp::runtime_default`]).
    RuntimeDefault,
}

/// Everything a container's runtime spec is made of.
#[derive(Clone, Debug, Default)]
pub struct Process {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: the primary group, the image's memberships, the pod's
    /// `supplementalGroups` and `fsGroup`.
    pub additional_gids: Vec<u32>,
    pub hostname: String,
    /// The pod's namespaces its containers join; no network and UTS namespace of its own is the
    /// node's (`hostNetwork`).
    pub netns: Option<PathBuf>,
    pub ipc: PathBuf,
    pub uts: Option<PathBuf>,
    pub binds: Vec<Bind>,
    pub limits: Limits,
    pub read_only_rootfs: bool,
    pub privileged: bool,
    /// Capabilities after the securityContext's add and drop.
    pub capabilities: Vec<String>,
    pub seccomp: Seccomp,
    pub cgroups_path: String,
    pub oom_score_adj: i32,
    /// On a pseudo-terminal (`tty: true`).
    pub terminal: bool,
}

/// The capability set: the defaults (or all, privileged) plus `add`, minus `drop` (`ALL` drops
/// every default), names with or without the `CAP_` prefix.
pub fn capabilities(privileged: bool, add: &[String], drop: &[String]) -> Vec<String> {
    let canonical = |c: &String| {
        let upper = c.to_uppercase();
        if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        }
    };
    if privileged {
        return ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    }
    let drop: Vec<String> = drop.iter().map(canonical).collect();
    let mut caps: Vec<String> = if drop.iter().any(|d| d == "CAP_ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !drop.contains(c))
            .collect()
    };
    for cap in add.iter().map(canonical) {
        if cap == "CAP_ALL" {
            return ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect();
        }
        if !caps.contains(&cap) {
            caps.push(cap);
        }
    }
    caps
}

/// The runtime spec (config.json) for `process`.
pub fn runtime_spec(process: &Process) -> Value {
    let caps = &process.capabilities;
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", if process.privileged { "rw" } else { "ro" }]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", if process.privileged { "rw" } else { "ro" }]}),
    ];
    for bind in &process.binds {
        let access = if bind.read_only { "ro" } else { "rw" };
        mounts.push(json!({"destination": bind.destination, "type": "bind",
            "source": bind.source, "options": ["rbind", "rprivate", access]}));
    }
    let mut resources = json!({
        "devices": [{"allow": process.privileged, "access": "rwm"}],
        "cpu": {"shares": process.limits.cpu_shares},
    });
    if let Some(quota) = process.limits.cpu_quota {
        resources["cpu"]["quota"] = json!(quota);
        resources["cpu"]["period"] = json!(100_000);
    }
    if let Some(memory) = process.limits.memory {
        resources["memory"] = json!({"limit": memory, "swap": memory});
    }
    if let Some(pids) = process.limits.pids {
        resources["pids"] = json!({"limit": pids});
    }
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "mount"}),
        json!({"type": "ipc", "path": process.ipc}),
    ];
    if let Some(netns) = &process.netns {
        namespaces.push(json!({"type": "network", "path": netns}));
    }
    if let Some(uts) = &process.uts {
        namespaces.push(json!({"type": "uts", "path": uts}));
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "resources": resources,
        "cgroupsPath": process.cgroups_path,
    });
    if !process.privileged {
        // containerd's (`pkg/oci/spec.go`): kernel interfaces that leak host data or let a
        // process reach host hardware.
        linux["maskedPaths"] = json!([
            "/proc/acpi",
            "/proc/asound",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/sys/firmware",
            "/sys/devices/virtual/powercap",
            "/proc/scsi",
        ]);
        linux["readonlyPaths"] = json!([
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger",
        ]);
        // Privileged containers run unconfined, as containerd's CRI runs them.
        if process.seccomp == Seccomp::RuntimeDefault {
            linux["seccomp"] = crate::seccomp::runtime_default(caps);
        }
    }
    let mut spec = json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": process.terminal,
            "user": {"uid": process.uid, "gid": process.gid, "additionalGids": process.additional_gids},
            "args": process.args,
            "env": process.env,
            "cwd": if process.cwd.is_empty() { "/" } else { &process.cwd },
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": !process.privileged,
            "oomScoreAdj": process.oom_score_adj,
        },
        "root": {"path": "rootfs", "readonly": process.read_only_rootfs},
        "mounts": mounts,
        "linux": linux,
    });
    // In the node's UTS namespace the hostname is the node's: runc may not set one.
    if process.uts.is_some() {
        spec["hostname"] = json!(process.hostname);
    }
    spec
}

/// An exec'd process in a running container (kubectl exec, exec probes, hooks): the
/// container's own `process` (user and groups, environment, working directory, capabilities,
/// `noNewPrivileges`, rlimits) running `args`, on a terminal when `tty`. `None` when the
/// container's spec has no process: nothing runs as a user we made up.
pub fn exec_process(container: &Value, args: &[String], tty: bool) -> Option<Value> {
    let mut process = container.as_object()?.clone();
    process.insert("args".into(), json!(args));
    process.insert("terminal".into(), json!(tty));
    Some(Value::Object(process))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_add_and_drop_by_either_spelling() {
        let caps = capabilities(
            false,
            &["NET_ADMIN".into()],
            &["chown".into(), "CAP_KILL".into()],
        );
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        assert!(!caps.contains(&"CAP_KILL".to_string()));
        assert_eq!(
            capabilities(false, &["SYS_TIME".into()], &["ALL".into()]),
            vec!["CAP_SYS_TIME"]
        );
        assert!(capabilities(true, &[], &[]).contains(&"CAP_SYS_ADMIN".to_string()));
    }

    #[test]
    fn limits_become_cgroup_resources() {
        let process = Process {
            args: vec!["sh".into()],
            limits: Limits {
                cpu_shares: 512,
                cpu_quota: Some(50_000),
                memory: Some(64 << 20),
                pids: Some(4096),
            },
            netns: Some("/run/netns/wk-x".into()),
            ipc: "/run/wasmkube/namespaces/x/ipc".into(),
            uts: Some("/run/wasmkube/namespaces/x/uts".into()),
            hostname: "web-0".into(),
            ..Process::default()
        };
        let spec = runtime_spec(&process);
        assert_eq!(spec["linux"]["resources"]["cpu"]["shares"], 512);
        assert_eq!(spec["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(spec["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(spec["linux"]["resources"]["pids"]["limit"], 4096);
        assert_eq!(spec["linux"]["namespaces"][2]["type"], "ipc");
        assert_eq!(
            spec["linux"]["namespaces"][2]["path"],
            "/run/wasmkube/namespaces/x/ipc"
        );
        assert_eq!(spec["linux"]["namespaces"][3]["path"], "/run/netns/wk-x");
        assert_eq!(spec["linux"]["namespaces"][4]["type"], "uts");
        assert_eq!(spec["hostname"], "web-0");
        assert_eq!(spec["process"]["cwd"], "/");
    }

    /// A `hostNetwork` pod's containers stay in the node's network and UTS namespaces, and runc is
    /// not asked to set a hostname there.
    #[test]
    fn host_network_joins_no_network_or_uts_namespace() {
        let process = Process {
            args: vec!["sh".into()],
            hostname: "node-a".into(),
            ..Process::default()
        };
        let spec = runtime_spec(&process);
        let kinds: Vec<&str> = spec["linux"]["namespaces"]
            .as_array()
            .expect("namespaces")
            .iter()
            .filter_map(|n| n["type"].as_str())
            .collect();
        assert_eq!(kinds, ["pid", "mount", "ipc"]);
        assert!(spec.get("hostname").is_none());
    }

    #[test]
    fn exec_runs_as_the_container_user_without_new_privileges() {
        let process = Process {
            args: vec!["server".into()],
            env: vec!["PATH=/bin".into()],
            uid: 1000,
            gid: 1000,
            additional_gids: vec![1000, 10],
            capabilities: capabilities(false, &[], &["ALL".into()]),
            ..Process::default()
        };
        let spec = runtime_spec(&process);
        let exec = exec_process(&spec["process"], &["id".into()], true).expect("a process");
        assert_eq!(exec["args"], json!(["id"]));
        assert_eq!(exec["terminal"], true);
        assert_eq!(
            exec["user"],
            json!({"uid": 1000, "gid": 1000, "additionalGids": [1000, 10]})
        );
        assert_eq!(exec["noNewPrivileges"], true);
        assert_eq!(exec["capabilities"]["bounding"], json!([]));
        assert_eq!(exec["env"], json!(["PATH=/bin"]));
        assert_eq!(exec_process(&Value::Null, &["id".into()], false), None);
    }

    #[test]
    fn confinement_masks_paths_and_filters_syscalls_unless_privileged() {
        let confined = Process {
            seccomp: Seccomp::RuntimeDefault,
            capabilities: capabilities(false, &[], &[]),
            ..Process::default()
        };
        let spec = runtime_spec(&confined);
        let masked = spec["linux"]["maskedPaths"]
            .as_array()
            .expect("masked paths");
        assert!(masked.iter().any(|p| p == "/sys/devices/virtual/powercap"));
        assert_eq!(spec["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        let unconfined = runtime_spec(&Process::default());
        assert!(unconfined["linux"].get("seccomp").is_none());
        let privileged = runtime_spec(&Process {
            privileged: true,
            ..confined
        });
        assert!(privileged["linux"].get("seccomp").is_none());
        assert!(privileged["linux"].get("maskedPaths").is_none());
        assert_eq!(privileged["process"]["noNewPrivileges"], false);
    }
}
