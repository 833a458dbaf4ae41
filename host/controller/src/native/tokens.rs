//! The token controller: a `kubernetes.io/service-account-token` Secret gets a non-expiring token of its ServiceAccount bound to the Secret, with `ca.crt` and `namespace`; one whose ServiceAccount is gone is deleted.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use wasmkube_apiserver::Server;
use wasmkube_apiserver::auth::token::{Claims, ObjectRef};
use wasmkube_apiserver::error::ApiError;
use wasmkube_apiserver::registry::{DeleteOptions, Update, delete_object, update_with};
use wasmkube_model::meta::ResourceExt;
use wasmkube_model::resource::ResourceInfo;

/// The type of a legacy token Secret.
pub const TOKEN_TYPE: &str = "kubernetes.io/service-account-token";
/// The ServiceAccount a token Secret is for.
const NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
/// Its uid, recorded when the token is written.
const UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";

fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj["metadata"]["annotations"][key]
        .as_str()
        .filter(|v| !v.is_empty())
}

/// Fills a token Secret of namespace `ns` that has no token yet, or deletes it when its
/// ServiceAccount is gone or is not the one whose uid it records (as upstream's tokens
/// controller). Nothing happens on a server without a ServiceAccount key.
pub async fn settle(
    server: &Server,
    info: &ResourceInfo,
    ns: &str,
    secret: &Value,
) -> Result<(), ApiError> {
    let Some(issuer) = server.cluster.service_accounts.as_ref() else {
        return Ok(());
    };
    if secret["type"] != TOKEN_TYPE || secret.is_deleting() {
        return Ok(());
    }
    let Some(sa_name) = annotation(secret, NAME_ANNOTATION) else {
        return Ok(());
    };
    let registry = server.registry();
    let Some(sa_info) = registry.by_kind("v1", "ServiceAccount") else {
        return Ok(());
    };
    let sa = server.objects.get(sa_info, Some(ns), sa_name).await?;
    let sa_uid = sa.as_ref().and_then(|sa| sa.object.uid().map(String::from));
    let recorded = annotation(secret, UID_ANNOTATION);
    let Some(sa_uid) = sa_uid.filter(|uid| recorded.is_none_or(|r| r == uid)) else {
        let opts = DeleteOptions {
            uid: secret.uid().map(String::from),
            ..DeleteOptions::background()
        };
        return match delete_object(server, info, Some(ns), secret.name(), &opts).await {
            Ok(_) | Err(ApiError::NotFound { .. } | ApiError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e),
        };
    };
    if secret["data"]["token"]
        .as_str()
        .is_some_and(|t| !t.is_empty())
    {
        return Ok(());
    }
    let secret_uid = secret.uid().unwrap_or_default().to_string();
    let mut claims = Claims::new(
        issuer,
        ns,
        ObjectRef {
            name: sa_name.to_string(),
            uid: sa_uid.clone(),
        },
        issuer.audiences().to_vec(),
        chrono::Utc::now().timestamp(),
        None,
    );
    claims.kubernetes.secret = Some(ObjectRef {
        name: secret.name().to_string(),
        uid: secret_uid.clone(),
    });
    let token = issuer
        .mint(&claims)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut data = json!({"token": STANDARD.encode(token), "namespace": STANDARD.encode(ns)});
    if let Some(ca) = &server.cluster.root_ca {
        data["ca.crt"] = json!(STANDARD.encode(ca));
    }
    let update = Update::internal(info, Some(ns), secret.name());
    let fill = |cur: &Value| {
        if cur.uid() != Some(secret_uid.as_str()) {
            return Err(ApiError::conflict(info, cur.name()));
        }
        let mut new = cur.clone();
        if !new["data"].is_object() {
            new["data"] = json!({});
        }
        for (key, value) in data.as_object().into_iter().flatten() {
            new["data"][key] = value.clone();
        }
        new["metadata"]["annotations"][UID_ANNOTATION] = json!(sa_uid);
        Ok(new)
    };
    update_with(server, &update, fill, &mut Vec::new())
        .await
        .map(|_| ())
}

/// Deletes the token Secrets of ServiceAccount `sa` (just deleted) in namespace `ns`.
pub async fn revoke(server: &Server, ns: &str, sa: &str) -> Result<(), ApiError> {
    let registry = server.registry();
    let Some(info) = registry.by_kind("v1", "Secret") else {
        return Ok(());
    };
    let of_sa = |s: &Value| s["type"] == TOKEN_TYPE && annotation(s, NAME_ANNOTATION) == Some(sa);
    let secrets = server
        .objects
        .list(info, Some(ns), None, None, None, of_sa)
        .await?;
    for secret in &secrets.items {
        settle(server, info, ns, secret).await?;
    }
    Ok(())
}
