//! Everything a container's start needs, made from the pod: its process, mounts and limits.

use std::path::Path;
use std::sync::LazyLock;

use k8s_openapi::api::core::v1::{Container, Pod};
use wasmkube_model::quantity;

use crate::accounts::{Accounts, User};
use crate::cni::netns_path;
use crate::container::{self, Allocatable, Sources};
use crate::image::Image;
use crate::namespaces;
use crate::spec::{self, Limits, Process, Seccomp};

use super::etc::{self, NodeDns};
use super::volumes;

/// The lowest `oom_score_adj` the agent can give a container, as containerd's
/// `restrict_oom_score_adj`: any with `CAP_SYS_RESOURCE`, else its own, since the kernel refuses
/// to lower it further (runc then fails with "can't get final child's PID from pipe", so
/// Guaranteed pods, at -997, never started where the agent lacks that capability).
fn oom_score_floor() -> i32 {
    static FLOOR: LazyLock<i32> = LazyLock::new(|| {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let own = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap_or_default();
        floor(&status, &own)
    });
    *FLOOR
}

/// [`oom_score_floor`] from `/proc/self/status` and `/proc/self/oom_score_adj`.
fn floor(status: &str, own: &str) -> i32 {
    const CAP_SYS_RESOURCE: u32 = 24;
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    if effective & (1 << CAP_SYS_RESOURCE) != 0 {
        -1000
    } else {
        own.trim().parse().unwrap_or(0).clamp(-1000, 1000)
    }
}

/// Why a container cannot be started: a waiting reason and message.
#[derive(Debug)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

/// The waiting reason of a container whose configuration cannot be made.
pub const CONFIG_ERROR: &str = "CreateContainerConfigError";

impl Refusal {
    fn config(message: impl ToString) -> Refusal {
        Refusal {
            reason: CONFIG_ERROR,
            message: message.to_string(),
        }
    }
}

/// The most `cpu.shares` the kernel takes (the kubelet's `MaxShares`).
const MAX_SHARES: u64 = 262_144;

/// cgroup limits from the container's resources, as the kubelet sets them; quantities too large
/// for the arithmetic saturate, and negative ones (which validation refuses) set nothing.
pub fn limits(container: &Container, pids: Option<i64>) -> Limits {
    let resources = container.resources.as_ref();
    let get = |limits: bool, name: &str| {
        let map = resources.and_then(|r| {
            if limits {
                r.limits.as_ref()
            } else {
                r.requests.as_ref()
            }
        });
        let quantity = map.and_then(|m| m.get(name)).map(|q| q.0.clone());
        let value = if name == "cpu" {
            quantity.and_then(|q| quantity::milli(&q))
        } else {
            quantity.and_then(|q| quantity::units(&q))
        };
        value.filter(|v| *v > 0)
    };
    let cpu_limit = get(true, "cpu");
    let cpu_request = get(false, "cpu").or(cpu_limit);
    // The kubelet's MilliCPUToShares and MilliCPUToQuota (100 ms period, at least 1 ms).
    let shares = cpu_request
        .map(|m| u64::try_from(m.saturating_mul(1024) / 1000).unwrap_or(2))
        .unwrap_or(2)
        .clamp(2, MAX_SHARES);
    Limits {
        cpu_shares: shares,
        cpu_quota: cpu_limit.map(|m| m.saturating_mul(100).max(1000)),
        memory: get(true, "memory"),
        pids,
    }
}

/// A uid or gid from the pod spec: validation keeps them within 0 to 2^31 - 1; anything else
/// is refused, never turned into root.
fn id(value: i64, field: &str) -> Result<u32, Refusal> {
    u32::try_from(value).map_err(|_| Refusal::config(format!("invalid {field} {value}")))
}

/// Who the container runs as (containerd's CRI `WithUser` over the image's accounts): the
/// securityContext's runAsUser and runAsGroup (container over pod) or else the image's
/// `USER`; a name is looked up in the image's `/etc/passwd` and `/etc/group`, and one that is
/// not there refuses the container. Then the kubelet's `verifyRunAsNonRoot` (which refuses
/// any user name, not being able to look it up; a name is looked up here, so the uid it
/// resolves to is what is checked), and the pod's `supplementalGroups` and `fsGroup` join
/// the groups from the image.
fn user(
    pod: &Pod,
    container: &Container,
    image_user: &str,
    accounts: &Accounts,
) -> Result<User, Refusal> {
    let pod_security = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let security = container.security_context.clone().unwrap_or_default();
    let run_as_user = security.run_as_user.or(pod_security.run_as_user);
    let run_as_group = security.run_as_group.or(pod_security.run_as_group);
    let (image_uid, image_group) = match image_user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (image_user, None),
    };
    let user_part = match run_as_user {
        Some(uid) => id(uid, "runAsUser")?.to_string(),
        None if image_uid.is_empty() => "0".to_string(),
        None => image_uid.to_string(),
    };
    let group_part = match (run_as_group, run_as_user) {
        (Some(gid), _) => Some(id(gid, "runAsGroup")?.to_string()),
        // The image's group goes with the image's user only.
        (None, None) => image_group.map(str::to_string),
        (None, Some(_)) => None,
    };
    let spec = match group_part {
        Some(group) => format!("{user_part}:{group}"),
        None => user_part,
    };
    let mut resolved = accounts.resolve(&spec).map_err(Refusal::config)?;
    let non_root = security.run_as_non_root.or(pod_security.run_as_non_root) == Some(true);
    if non_root {
        let pod = super::pod_label(pod);
        let name = &container.name;
        if run_as_user == Some(0) {
            return Err(Refusal::config(format!(
                "container's runAsUser breaks non-root policy (pod: {pod:?}, container: {name})"
            )));
        }
        if resolved.uid == 0 {
            return Err(Refusal::config(format!(
                "container has runAsNonRoot and image will run as root (pod: {pod:?}, container: {name})"
            )));
        }
    }
    let extra = pod_security.supplemental_groups.iter().flatten().copied();
    for gid in extra.chain(pod_security.fs_group) {
        let gid = id(gid, "supplemental group")?;
        if !resolved.additional_gids.contains(&gid) {
            resolved.additional_gids.push(gid);
        }
    }
    Ok(resolved)
}

/// The seccomp profile the securityContext asks for (container over pod): none unless
/// `RuntimeDefault`; `Localhost` profiles are files this node does not keep, so refused.
fn seccomp(pod: &Pod, container: &Container) -> Result<Seccomp, Refusal> {
    let profile = container
        .security_context
        .as_ref()
        .and_then(|s| s.seccomp_profile.as_ref())
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.security_context.as_ref())
                .and_then(|s| s.seccomp_profile.as_ref())
        });
    match profile.map(|p| p.type_.as_str()) {
        None | Some("Unconfined") => Ok(Seccomp::Unconfined),
        Some("RuntimeDefault") => Ok(Seccomp::RuntimeDefault),
        Some("Localhost") => Err(Refusal::config(
            "seccomp profile type Localhost is not supported on this node; use RuntimeDefault",
        )),
        Some(other) => Err(Refusal::config(format!(
            "unknown seccomp profile type {other:?}"
        ))),
    }
}

/// What a container's start takes from the node besides its pod: its image and that image's
/// users, the pod's sources and directory, and the node's settings.
pub struct Inputs<'a> {
    pub image: &'a Image,
    pub accounts: &'a Accounts,
    pub sources: &'a Sources,
    pub allocatable: &'a Allocatable,
    pub pod_dir: &'a Path,
    pub pod_ip: &'a str,
    pub dns: &'a NodeDns,
    pub cgroups_path: String,
    /// The most processes the container may hold (`--pod-max-pids`).
    pub pids_limit: Option<i64>,
}

/// What runs for `container` of `pod`.
pub fn process(pod: &Pod, container: &Container, inputs: &Inputs) -> Result<Process, Refusal> {
    let image = inputs.image;
    let env = container::environment(pod, container, inputs.sources, inputs.allocatable)
        .map_err(Refusal::config)?;
    let args = container::argv(container, &image.config, &env);
    if args.is_empty() {
        return Err(Refusal::config("no command specified"));
    }
    let user = user(pod, container, &image.config.user, inputs.accounts)?;
    let seccomp = seccomp(pod, container)?;
    let mut env_strings = image.config.env.clone();
    // containerd's default, which an image's own PATH replaces.
    if !env_strings.iter().any(|e| e.starts_with("PATH=")) {
        env_strings.insert(0, spec::DEFAULT_PATH.to_string());
    }
    for (name, value) in &env {
        env_strings.retain(|e| e.split_once('=').map(|(n, _)| n) != Some(name.as_str()));
        env_strings.push(format!("{name}={value}"));
    }
    let host_network = pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
    let names = etc::Names::of(pod, &inputs.dns.domain).map_err(Refusal::config)?;
    // In the node's UTS namespace the hostname is the node's own.
    let hostname = if host_network {
        node_hostname()
    } else {
        names.uts.clone()
    };
    if !env_strings.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env_strings.push(format!("HOSTNAME={hostname}"));
    }
    let terminal = container.tty == Some(true);
    // As containerd's CRI does for a terminal.
    if terminal && !env_strings.iter().any(|e| e.starts_with("TERM=")) {
        env_strings.push("TERM=xterm".into());
    }
    let hosts = etc::hosts(pod, &names, inputs.pod_ip, inputs.dns).map_err(Refusal::config)?;
    let resolv_conf = etc::resolv_conf(pod, inputs.dns).map_err(Refusal::config)?;
    let mut binds =
        etc::write(inputs.pod_dir, hosts, &hostname, resolv_conf).map_err(Refusal::config)?;
    binds.extend(
        volumes::binds(pod, inputs.pod_dir, container, inputs.sources).map_err(Refusal::config)?,
    );
    let security = container.security_context.clone().unwrap_or_default();
    let privileged = security.privileged == Some(true);
    let caps = security.capabilities.clone().unwrap_or_default();
    let cwd = container
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| image.config.working_dir.clone());
    let pod_uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let oom_score_adj = match super::status::qos_class(pod) {
        "Guaranteed" => -997,
        "BestEffort" => 1000,
        _ => 500,
    }
    .max(oom_score_floor());
    Ok(Process {
        args,
        env: env_strings,
        cwd,
        uid: user.uid,
        gid: user.gid,
        additional_gids: user.additional_gids,
        hostname,
        netns: (!host_network).then(|| netns_path(pod_uid)),
        ipc: namespaces::path(pod_uid, "ipc"),
        uts: (!host_network).then(|| namespaces::path(pod_uid, "uts")),
        binds,
        limits: limits(container, inputs.pids_limit),
        read_only_rootfs: security.read_only_root_filesystem == Some(true),
        privileged,
        capabilities: spec::capabilities(
            privileged,
            caps.add.as_deref().unwrap_or_default(),
            caps.drop.as_deref().unwrap_or_default(),
        ),
        seccomp,
        cgroups_path: inputs.cgroups_path.clone(),
        oom_score_adj,
        terminal,
    })
}

/// The node's hostname, which a `hostNetwork` pod's containers see (they share its UTS namespace).
fn node_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod hostile;
#[cfg(test)]
mod tests;
