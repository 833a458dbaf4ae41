//! The Deployment strategy with `maxSurge` and `maxUnavailable` resolved as Kubernetes does.

use wasmkube_sdk::k8s_openapi::api::apps::v1::DeploymentSpec;
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// What the apiserver defaults `maxSurge` and `maxUnavailable` to.
const DEFAULT_PERCENT: &str = "25%";

/// A Deployment's strategy, resolved against its `spec.replicas`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Strategy {
    /// `RollingUpdate` (else `Recreate`).
    pub rolling: bool,
    /// Kubernetes' `MaxSurge`: extra pods allowed above `spec.replicas` (0 for Recreate).
    pub max_surge: i32,
    /// Kubernetes' `MaxUnavailable`: pods allowed below `spec.replicas` (0 for Recreate or
    /// zero replicas, at most `spec.replicas`).
    pub max_unavailable: i32,
}

/// Kubernetes' `GetScaledValueFromIntOrPercent`: an int, or a percentage of `total` rounded up
/// or down.
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    let percent = match value {
        IntOrString::Int(n) => return Ok(*n),
        IntOrString::String(s) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?,
    };
    let scaled = percent * i64::from(total);
    let value = if round_up {
        scaled.div_euclid(100) + i64::from(scaled.rem_euclid(100) != 0)
    } else {
        scaled.div_euclid(100)
    };
    i32::try_from(value).map_err(|_| format!("{value} is out of range"))
}

/// Kubernetes' `ResolveFenceposts`: surge rounds up, unavailable rounds down, and when both are
/// zero one pod may be unavailable.
pub fn resolve_fenceposts(
    max_surge: &IntOrString,
    max_unavailable: &IntOrString,
    desired: i32,
) -> Result<(i32, i32), String> {
    let surge = scaled_value(max_surge, desired, true)?;
    let unavailable = scaled_value(max_unavailable, desired, false)?;
    Ok(if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    })
}

/// Resolves the strategy of `spec`; missing values are what the apiserver defaults them to.
pub fn resolve(spec: &DeploymentSpec) -> Result<Strategy, String> {
    let strategy = spec.strategy.clone().unwrap_or_default();
    match strategy.type_.as_deref() {
        Some("Recreate") => {
            return Ok(Strategy {
                rolling: false,
                max_surge: 0,
                max_unavailable: 0,
            });
        }
        None | Some("RollingUpdate") => {}
        Some(other) => return Err(format!("unexpected deployment strategy type: {other}")),
    }
    let rolling = strategy.rolling_update.unwrap_or_default();
    let default = || IntOrString::String(DEFAULT_PERCENT.to_string());
    let replicas = spec.replicas.unwrap_or(1);
    let (max_surge, unavailable) = resolve_fenceposts(
        &rolling.max_surge.unwrap_or_else(default),
        &rolling.max_unavailable.unwrap_or_else(default),
        replicas,
    )?;
    let max_unavailable = if replicas == 0 {
        0
    } else {
        unavailable.min(replicas)
    };
    Ok(Strategy {
        rolling: true,
        max_surge,
        max_unavailable,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn s(v: &str) -> IntOrString {
        IntOrString::String(v.to_string())
    }

    #[test]
    fn fenceposts_round_like_kubernetes() {
        let resolve = |a, b, n| resolve_fenceposts(&a, &b, n).unwrap();
        assert_eq!(resolve(s("25%"), s("25%"), 4), (1, 1));
        assert_eq!(resolve(s("25%"), s("25%"), 3), (1, 0));
        assert_eq!(resolve(s("25%"), s("25%"), 10), (3, 2));
        assert_eq!(resolve(s("0%"), s("0%"), 10), (0, 1));
        assert_eq!(resolve(IntOrString::Int(0), IntOrString::Int(0), 5), (0, 1));
        assert_eq!(resolve(IntOrString::Int(2), s("50%"), 5), (2, 2));
        assert!(resolve_fenceposts(&s("25"), &s("1%"), 4).is_err());
    }

    #[test]
    fn max_unavailable_is_capped_by_replicas() {
        let spec = |replicas, unavailable| DeploymentSpec {
            replicas: Some(replicas),
            strategy: Some(
                wasmkube_sdk::k8s_openapi::api::apps::v1::DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(
                        wasmkube_sdk::k8s_openapi::api::apps::v1::RollingUpdateDeployment {
                            max_surge: Some(IntOrString::Int(1)),
                            max_unavailable: Some(IntOrString::Int(unavailable)),
                        },
                    ),
                },
            ),
            ..Default::default()
        };
        assert_eq!(resolve(&spec(2, 5)).unwrap().max_unavailable, 2);
        assert_eq!(resolve(&spec(0, 5)).unwrap().max_unavailable, 0);
        assert_eq!(resolve(&spec(3, 1)).unwrap().max_surge, 1);
    }
}
