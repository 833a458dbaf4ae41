//! The ServiceAccount tokens of a pod's projected volumes: requested through TokenRequest bound to the pod, and requested again at 80 % of their lifetime or after 24 h, as the kubelet does.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use wasmkube_model::validation::is_dns1123_subdomain;

use super::sources::SourcesError;
use crate::api::Api;

/// A token's `expirationSeconds` when the volume source names none (the API's default).
const DEFAULT_EXPIRATION_SECS: i64 = 3600;
/// The longest a token is used before a new one is asked for, whatever its lifetime.
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// What one `serviceAccountToken` source asks for: an audience (empty: the API's) and a
/// lifetime.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenKey {
    pub audience: String,
    pub expiration_seconds: i64,
}

impl TokenKey {
    /// The key of a `serviceAccountToken` source.
    pub fn of(source: &k8s_openapi::api::core::v1::ServiceAccountTokenProjection) -> TokenKey {
        TokenKey {
            audience: source.audience.clone().unwrap_or_default(),
            expiration_seconds: source.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECS),
        }
    }
}

/// A token the API gave, and when to ask for the next.
#[derive(Clone, Debug)]
pub struct Token {
    pub token: String,
    refresh_at: SystemTime,
}

/// The tokens of one pod, by what they were asked for.
pub type Tokens = BTreeMap<TokenKey, Token>;

/// The tokens the pod's projected volumes ask for, each once.
fn wanted(pod: &Pod) -> Vec<TokenKey> {
    let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    let mut keys: Vec<TokenKey> = volumes
        .flat_map(|v| v.projected.iter().flat_map(|p| p.sources.iter().flatten()))
        .filter_map(|s| s.service_account_token.as_ref())
        .map(TokenKey::of)
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// When a token got at `issued` that expires at `expires` is to be replaced: at 80 % of its
/// lifetime, or after [`MAX_AGE`], whichever comes first (the kubelet's rule).
fn refresh_at(issued: SystemTime, expires: SystemTime) -> SystemTime {
    let lifetime = expires.duration_since(issued).unwrap_or_default();
    issued + lifetime.mul_f64(0.8).min(MAX_AGE)
}

/// The tokens the pod needs at `now`: those of `previous` still fresh, the others asked of
/// the API (`serviceaccounts/NAME/token`, bound to the pod by name and uid).
pub async fn fetch(
    api: &Api,
    pod: &Pod,
    namespace: &str,
    previous: Option<&Tokens>,
    now: SystemTime,
) -> Result<Tokens, SourcesError> {
    let mut tokens = Tokens::new();
    let keys = wanted(pod);
    if keys.is_empty() {
        return Ok(tokens);
    }
    let spec = pod.spec.as_ref();
    let account = spec
        .and_then(|s| s.service_account_name.as_deref())
        .unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    for (kind, value) in [("serviceaccount", account), ("pod", name)] {
        if !is_dns1123_subdomain(value) {
            return Err(SourcesError::Name {
                kind,
                name: value.to_string(),
                form: "subdomain",
            });
        }
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    for key in keys {
        if let Some(token) = previous
            .and_then(|p| p.get(&key))
            .filter(|t| t.refresh_at > now)
        {
            tokens.insert(key, token.clone());
            continue;
        }
        let audiences: Vec<&str> = Some(key.audience.as_str())
            .filter(|a| !a.is_empty())
            .into_iter()
            .collect();
        let request = json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {
                "audiences": audiences,
                "expirationSeconds": key.expiration_seconds,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid},
            },
        });
        let path = format!("/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token");
        let answer = api.create(&path, &request).await?;
        let token = answer["status"]["token"].as_str().unwrap_or_default();
        let expires = answer["status"]["expirationTimestamp"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(SystemTime::from);
        let (false, Some(expires)) = (token.is_empty(), expires) else {
            return Err(SourcesError::TokenAnswer(account.to_string()));
        };
        let token = Token {
            token: token.to_string(),
            refresh_at: refresh_at(now, expires),
        };
        tokens.insert(key, token);
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_replaced_at_80_percent_of_its_life_or_after_a_day() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hour = Duration::from_secs(3600);
        assert_eq!(refresh_at(t0, t0 + hour), t0 + hour.mul_f64(0.8));
        assert_eq!(refresh_at(t0, t0 + 48 * hour), t0 + MAX_AGE);
        assert_eq!(refresh_at(t0, t0), t0, "an expired answer: at once");
    }

    #[test]
    fn the_pods_token_sources_are_asked_for_once_each() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [], "volumes": [
                {"name": "a", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                    {"serviceAccountToken": {"path": "vault", "audience": "vault"}},
                ]}},
                {"name": "b", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "t", "expirationSeconds": 3607}},
                ]}},
            ]},
        }))
        .expect("a pod");
        assert_eq!(
            wanted(&pod),
            [
                TokenKey {
                    audience: String::new(),
                    expiration_seconds: 3607
                },
                TokenKey {
                    audience: "vault".into(),
                    expiration_seconds: 3600
                },
            ]
        );
    }
}
