//! ServiceAccount tokens: the signing key kept in `pki/sa.key`, the claims upstream puts in them, minting, and authenticating a bearer token as its ServiceAccount.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use wasmkube_model::meta::ResourceExt;

use super::jwt::{JwtError, Signer};
use super::user::User;
use crate::server::Server;

/// The issuer (`iss`) of tokens unless `--service-account-issuer` says otherwise, and the
/// audience the API accepts unless `--api-audiences` does (upstream's default for both).
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The private key, PKCS#8 PEM, 0600.
const KEY_FILE: &str = "sa.key";
/// Its public key, SubjectPublicKeyInfo PEM, for whoever verifies tokens elsewhere.
const PUB_FILE: &str = "sa.pub";
/// How far `exp` and `nbf` may be off (upstream's `jwt.DefaultLeeway`).
pub const LEEWAY_SECS: i64 = 60;
/// The group of every ServiceAccount.
pub const ALL_SERVICE_ACCOUNTS: &str = "system:serviceaccounts";
/// A ServiceAccount's user name is this, then `NS:NAME`.
pub const USER_PREFIX: &str = "system:serviceaccount:";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("reading or writing {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}: the ServiceAccount signing key is unusable: {1}")]
    Key(String, String),
    #[error(transparent)]
    Jwt(#[from] JwtError),
    #[error("the token's {0} is not acceptable")]
    Claim(&'static str),
}

/// An object a token names: a ServiceAccount, the pod or Secret it is bound to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub name: String,
    pub uid: String,
}

/// The `kubernetes.io` claim.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Private {
    pub namespace: String,
    pub serviceaccount: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
}

/// What a ServiceAccount token says, as upstream's bound tokens do. Only a token bound to a
/// Secret (a legacy token Secret's) may lack `exp`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: Private,
}

impl Claims {
    /// The claims of a token for ServiceAccount `sa` of `ns` issued by `issuer` at `now` for
    /// `audiences`, expiring at `exp` (never: only for a token bound to a Secret), bound to
    /// nothing yet (set `kubernetes.pod` or `kubernetes.secret`).
    pub fn new(
        issuer: &TokenIssuer,
        ns: &str,
        sa: ObjectRef,
        audiences: Vec<String>,
        now: i64,
        exp: Option<i64>,
    ) -> Claims {
        Claims {
            iss: issuer.issuer.clone(),
            sub: format!("{USER_PREFIX}{ns}:{}", sa.name),
            aud: audiences,
            exp,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            kubernetes: Private {
                namespace: ns.to_string(),
                serviceaccount: sa,
                ..Private::default()
            },
        }
    }
}

/// Signs and verifies ServiceAccount tokens.
#[derive(Debug)]
pub struct TokenIssuer {
    signer: Signer,
    issuer: String,
    audiences: Vec<String>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TokenError + '_ {
    move |source| TokenError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl TokenIssuer {
    /// The issuer of the key in `dir` (made and saved on first start), naming itself `issuer`
    /// and accepting tokens for any of `audiences` (the issuer when empty).
    pub fn load_or_create(
        dir: &Path,
        issuer: &str,
        audiences: &[String],
    ) -> Result<TokenIssuer, TokenError> {
        let path = dir.join(KEY_FILE);
        let bad_key = |e: rcgen::Error| TokenError::Key(path.display().to_string(), e.to_string());
        let key = match std::fs::read_to_string(&path) {
            Ok(pem) => rcgen::KeyPair::from_pem(&pem).map_err(bad_key)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                crate::tls::create_private_dir(dir).map_err(io(dir))?;
                let key = rcgen::KeyPair::generate().map_err(bad_key)?;
                let public = dir.join(PUB_FILE);
                crate::tls::write_private(&public, key.public_key_pem().as_bytes())
                    .map_err(io(&public))?;
                crate::tls::write_private(&path, key.serialize_pem().as_bytes())
                    .map_err(io(&path))?;
                key
            }
            Err(e) => return Err(io(&path)(e)),
        };
        let signer = Signer::new(&key.serialize_der(), &key.public_key_der())
            .map_err(|e| TokenError::Key(path.display().to_string(), e.to_string()))?;
        Ok(TokenIssuer::new(signer, issuer, audiences))
    }

    fn new(signer: Signer, issuer: &str, audiences: &[String]) -> TokenIssuer {
        let audiences = if audiences.is_empty() {
            vec![issuer.to_string()]
        } else {
            audiences.to_vec()
        };
        TokenIssuer {
            signer,
            issuer: issuer.to_string(),
            audiences,
        }
    }

    /// `iss` of the tokens made here.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The audiences the API accepts (a TokenRequest without audiences gets these).
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// A signed token saying `claims`.
    pub fn mint(&self, claims: &Claims) -> Result<String, TokenError> {
        let claims = serde_json::to_value(claims).map_err(|_| TokenError::Claim("encoding"))?;
        Ok(self.signer.sign(&claims)?)
    }

    /// The claims of `token` if this issuer signed it, it is valid at `now` (seconds since the
    /// epoch, [`LEEWAY_SECS`] either way), and it is meant for one of the API's audiences.
    /// Whether the objects it names still exist is for [`authenticate`].
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let claims: Claims = serde_json::from_value(self.signer.verify(token)?)
            .map_err(|_| TokenError::Claim("shape"))?;
        if claims.iss != self.issuer {
            return Err(TokenError::Claim("issuer"));
        }
        if !claims.aud.iter().any(|a| self.audiences.contains(a)) {
            return Err(TokenError::Claim("audience"));
        }
        if claims.nbf > now.saturating_add(LEEWAY_SECS) {
            return Err(TokenError::Claim("nbf"));
        }
        match claims.exp {
            Some(exp) if exp.saturating_add(LEEWAY_SECS) < now => {
                return Err(TokenError::Claim("exp"));
            }
            None if claims.kubernetes.secret.is_none() => return Err(TokenError::Claim("exp")),
            _ => {}
        }
        let private = &claims.kubernetes;
        if claims.sub
            != format!(
                "{USER_PREFIX}{}:{}",
                private.namespace, private.serviceaccount.name
            )
        {
            return Err(TokenError::Claim("subject"));
        }
        Ok(claims)
    }
}

/// The user a ServiceAccount token authenticates, if this server issued it, it is valid now,
/// and the ServiceAccount, and the pod or Secret it is bound to, still exist with the uids it
/// names (a deleted and re-created one does not revive it). `None` means 401.
pub async fn authenticate(server: &Server, token: &str) -> Option<User> {
    let issuer = server.cluster.service_accounts.as_ref()?;
    let claims = match issuer.verify(token, chrono::Utc::now().timestamp()) {
        Ok(claims) => claims,
        Err(e) => {
            tracing::debug!(error = %e, "a bearer token is not a valid ServiceAccount token");
            return None;
        }
    };
    let private = &claims.kubernetes;
    let ns = private.namespace.as_str();
    alive(server, "ServiceAccount", ns, &private.serviceaccount).await?;
    if let Some(pod) = &private.pod {
        alive(server, "Pod", ns, pod).await?;
    }
    if let Some(secret) = &private.secret {
        alive(server, "Secret", ns, secret).await?;
    }
    Some(user_of(&claims))
}

/// `Some` if the object of `kind` that `r` names is stored in `ns` with `r`'s uid.
async fn alive(server: &Server, kind: &str, ns: &str, r: &ObjectRef) -> Option<()> {
    let registry = server.registry();
    let info = registry.by_kind("v1", kind)?;
    let stored = server.objects.get(info, Some(ns), &r.name).await.ok()??;
    (stored.object.uid() == Some(r.uid.as_str())).then_some(())
}

/// The user of valid claims: the ServiceAccount's name and uid, its groups, and the pod and
/// token id as upstream's `extra`.
fn user_of(claims: &Claims) -> User {
    let private = &claims.kubernetes;
    let mut user = User::new(
        &claims.sub,
        [
            ALL_SERVICE_ACCOUNTS.to_string(),
            format!("{ALL_SERVICE_ACCOUNTS}:{}", private.namespace),
        ],
    );
    user.uid = private.serviceaccount.uid.clone();
    let mut extra = BTreeMap::new();
    if let Some(pod) = &private.pod {
        extra.insert(
            "authentication.kubernetes.io/pod-name".into(),
            vec![pod.name.clone()],
        );
        extra.insert(
            "authentication.kubernetes.io/pod-uid".into(),
            vec![pod.uid.clone()],
        );
    }
    extra.insert(
        "authentication.kubernetes.io/credential-id".into(),
        vec![format!("JTI={}", claims.jti)],
    );
    user.extra = extra;
    user
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn issuer() -> TokenIssuer {
        TokenIssuer::new(super::super::jwt::tests::signer(), DEFAULT_ISSUER, &[])
    }

    fn claims() -> Claims {
        Claims {
            iss: DEFAULT_ISSUER.into(),
            sub: "system:serviceaccount:ns:app".into(),
            aud: vec![DEFAULT_ISSUER.into()],
            exp: Some(NOW + 600),
            iat: NOW,
            nbf: NOW,
            jti: "id".into(),
            kubernetes: Private {
                namespace: "ns".into(),
                serviceaccount: ObjectRef {
                    name: "app".into(),
                    uid: "u1".into(),
                },
                pod: Some(ObjectRef {
                    name: "p".into(),
                    uid: "u2".into(),
                }),
                secret: None,
            },
        }
    }

    fn refused(issuer: &TokenIssuer, claims: &Claims, now: i64) -> String {
        let token = issuer.mint(claims).expect("minted");
        issuer.verify(&token, now).expect_err("refused").to_string()
    }

    #[test]
    fn a_valid_token_gives_its_claims_and_user() {
        let issuer = issuer();
        let token = issuer.mint(&claims()).expect("minted");
        let verified = issuer.verify(&token, NOW + 1).expect("valid");
        assert_eq!(verified, claims());
        let user = user_of(&verified);
        assert_eq!(user.name, "system:serviceaccount:ns:app");
        assert_eq!(user.uid, "u1");
        assert_eq!(
            user.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:ns",
                "system:authenticated"
            ]
        );
        assert_eq!(
            user.extra["authentication.kubernetes.io/pod-name"],
            vec!["p".to_string()]
        );
    }

    #[test]
    fn expiry_and_not_before_allow_a_minute_of_skew() {
        let issuer = issuer();
        let token = issuer.mint(&claims()).expect("minted");
        assert!(issuer.verify(&token, NOW + 600 + LEEWAY_SECS).is_ok());
        assert_eq!(
            refused(&issuer, &claims(), NOW + 600 + LEEWAY_SECS + 1),
            "the token's exp is not acceptable"
        );
        assert!(issuer.verify(&token, NOW - LEEWAY_SECS).is_ok());
        assert_eq!(
            refused(&issuer, &claims(), NOW - LEEWAY_SECS - 1),
            "the token's nbf is not acceptable"
        );
    }

    #[test]
    fn only_secret_bound_tokens_may_not_expire() {
        let issuer = issuer();
        let mut c = claims();
        c.exp = None;
        assert_eq!(
            refused(&issuer, &c, NOW),
            "the token's exp is not acceptable"
        );
        c.kubernetes.pod = None;
        c.kubernetes.secret = Some(ObjectRef {
            name: "s".into(),
            uid: "u3".into(),
        });
        let token = issuer.mint(&c).expect("minted");
        assert!(issuer.verify(&token, NOW + 10 * 365 * 86400).is_ok());
    }

    #[test]
    fn issuer_audience_and_subject_must_match() {
        let issuer = issuer();
        let mut c = claims();
        c.iss = "https://elsewhere".into();
        assert_eq!(
            refused(&issuer, &c, NOW),
            "the token's issuer is not acceptable"
        );
        let mut c = claims();
        c.aud = vec!["vault".into()];
        assert_eq!(
            refused(&issuer, &c, NOW),
            "the token's audience is not acceptable"
        );
        c.aud.push(DEFAULT_ISSUER.into());
        assert!(
            issuer
                .verify(&issuer.mint(&c).expect("minted"), NOW)
                .is_ok()
        );
        let mut c = claims();
        c.sub = "system:serviceaccount:kube-system:admin".into();
        assert_eq!(
            refused(&issuer, &c, NOW),
            "the token's subject is not acceptable"
        );
        let other = TokenIssuer::new(
            super::super::jwt::tests::signer(),
            "https://other",
            &["api".to_string()],
        );
        assert_eq!(other.audiences(), ["api"]);
        assert!(
            other
                .verify(&issuer.mint(&claims()).expect("minted"), NOW)
                .is_err()
        );
    }

    #[test]
    fn the_key_is_made_once_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = dir.path().join("pki");
        let first = TokenIssuer::load_or_create(&pki, DEFAULT_ISSUER, &[]).expect("made");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(pki.join(KEY_FILE))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            std::fs::read_to_string(pki.join(PUB_FILE))
                .expect("pub")
                .starts_with("-----BEGIN PUBLIC KEY-----")
        );
        let token = first.mint(&claims()).expect("minted");
        let again = TokenIssuer::load_or_create(&pki, DEFAULT_ISSUER, &[]).expect("loaded");
        assert!(again.verify(&token, NOW).is_ok());
    }
}
