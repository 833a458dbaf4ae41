//! The checks of the Pod Security Standards by level and version, and what their violations read like, as upstream's `policy/checks.go` and `registry.go`.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{ContainerPort, PodSpec, SecurityContext};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::policy::{Level, LevelVersion};
use super::{baseline, restricted};

/// The pod (or pod template) a check looks at.
pub struct PodView<'a> {
    pub meta: &'a ObjectMeta,
    pub spec: &'a PodSpec,
}

/// Why a check refuses a pod: a short reason (`privileged`) and, optionally, which fields and
/// values (`container "c" must not set securityContext.privileged=true`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub reason: &'static str,
    pub detail: String,
}

/// `None` when the pod passes.
pub type CheckFn = fn(&PodView) -> Option<Violation>;

/// One revision of a check, in force from policy version `v1.SINCE` on.
pub struct Versioned {
    pub since: u32,
    pub check: CheckFn,
    /// Baseline checks this restricted check replaces at the restricted level.
    pub overrides: &'static [&'static str],
}

/// A check: its upstream ID, level and revisions (oldest first).
pub struct Check {
    pub id: &'static str,
    pub level: Level,
    pub versions: &'static [Versioned],
}

impl Check {
    /// The revision in force at `minor`, if any.
    fn at(&self, minor: u32) -> Option<&Versioned> {
        self.versions.iter().rev().find(|v| v.since <= minor)
    }
}

/// Every check: baseline ones sorted by ID, then restricted ones sorted by ID, the order
/// upstream reports them in.
fn all() -> impl Iterator<Item = &'static Check> {
    baseline::CHECKS.iter().chain(restricted::CHECKS)
}

/// Upstream's `EvaluatePod`: the violations of the pod at `lv` (none at `privileged`).
pub fn evaluate(lv: LevelVersion, pod: &PodView) -> Vec<Violation> {
    if lv.level == Level::Privileged {
        return Vec::new();
    }
    let minor = lv.version.effective_minor();
    let overridden: BTreeSet<&str> = match lv.level {
        Level::Restricted => restricted::CHECKS
            .iter()
            .filter_map(|c| c.at(minor))
            .flat_map(|v| v.overrides.iter().copied())
            .collect(),
        _ => BTreeSet::new(),
    };
    all()
        .filter(|c| c.level <= lv.level && !overridden.contains(c.id))
        .filter_map(|c| c.at(minor))
        .filter_map(|v| (v.check)(pod))
        .collect()
}

/// Upstream's `ForbiddenDetail`: `reason (detail), reason`.
pub fn describe(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| match v.detail.as_str() {
            "" => v.reason.to_string(),
            detail => format!("{} ({detail})", v.reason),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `"a", "b"`.
pub fn join_quote<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    items
        .into_iter()
        .map(|s| format!("\"{}\"", s.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn pluralize(singular: &'static str, plural: &'static str, count: usize) -> &'static str {
    if count == 1 { singular } else { plural }
}

/// `container "a"` or `containers "a", "b"`.
pub fn containers(names: &[&str]) -> String {
    format!(
        "{} {}",
        pluralize("container", "containers", names.len()),
        join_quote(names)
    )
}

/// What the checks read of a container, init or ephemeral container.
pub struct ContainerView<'a> {
    pub name: &'a str,
    pub security_context: Option<&'a SecurityContext>,
    pub ports: &'a [ContainerPort],
}

/// Upstream's `visitContainers`: init containers, containers, then ephemeral containers.
pub fn containers_of<'a>(spec: &'a PodSpec) -> impl Iterator<Item = ContainerView<'a>> {
    let regular = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .map(|c| ContainerView {
            name: &c.name,
            security_context: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or_default(),
        });
    let ephemeral = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .map(|c| ContainerView {
            name: &c.name,
            security_context: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or_default(),
        });
    regular.chain(ephemeral)
}

/// The names of the containers whose security context `bad` finds wrong.
pub fn containers_where(spec: &PodSpec, bad: impl Fn(&SecurityContext) -> bool) -> Vec<&str> {
    containers_of(spec)
        .filter(|c| c.security_context.is_some_and(&bad))
        .map(|c| c.name)
        .collect()
}

/// Whether the pod says it is a Windows pod (`spec.os.name: windows`), which some restricted
/// checks let through from v1.25 on.
pub fn windows(spec: &PodSpec) -> bool {
    spec.os.as_ref().is_some_and(|os| os.name == "windows")
}

/// `pod and containers "a"`: who set a bad value, the pod first.
pub fn setters(pod: bool, containers: &[&str]) -> Vec<String> {
    let mut setters = Vec::new();
    if pod {
        setters.push("pod".to_string());
    }
    if !containers.is_empty() {
        setters.push(self::containers(containers));
    }
    setters
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_are_in_upstream_order_with_versions_increasing() {
        for checks in [baseline::CHECKS, restricted::CHECKS] {
            let ids: Vec<&str> = checks.iter().map(|c| c.id).collect();
            let mut sorted = ids.clone();
            sorted.sort_unstable();
            assert_eq!(ids, sorted);
            for check in checks {
                assert!(!check.versions.is_empty(), "{}", check.id);
                assert!(
                    check.versions.windows(2).all(|w| w[0].since < w[1].since),
                    "{}",
                    check.id
                );
                assert!(check.versions.iter().all(|v| v.since <= 32), "{}", check.id);
            }
        }
        assert!(baseline::CHECKS.iter().all(|c| c.level == Level::Baseline));
        assert!(
            restricted::CHECKS
                .iter()
                .all(|c| c.level == Level::Restricted)
        );
    }

    #[test]
    fn details_join_as_upstream() {
        let v = |reason, detail: &str| Violation {
            reason,
            detail: detail.into(),
        };
        assert_eq!(
            describe(&[v("privileged", "container \"c\" must not"), v("x", "")]),
            "privileged (container \"c\" must not), x"
        );
        assert_eq!(containers(&["a", "b"]), r#"containers "a", "b""#);
        assert_eq!(setters(true, &["a"]), ["pod", r#"container "a""#]);
    }
}
