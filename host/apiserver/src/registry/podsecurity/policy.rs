//! Levels, versions and a namespace's policy read from its `pod-security.kubernetes.io/*` labels, as upstream's `api/helpers.go`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use wasmkube_model::validation::{ErrorType, FieldError};

const ENFORCE: &str = "pod-security.kubernetes.io/enforce";
const ENFORCE_VERSION: &str = "pod-security.kubernetes.io/enforce-version";
const AUDIT: &str = "pod-security.kubernetes.io/audit";
const AUDIT_VERSION: &str = "pod-security.kubernetes.io/audit-version";
const WARN: &str = "pod-security.kubernetes.io/warn";
const WARN_VERSION: &str = "pod-security.kubernetes.io/warn-version";

/// The newest policy version this server knows: the Kubernetes minor it serves (`/version`).
/// `latest` and any newer `v1.X` are evaluated as this one, as a 1.32 kube-apiserver does.
pub const NEWEST_MINOR: u32 = 32;

/// A Pod Security Standards level, least to most restrictive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

/// A level that is none of `privileged`, `baseline`, `restricted`.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a Pod Security level: must be one of privileged, baseline, restricted")]
pub struct LevelError(String);

impl FromStr for Level {
    type Err = LevelError;

    fn from_str(s: &str) -> Result<Level, LevelError> {
        match s {
            "privileged" => Ok(Level::Privileged),
            "baseline" => Ok(Level::Baseline),
            "restricted" => Ok(Level::Restricted),
            other => Err(LevelError(other.to_string())),
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        })
    }
}

/// A policy version: `latest` or `v1.MINOR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    Latest,
    Minor(u32),
}

impl Version {
    /// The minor whose checks apply: the version's, at most [`NEWEST_MINOR`].
    pub fn effective_minor(self) -> u32 {
        match self {
            Version::Latest => NEWEST_MINOR,
            Version::Minor(minor) => minor.min(NEWEST_MINOR),
        }
    }

    /// Upstream's `ParseVersion`: `latest` or `v1.X` (no leading zero); anything else is an
    /// error and reads as `latest`.
    fn parse(s: &str) -> Result<Version, &'static str> {
        const WRONG: &str = r#"must be "latest" or "v1.x""#;
        if s == "latest" {
            return Ok(Version::Latest);
        }
        let minor = s.strip_prefix("v1.").ok_or(WRONG)?;
        let digits = !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit());
        if !digits || (minor.len() > 1 && minor.starts_with('0')) {
            return Err(WRONG);
        }
        minor.parse().map(Version::Minor).map_err(|_| WRONG)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::Latest => f.write_str("latest"),
            Version::Minor(minor) => write!(f, "v1.{minor}"),
        }
    }
}

/// A level at a version, written `baseline:latest` in messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LevelVersion {
    pub level: Level,
    pub version: Version,
}

impl LevelVersion {
    pub fn latest(level: Level) -> LevelVersion {
        LevelVersion {
            level,
            version: Version::Latest,
        }
    }
}

impl fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.level, self.version)
    }
}

/// What a namespace enforces, audits and warns about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub enforce: LevelVersion,
    pub audit: LevelVersion,
    pub warn: LevelVersion,
}

impl Policy {
    /// The same level at `latest` for all three modes.
    pub fn uniform(level: Level) -> Policy {
        let lv = LevelVersion::latest(level);
        Policy {
            enforce: lv,
            audit: lv,
            warn: lv,
        }
    }

    /// Upstream's `PolicyToEvaluate`: the labels over `defaults`. A bad enforce level reads as
    /// `restricted`, a bad audit or warn level as `privileged` (fail open), a bad version as
    /// `latest`; each bad label is also returned as an error on `metadata.labels[KEY]`. Without a
    /// warn label, warn follows an explicitly stricter enforce.
    pub fn from_labels(
        labels: &BTreeMap<String, String>,
        defaults: Policy,
    ) -> (Policy, Vec<FieldError>) {
        let mut p = defaults;
        let mut errors = Vec::new();
        let enforce_set = read_level(
            labels,
            ENFORCE,
            Level::Restricted,
            &mut p.enforce.level,
            &mut errors,
        ) == Some(true);
        read_version(labels, ENFORCE_VERSION, &mut p.enforce.version, &mut errors);
        read_level(
            labels,
            AUDIT,
            Level::Privileged,
            &mut p.audit.level,
            &mut errors,
        );
        read_version(labels, AUDIT_VERSION, &mut p.audit.version, &mut errors);
        let warn_set = read_level(
            labels,
            WARN,
            Level::Privileged,
            &mut p.warn.level,
            &mut errors,
        )
        .is_some();
        let warn_version_set = read_version(labels, WARN_VERSION, &mut p.warn.version, &mut errors);
        if !warn_set && enforce_set && p.enforce.level > p.warn.level {
            p.warn.level = p.enforce.level;
            if !warn_version_set {
                p.warn.version = p.enforce.version;
            }
        }
        (p, errors)
    }
}

fn invalid(key: &str, value: &str, detail: &str) -> FieldError {
    FieldError {
        field: format!("metadata.labels[{key}]"),
        error: ErrorType::Invalid {
            value: format!("{value:?}"),
            detail: detail.to_string(),
        },
    }
}

/// Reads the level label `key` into `into` (`fallback` when it is no level); `None` without the
/// label, else whether it was a level.
fn read_level(
    labels: &BTreeMap<String, String>,
    key: &str,
    fallback: Level,
    into: &mut Level,
    errors: &mut Vec<FieldError>,
) -> Option<bool> {
    let value = labels.get(key)?;
    let level = value.parse().ok();
    if level.is_none() {
        errors.push(invalid(
            key,
            value,
            "must be one of privileged, baseline, restricted",
        ));
    }
    *into = level.unwrap_or(fallback);
    Some(level.is_some())
}

/// Reads the version label `key` into `into` (`latest` when it is no version); whether the
/// label is there.
fn read_version(
    labels: &BTreeMap<String, String>,
    key: &str,
    into: &mut Version,
    errors: &mut Vec<FieldError>,
) -> bool {
    let Some(value) = labels.get(key) else {
        return false;
    };
    *into = Version::parse(value).unwrap_or_else(|detail| {
        errors.push(invalid(key, value, detail));
        Version::Latest
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn lv(level: Level, version: Version) -> LevelVersion {
        LevelVersion { level, version }
    }

    #[test]
    fn versions_parse_as_upstream() {
        assert_eq!(Version::parse("latest"), Ok(Version::Latest));
        assert_eq!(Version::parse("v1.0"), Ok(Version::Minor(0)));
        assert_eq!(Version::parse("v1.25"), Ok(Version::Minor(25)));
        for bad in [
            "v1.01",
            "v2.0",
            "1.25",
            "v1.",
            "v1.x",
            "v1.99999999999",
            "",
            "Latest",
        ] {
            assert!(Version::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Version::Minor(40).effective_minor(), NEWEST_MINOR);
        assert_eq!(Version::Minor(20).effective_minor(), 20);
        assert_eq!(Version::Latest.to_string(), "latest");
        assert_eq!(
            lv(Level::Baseline, Version::Minor(24)).to_string(),
            "baseline:v1.24"
        );
    }

    #[test]
    fn labels_override_the_defaults() {
        let defaults = Policy::uniform(Level::Baseline);
        let (p, errors) = Policy::from_labels(&labels(&[]), defaults);
        assert_eq!((p, errors.len()), (defaults, 0));

        let (p, errors) = Policy::from_labels(
            &labels(&[
                (ENFORCE, "privileged"),
                (WARN, "restricted"),
                (AUDIT_VERSION, "v1.20"),
            ]),
            defaults,
        );
        assert!(errors.is_empty());
        assert_eq!(p.enforce, LevelVersion::latest(Level::Privileged));
        assert_eq!(p.warn, LevelVersion::latest(Level::Restricted));
        assert_eq!(p.audit, lv(Level::Baseline, Version::Minor(20)));
    }

    #[test]
    fn warn_follows_a_stricter_enforce_label() {
        let defaults = Policy::uniform(Level::Privileged);
        let (p, _) = Policy::from_labels(
            &labels(&[(ENFORCE, "restricted"), (ENFORCE_VERSION, "v1.24")]),
            defaults,
        );
        assert_eq!(p.warn, lv(Level::Restricted, Version::Minor(24)));
        // An explicit warn label wins.
        let (p, _) = Policy::from_labels(
            &labels(&[(ENFORCE, "restricted"), (WARN, "baseline")]),
            defaults,
        );
        assert_eq!(p.warn.level, Level::Baseline);
    }

    #[test]
    fn bad_labels_fail_closed_for_enforce_and_open_for_audit_and_warn() {
        let defaults = Policy::uniform(Level::Baseline);
        let (p, errors) = Policy::from_labels(
            &labels(&[
                (ENFORCE, "strict"),
                (AUDIT, "loud"),
                (WARN, "x"),
                (WARN_VERSION, "v1.07"),
            ]),
            defaults,
        );
        assert_eq!(p.enforce.level, Level::Restricted);
        assert_eq!(p.audit.level, Level::Privileged);
        assert_eq!(p.warn, LevelVersion::latest(Level::Privileged));
        let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            texts[0],
            r#"metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": must be one of privileged, baseline, restricted"#
        );
        assert_eq!(
            texts[3],
            r#"metadata.labels[pod-security.kubernetes.io/warn-version]: Invalid value: "v1.07": must be "latest" or "v1.x""#
        );
    }
}
