//! Everything a container's start needs, made from the pod: its process, mounts and limits.

use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Pod};
use wasmkube_model::quantity;

use crate::cni::netns_path;
use crate::container::{self, Allocatable, Sources};
use crate::image::Image;
use crate::namespaces;
use crate::spec::{self, Limits, Process};

use super::volumes;

/// Why a container cannot be started: a waiting reason and message.
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

impl Refusal {
    fn config(message: impl ToString) -> Refusal {
        Refusal {
            reason: "CreateContainerConfigError",
            message: message.to_string(),
        }
    }
}

/// cgroup limits from the container's resources, as the kubelet sets them.
pub fn limits(container: &Container) -> Limits {
    let resources = container.resources.as_ref();
    let get = |limits: bool, name: &str| {
        let map = resources.and_then(|r| {
            if limits {
                r.limits.as_ref()
            } else {
                r.requests.as_ref()
            }
        });
        map.and_then(|m| m.get(name)).map(|q| q.0.clone())
    };
    let cpu_limit = get(true, "cpu").and_then(|q| quantity::milli(&q));
    let cpu_request = get(false, "cpu")
        .and_then(|q| quantity::milli(&q))
        .or(cpu_limit);
    let shares = cpu_request
        .map(|m| u64::try_from(m * 1024 / 1000).unwrap_or(2).max(2))
        .unwrap_or(2);
    Limits {
        cpu_shares: shares,
        cpu_quota: cpu_limit.map(|m| (m * 100).max(1000)),
        memory: get(true, "memory").and_then(|q| quantity::units(&q)),
    }
}

/// The numeric uid:gid of an image's `User` (names other than root are not looked up).
fn image_user(user: &str) -> (u32, u32) {
    let (uid, gid) = user.split_once(':').unwrap_or((user, ""));
    let uid = if uid == "root" {
        0
    } else {
        uid.parse().unwrap_or(0)
    };
    (uid, gid.parse().unwrap_or(uid))
}

/// What runs for `container` of `pod`.
#[allow(clippy::too_many_arguments)]
pub fn process(
    pod: &Pod,
    container: &Container,
    image: &Image,
    sources: &Sources,
    allocatable: &Allocatable,
    pod_dir: &Path,
    pod_ip: &str,
    resolv: &str,
    cgroups_path: String,
) -> Result<Process, Refusal> {
    let spec = pod.spec.clone().unwrap_or_default();
    let env =
        container::environment(pod, container, sources, allocatable).map_err(Refusal::config)?;
    let args = container::argv(container, &image.config, &env);
    if args.is_empty() {
        return Err(Refusal::config("no command specified"));
    }
    let mut env_strings = image.config.env.clone();
    for (name, value) in &env {
        env_strings.retain(|e| e.split_once('=').map(|(n, _)| n) != Some(name.as_str()));
        env_strings.push(format!("{name}={value}"));
    }
    let hostname = spec
        .hostname
        .clone()
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    if !env_strings.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env_strings.push(format!("HOSTNAME={hostname}"));
    }
    let terminal = container.tty == Some(true);
    // As containerd's CRI does for a terminal.
    if terminal && !env_strings.iter().any(|e| e.starts_with("TERM=")) {
        env_strings.push("TERM=xterm".into());
    }
    let mut binds =
        volumes::etc_files(pod_dir, &hostname, pod_ip, resolv).map_err(Refusal::config)?;
    binds.extend(volumes::binds(pod, pod_dir, container, sources).map_err(Refusal::config)?);
    let pod_security = spec.security_context.clone().unwrap_or_default();
    let security = container.security_context.clone().unwrap_or_default();
    let (image_uid, image_gid) = image_user(&image.config.user);
    let uid = security
        .run_as_user
        .or(pod_security.run_as_user)
        .map(|u| u32::try_from(u).unwrap_or(0))
        .unwrap_or(image_uid);
    let gid = security
        .run_as_group
        .or(pod_security.run_as_group)
        .map(|g| u32::try_from(g).unwrap_or(0))
        .unwrap_or(if uid == image_uid { image_gid } else { 0 });
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
    };
    Ok(Process {
        args,
        env: env_strings,
        cwd,
        uid,
        gid,
        hostname,
        netns: netns_path(pod_uid),
        ipc: namespaces::path(pod_uid, "ipc"),
        uts: namespaces::path(pod_uid, "uts"),
        binds,
        limits: limits(container),
        read_only_rootfs: security.read_only_root_filesystem == Some(true),
        privileged,
        capabilities: spec::capabilities(
            privileged,
            caps.add.as_deref().unwrap_or_default(),
            caps.drop.as_deref().unwrap_or_default(),
        ),
        cgroups_path,
        oom_score_adj,
        terminal,
    })
}
