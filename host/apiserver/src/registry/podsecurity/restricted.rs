//! The restricted checks (upstream's `policy/check_*.go` at level restricted): current pod hardening on top of baseline.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Volume;

use super::baseline::{self, bad_seccomp, pod_seccomp, seccomp_violation};
use super::check::{
    Check, CheckFn, PodView, Versioned, Violation, containers, containers_of, join_quote,
    pluralize, setters, windows,
};
use super::policy::Level;

const fn v(since: u32, check: CheckFn, overrides: &'static [&'static str]) -> Versioned {
    Versioned {
        since,
        check,
        overrides,
    }
}

const fn restricted(id: &'static str, versions: &'static [Versioned]) -> Check {
    Check {
        id,
        level: Level::Restricted,
        versions,
    }
}

/// Sorted by ID.
pub static CHECKS: &[Check] = &[
    restricted(
        "allowPrivilegeEscalation",
        &[
            v(8, allow_privilege_escalation, &[]),
            v(25, allow_privilege_escalation_1_25, &[]),
        ],
    ),
    restricted(
        "capabilities_restricted",
        &[
            v(22, capabilities, &[baseline::CAPABILITIES]),
            v(25, capabilities_1_25, &[baseline::CAPABILITIES]),
        ],
    ),
    restricted(
        "restrictedVolumes",
        &[v(0, volumes, &[baseline::HOST_PATH_VOLUMES])],
    ),
    restricted("runAsNonRoot", &[v(0, run_as_non_root, &[])]),
    restricted("runAsUser", &[v(23, run_as_user, &[])]),
    restricted(
        "seccompProfile_restricted",
        &[
            v(19, seccomp, &[baseline::SECCOMP]),
            v(25, seccomp_1_25, &[baseline::SECCOMP]),
        ],
    ),
];

fn violation(reason: &'static str, detail: String) -> Option<Violation> {
    Some(Violation { reason, detail })
}

// From v1.25 a pod with `spec.os.name: windows` passes the checks of fields a Windows pod
// cannot set.

fn allow_privilege_escalation_1_25(pod: &PodView) -> Option<Violation> {
    if windows(pod.spec) {
        None
    } else {
        allow_privilege_escalation(pod)
    }
}

fn capabilities_1_25(pod: &PodView) -> Option<Violation> {
    if windows(pod.spec) {
        None
    } else {
        capabilities(pod)
    }
}

fn seccomp_1_25(pod: &PodView) -> Option<Violation> {
    if windows(pod.spec) {
        None
    } else {
        seccomp(pod)
    }
}

fn allow_privilege_escalation(pod: &PodView) -> Option<Violation> {
    let bad: Vec<&str> = containers_of(pod.spec)
        .filter(|c| {
            c.security_context
                .and_then(|sc| sc.allow_privilege_escalation)
                != Some(false)
        })
        .map(|c| c.name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "allowPrivilegeEscalation != false",
        format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            containers(&bad)
        ),
    )
}

/// Every container drops `ALL` and adds nothing but `NET_BIND_SERVICE`.
fn capabilities(pod: &PodView) -> Option<Violation> {
    let mut missing_drop = Vec::new();
    let mut adding = Vec::new();
    let mut forbidden = BTreeSet::new();
    for c in containers_of(pod.spec) {
        let caps = c.security_context.and_then(|sc| sc.capabilities.as_ref());
        let drop = caps.and_then(|k| k.drop.as_deref()).unwrap_or_default();
        let add = caps.and_then(|k| k.add.as_deref()).unwrap_or_default();
        if !drop.iter().any(|cap| cap == "ALL") {
            missing_drop.push(c.name);
        }
        let extra: Vec<&str> = add
            .iter()
            .map(String::as_str)
            .filter(|cap| *cap != "NET_BIND_SERVICE")
            .collect();
        if !extra.is_empty() {
            adding.push(c.name);
            forbidden.extend(extra);
        }
    }
    let mut details = Vec::new();
    if !missing_drop.is_empty() {
        details.push(format!(
            r#"{} must set securityContext.capabilities.drop=["ALL"]"#,
            containers(&missing_drop)
        ));
    }
    if !adding.is_empty() {
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers(&adding),
            join_quote(&forbidden)
        ));
    }
    if details.is_empty() {
        return None;
    }
    violation("unrestricted capabilities", details.join("; "))
}

/// The type of a volume outside the allowed ones, named as upstream names it.
fn restricted_type(v: &Volume) -> Option<&'static str> {
    let allowed = v.config_map.is_some()
        || v.csi.is_some()
        || v.downward_api.is_some()
        || v.empty_dir.is_some()
        || v.ephemeral.is_some()
        || v.image.is_some()
        || v.persistent_volume_claim.is_some()
        || v.projected.is_some()
        || v.secret.is_some();
    if allowed {
        return None;
    }
    let named = [
        (v.host_path.is_some(), "hostPath"),
        (v.gce_persistent_disk.is_some(), "gcePersistentDisk"),
        (v.aws_elastic_block_store.is_some(), "awsElasticBlockStore"),
        (v.git_repo.is_some(), "gitRepo"),
        (v.nfs.is_some(), "nfs"),
        (v.iscsi.is_some(), "iscsi"),
        (v.glusterfs.is_some(), "glusterfs"),
        (v.rbd.is_some(), "rbd"),
        (v.flex_volume.is_some(), "flexVolume"),
        (v.cinder.is_some(), "cinder"),
        (v.cephfs.is_some(), "cephfs"),
        (v.flocker.is_some(), "flocker"),
        (v.fc.is_some(), "fc"),
        (v.azure_file.is_some(), "azureFile"),
        (v.vsphere_volume.is_some(), "vsphereVolume"),
        (v.quobyte.is_some(), "quobyte"),
        (v.azure_disk.is_some(), "azureDisk"),
        (v.photon_persistent_disk.is_some(), "photonPersistentDisk"),
        (v.portworx_volume.is_some(), "portworxVolume"),
        (v.scale_io.is_some(), "scaleIO"),
        (v.storageos.is_some(), "storageos"),
    ];
    Some(
        named
            .into_iter()
            .find(|(set, _)| *set)
            .map_or("unknown", |(_, name)| name),
    )
}

/// Only configMap, CSI, downwardAPI, emptyDir, ephemeral, image, PVC, projected and secret
/// volumes.
fn volumes(pod: &PodView) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for volume in pod.spec.volumes.iter().flatten() {
        if let Some(ty) = restricted_type(volume) {
            bad.push(volume.name.as_str());
            types.insert(ty);
        }
    }
    if bad.is_empty() {
        return None;
    }
    violation(
        "restricted volume types",
        format!(
            "{} {} {} {} {}",
            pluralize("volume", "volumes", bad.len()),
            join_quote(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize(
                "restricted volume type",
                "restricted volume types",
                types.len()
            ),
            join_quote(&types)
        ),
    )
}

/// `runAsNonRoot: true` on the pod or on every container, `false` nowhere.
fn run_as_non_root(pod: &PodView) -> Option<Violation> {
    let pod_value = pod
        .spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.run_as_non_root);
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in containers_of(pod.spec) {
        match c.security_context.and_then(|sc| sc.run_as_non_root) {
            Some(false) => explicit.push(c.name),
            Some(true) => {}
            None if pod_value != Some(true) => implicit.push(c.name),
            None => {}
        }
    }
    let setters = setters(pod_value == Some(false), &explicit);
    if !setters.is_empty() {
        return violation(
            "runAsNonRoot != true",
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters.join(" and ")
            ),
        );
    }
    if implicit.is_empty() {
        return None;
    }
    violation(
        "runAsNonRoot != true",
        format!(
            "pod or {} must set securityContext.runAsNonRoot=true",
            containers(&implicit)
        ),
    )
}

fn run_as_user(pod: &PodView) -> Option<Violation> {
    let pod_root = pod
        .spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.run_as_user)
        == Some(0);
    let bad: Vec<&str> = containers_of(pod.spec)
        .filter(|c| c.security_context.and_then(|sc| sc.run_as_user) == Some(0))
        .map(|c| c.name)
        .collect();
    let setters = setters(pod_root, &bad);
    if setters.is_empty() {
        return None;
    }
    violation(
        "runAsUser=0",
        format!("{} must not set runAsUser=0", setters.join(" and ")),
    )
}

/// `RuntimeDefault` or `Localhost` on the pod or on every container, nothing else anywhere.
fn seccomp(pod: &PodView) -> Option<Violation> {
    let (setters, values) = bad_seccomp(pod.spec);
    if !setters.is_empty() {
        return seccomp_violation(&setters, &values);
    }
    let pod_set = pod_seccomp(pod.spec).is_some();
    let unset: Vec<&str> = containers_of(pod.spec)
        .filter(|c| {
            !pod_set
                && c.security_context
                    .and_then(|sc| sc.seccomp_profile.as_ref())
                    .is_none()
        })
        .map(|c| c.name)
        .collect();
    if unset.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            r#"pod or {} must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#,
            containers(&unset)
        ),
    )
}
