//! Bootstrap tokens, as upstream's bootstrap token authenticator: `ID.SECRET` is the user `system:bootstrap:ID` in `system:bootstrappers` (and its `auth-extra-groups`) while the Secret `kube-system/bootstrap-token-ID` allows authentication and has not expired.

use base64::Engine as _;
use rand::Rng as _;
use serde_json::{Value, json};
use wasmkube_model::meta::ResourceExt;

use super::authn::same_secret;
use super::user::User;
use crate::server::Server;

/// The type of a bootstrap token's Secret.
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// Where bootstrap token Secrets live.
pub const NAMESPACE: &str = "kube-system";
/// The prefix of their names; the token id follows.
pub const SECRET_PREFIX: &str = "bootstrap-token-";
/// The group of every bootstrap token's user.
pub const BOOTSTRAPPERS: &str = "system:bootstrappers";
/// The length of a token's id and of its secret.
pub const ID_LEN: usize = 6;
pub const SECRET_LEN: usize = 16;

/// The id and secret of a token of the form `[a-z0-9]{6}.[a-z0-9]{16}`.
pub fn split(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let valid = |part: &str, len: usize| {
        part.len() == len
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    (valid(id, ID_LEN) && valid(secret, SECRET_LEN)).then_some((id, secret))
}

/// A new random token, `[a-z0-9]{6}.[a-z0-9]{16}`.
pub fn generate() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let mut part = |len: usize| -> String {
        (0..len)
            .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
            .collect()
    };
    let id = part(ID_LEN);
    format!("{id}.{}", part(SECRET_LEN))
}

/// The Secret of `token` as kubeadm's `token create` writes it: for authentication and
/// signing, in `groups` besides `system:bootstrappers`, expiring at `expires` (never when
/// `None`).
pub fn secret(
    token: &str,
    expires: Option<chrono::DateTime<chrono::Utc>>,
    groups: &[&str],
) -> Option<Value> {
    let (id, secret) = split(token)?;
    let mut data = json!({
        "token-id": id,
        "token-secret": secret,
        "usage-bootstrap-authentication": "true",
        "usage-bootstrap-signing": "true",
        "auth-extra-groups": groups.join(","),
        "description": "Created by wasmkube token create",
    });
    if let Some(expires) = expires {
        data["expiration"] = json!(expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    }
    Some(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": format!("{SECRET_PREFIX}{id}"), "namespace": NAMESPACE},
        "type": SECRET_TYPE,
        "stringData": data,
    }))
}

/// Whether `group` may be added by `auth-extra-groups`: `system:bootstrappers:` followed by
/// `[a-z0-9:-]{0,255}[a-z0-9]`, as upstream's `ValidateBootstrapGroupName`.
fn extra_group_allowed(group: &str) -> bool {
    group
        .strip_prefix("system:bootstrappers:")
        .is_some_and(|rest| {
            !rest.is_empty()
                && rest.len() <= 256
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b':' || b == b'-')
                && rest
                    .bytes()
                    .last()
                    .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// The decoded `data[key]` of a Secret.
fn data(secret: &Value, key: &str) -> Option<String> {
    let encoded = secret["data"][key].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// The user of `token` as the Secret `secret` grants it at `now`, if it does.
pub fn user_of(secret: &Value, token: &str, now: chrono::DateTime<chrono::Utc>) -> Option<User> {
    let (id, given) = split(token)?;
    if secret["type"] != SECRET_TYPE || secret.is_deleting() {
        return None;
    }
    if data(secret, "token-id")? != id {
        return None;
    }
    let expected = data(secret, "token-secret")?;
    if !same_secret(given.as_bytes(), expected.as_bytes()) {
        return None;
    }
    if data(secret, "usage-bootstrap-authentication").as_deref() != Some("true") {
        return None;
    }
    if let Some(expiration) = data(secret, "expiration") {
        let expires = chrono::DateTime::parse_from_rfc3339(&expiration).ok()?;
        if expires <= now {
            return None;
        }
    }
    let mut groups = vec![BOOTSTRAPPERS.to_string()];
    if let Some(extra) = data(secret, "auth-extra-groups") {
        for group in extra.split(',').map(str::trim).filter(|g| !g.is_empty()) {
            if !extra_group_allowed(group) {
                return None;
            }
            if !groups.iter().any(|g| g == group) {
                groups.push(group.to_string());
            }
        }
    }
    Some(User::new(&format!("system:bootstrap:{id}"), groups))
}

/// The user of a bootstrap token, if `token` is one and its Secret grants it now.
pub async fn authenticate(server: &Server, token: &str) -> Option<User> {
    let (id, _) = split(token)?;
    let registry = server.registry();
    let info = registry.by_kind("v1", "Secret")?;
    let name = format!("{SECRET_PREFIX}{id}");
    let stored = server
        .objects
        .get(info, Some(NAMESPACE), &name)
        .await
        .ok()??;
    user_of(&stored.object, token, chrono::Utc::now())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn secret(fields: &[(&str, &str)]) -> Value {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let data: serde_json::Map<String, Value> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), json!(b64(v))))
            .collect();
        json!({"metadata": {"name": "bootstrap-token-abcdef", "namespace": NAMESPACE},
               "type": SECRET_TYPE, "data": data})
    }

    const TOKEN: &str = "abcdef.0123456789abcdef";

    #[test]
    fn a_valid_token_is_its_bootstrap_user() {
        let now = chrono::Utc::now();
        let later = (now + chrono::Duration::hours(1)).to_rfc3339();
        let s = secret(&[
            ("token-id", "abcdef"),
            ("token-secret", "0123456789abcdef"),
            ("usage-bootstrap-authentication", "true"),
            ("expiration", &later),
            (
                "auth-extra-groups",
                "system:bootstrappers:kubeadm:default-node-token",
            ),
        ]);
        let user = user_of(&s, TOKEN, now).expect("authenticated");
        assert_eq!(user.name, "system:bootstrap:abcdef");
        assert_eq!(
            user.groups,
            vec![
                "system:bootstrappers",
                "system:bootstrappers:kubeadm:default-node-token",
                "system:authenticated"
            ]
        );
        assert!(
            user_of(&s, "abcdef.0123456789abcdeX", now).is_none(),
            "wrong secret"
        );
        assert!(
            user_of(&s, "abcdef.0123456789abcdee", now).is_none(),
            "wrong secret"
        );
        assert!(
            user_of(&s, TOKEN, now + chrono::Duration::hours(2)).is_none(),
            "expired"
        );
    }

    #[test]
    fn a_generated_token_and_its_secret_authenticate() {
        let token = generate();
        assert!(split(&token).is_some(), "{token}");
        assert_ne!(generate(), token);
        let now = chrono::Utc::now();
        let mut s = super::secret(
            &token,
            Some(now + chrono::Duration::hours(1)),
            &["system:bootstrappers:x"],
        )
        .expect("a secret");
        wasmkube_model::defaults::apply_defaults("", "Secret", &mut s);
        let user = user_of(&s, &token, now).expect("authenticated");
        assert!(user.in_group("system:bootstrappers:x"));
        assert!(user_of(&s, &token, now + chrono::Duration::hours(2)).is_none());
    }

    #[test]
    fn usage_type_and_groups_are_checked() {
        let now = chrono::Utc::now();
        let base = [("token-id", "abcdef"), ("token-secret", "0123456789abcdef")];
        let without_usage = secret(&base);
        assert!(user_of(&without_usage, TOKEN, now).is_none());
        let mut fields = base.to_vec();
        fields.push(("usage-bootstrap-authentication", "true"));
        let mut wrong_type = secret(&fields);
        wrong_type["type"] = json!("Opaque");
        assert!(user_of(&wrong_type, TOKEN, now).is_none());
        fields.push(("auth-extra-groups", "system:masters"));
        assert!(
            user_of(&secret(&fields), TOKEN, now).is_none(),
            "only system:bootstrappers:*"
        );
        let mut deleting = secret(&fields[..3]);
        deleting["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        assert!(user_of(&deleting, TOKEN, now).is_none());
        for bad in [
            "abcdef0123456789abcdef",
            "ABCDEF.0123456789abcdef",
            "abcde.0123456789abcdefg",
        ] {
            assert!(split(bad).is_none(), "{bad}");
        }
    }
}
