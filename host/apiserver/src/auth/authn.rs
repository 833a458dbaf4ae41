//! Authentication: the verified client certificate of the connection or the admin bearer token becomes a [`User`] (ServiceAccount tokens: `token`), then impersonation headers apply.

use std::sync::Arc;

use http::HeaderMap;

use super::attributes::Attributes;
use super::rbac::Authorizer;
use super::user::User;
use crate::error::ApiError;

/// The user of the connection's client certificate (CN, and O as groups), put into every
/// request of the connection by the TLS server once the CA has verified the certificate.
#[derive(Clone, Debug)]
pub struct CertificateUser(pub Arc<User>);

impl CertificateUser {
    /// The user of a verified certificate, `None` without a common name (as upstream).
    pub fn from_der(der: &[u8]) -> Option<CertificateUser> {
        let (name, groups) = super::x509::subject(der)?;
        (!name.is_empty()).then(|| CertificateUser(Arc::new(User::new(&name, groups))))
    }
}

/// The user a request authenticates as: its certificate's, else the admin token's.
pub fn identify(
    token: &str,
    certificate: Option<&CertificateUser>,
    headers: &HeaderMap,
) -> Option<User> {
    if let Some(CertificateUser(user)) = certificate {
        return Some(User::clone(user));
    }
    let given = bearer(headers)?;
    same_secret(given.as_bytes(), token.as_bytes()).then(User::token_admin)
}

/// The bearer token of the `Authorization` header, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Whether two secrets are equal, in time that depends on their lengths only (no early exit
/// on the first differing byte to time).
pub(crate) fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let differing = given
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    differing == 0 && given.len() == expected.len()
}

const IMPERSONATE_USER: &str = "impersonate-user";
const IMPERSONATE_GROUP: &str = "impersonate-group";
/// The most groups one request may impersonate.
const MAX_IMPERSONATED_GROUPS: usize = 64;

/// The user `user` acts as: itself, or the one the `Impersonate-User` and `Impersonate-Group`
/// headers name, if it holds the `impersonate` verb on each (upstream's impersonation filter).
pub fn impersonate(
    authorizer: &Authorizer,
    user: User,
    headers: &HeaderMap,
) -> Result<User, ApiError> {
    let values = |name: &str| -> Result<Vec<String>, ApiError> {
        headers
            .get_all(name)
            .iter()
            .map(|v| {
                v.to_str()
                    .map(String::from)
                    .map_err(|_| ApiError::BadRequest(format!("{name} is not text")))
            })
            .collect()
    };
    let users = values(IMPERSONATE_USER)?;
    let groups = values(IMPERSONATE_GROUP)?;
    let Some(name) = users.first() else {
        if groups.is_empty() {
            return Ok(user);
        }
        return Err(ApiError::BadRequest(format!(
            "requested {groups:?} without impersonating a user"
        )));
    };
    if users.len() > 1 || groups.len() > MAX_IMPERSONATED_GROUPS {
        return Err(ApiError::BadRequest(
            "too many impersonation headers".into(),
        ));
    }
    let service_account = name
        .strip_prefix("system:serviceaccount:")
        .and_then(|r| r.split_once(':'));
    let mut wanted = vec![match service_account {
        Some((ns, sa)) => Attributes::resource("impersonate", "", "serviceaccounts", ns, sa),
        None => Attributes::resource("impersonate", "", "users", "", name),
    }];
    wanted.extend(
        groups
            .iter()
            .map(|g| Attributes::resource("impersonate", "", "groups", "", g)),
    );
    if let Some(refused) = wanted.iter().find(|a| !authorizer.allows(&user, a)) {
        return Err(ApiError::forbidden(refused, &user.name));
    }
    // A ServiceAccount impersonated without groups is in its groups, as upstream.
    let groups = match service_account {
        Some((ns, _)) if groups.is_empty() => {
            vec![
                "system:serviceaccounts".to_string(),
                format!("system:serviceaccounts:{ns}"),
            ]
        }
        _ => groups,
    };
    Ok(User::new(name, groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_the_admin_and_a_certificate_wins() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            "Bearer s3cret".parse().expect("header"),
        );
        assert_eq!(
            identify("s3cret", None, &headers),
            Some(User::token_admin())
        );
        assert_eq!(identify("other", None, &headers), None);
        assert_eq!(identify("s3cret", None, &HeaderMap::new()), None);
        let alice = CertificateUser(Arc::new(User::new("alice", [])));
        assert_eq!(
            identify("other", Some(&alice), &headers).map(|u| u.name),
            Some("alice".into())
        );
    }

    #[test]
    fn impersonation_needs_the_impersonate_verb() {
        let authorizer = Authorizer::default();
        let mut headers = HeaderMap::new();
        headers.insert(IMPERSONATE_USER, "bob".parse().expect("header"));
        headers.insert(IMPERSONATE_GROUP, "devs".parse().expect("header"));
        let err = impersonate(&authorizer, User::new("alice", []), &headers).expect_err("refused");
        assert_eq!(
            err.to_string(),
            r#"users "bob" is forbidden: User "alice" cannot impersonate resource "users" in API group "" at the cluster scope"#
        );
        let admin = User::token_admin();
        let bob = impersonate(&authorizer, admin, &headers).expect("allowed");
        assert_eq!(
            (bob.name.as_str(), bob.groups.clone()),
            (
                "bob",
                vec!["devs".to_string(), "system:authenticated".to_string()]
            )
        );
    }
}
