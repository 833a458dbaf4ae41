//! Who a request comes from and what they may do: client certificates, the admin token, bootstrap tokens and ServiceAccount tokens, impersonation, the node authorizer and RBAC.

pub mod attributes;
pub mod authn;
pub mod bootstrap;
pub mod bootstrap_token;
pub mod cluster_info;
pub mod components;
pub mod escalation;
pub mod jwt;
pub mod node;
pub mod plugin;
pub mod policy;
pub mod rbac;
pub mod review;
pub mod rule;
pub mod token;
pub mod user;
pub(crate) mod x509;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub use attributes::Attributes;
pub use authn::CertificateUser;
pub use user::User;

use crate::error::ApiError;
use crate::server::Server;

/// The server's authentication and authorization state.
pub struct Auth {
    /// The admin bearer token (`pki/token`), the user [`user::TOKEN_USER`].
    pub(crate) token: String,
    pub(crate) authorizer: rbac::Authorizer,
    /// Rebuilds asked for so far, each after its write (see [`policy::refresh`]).
    pub(crate) requested: std::sync::atomic::AtomicU64,
    /// Serializes index rebuilds; holds the newest request the index in force covers.
    pub(crate) refreshing: tokio::sync::Mutex<u64>,
}

impl Auth {
    pub fn new(token: String) -> Auth {
        Auth {
            token,
            authorizer: rbac::Authorizer::default(),
            requested: std::sync::atomic::AtomicU64::new(0),
            refreshing: tokio::sync::Mutex::new(0),
        }
    }
}

/// The RBAC index now (empty without [`Auth`], where every request is the admin's).
pub fn current_index(server: &Server) -> Arc<rbac::Index> {
    server
        .auth
        .as_ref()
        .map(|auth| auth.authorizer.index())
        .unwrap_or_default()
}

/// Refuses `user` what RBAC does not let it do now, with kube-apiserver's 403; without [`Auth`]
/// (tests) everything is allowed, as every request is the admin's there.
pub fn authorize(server: &Server, user: &User, attributes: &Attributes) -> Result<(), ApiError> {
    match server.auth.as_ref() {
        Some(auth) if !auth.authorizer.allows(user, attributes) => {
            Err(ApiError::forbidden(attributes, &user.name))
        }
        _ => Ok(()),
    }
}

/// Paths anyone may read without credentials (upstream's `system:public-info-viewer`).
fn public(path: &str) -> bool {
    matches!(path, "/healthz" | "/livez" | "/readyz" | "/version")
}

/// Authenticates the request (401 without credentials), applies impersonation, and authorizes
/// it with RBAC (403 in kube-apiserver's words); the [`User`] goes into the request's
/// extensions. Without [`Auth`] (tests) every request passes as the admin token's user.
pub async fn guard(
    State(server): State<Arc<Server>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(auth) = server.auth.as_ref() else {
        request
            .extensions_mut()
            .insert(Arc::new(User::token_admin()));
        return next.run(request).await;
    };
    let certificate = request.extensions().get::<CertificateUser>();
    let mut user = authn::identify(&auth.token, certificate, request.headers());
    if user.is_none()
        && let Some(bearer) = authn::bearer(request.headers())
    {
        user = match bootstrap_token::split(bearer) {
            Some(_) => bootstrap_token::authenticate(&server, bearer).await,
            None => token::authenticate(&server, bearer).await,
        };
    }
    let user = match user {
        Some(user) => user,
        None if public(request.uri().path()) => return next.run(request).await,
        // Without credentials: the anonymous user, where RBAC lets it (kubeadm's cluster-info),
        // else a 401.
        None => {
            let anonymous = cluster_info::anonymous();
            let attributes = Attributes::of_request(
                request.method(),
                request.uri().path(),
                request.uri().query(),
            );
            if !auth.authorizer.allows(&anonymous, &attributes) {
                return ApiError::Unauthorized.into_response();
            }
            anonymous
        }
    };
    let user = match authn::impersonate(&auth.authorizer, user, request.headers()) {
        Ok(user) => user,
        Err(e) => return e.into_response(),
    };
    let attributes = Attributes::of_request(
        request.method(),
        request.uri().path(),
        request.uri().query(),
    );
    let refused = match node::node_of(&user) {
        Some(name) => match node::authorize(&server, name, &attributes).await {
            Ok(node::Decision::Allow) => None,
            Ok(node::Decision::Deny(reason)) => Some(reason),
            Ok(node::Decision::NoOpinion(reason)) => {
                (!auth.authorizer.allows(&user, &attributes)).then_some(reason)
            }
            Err(e) => return e.into_response(),
        },
        None => (!auth.authorizer.allows(&user, &attributes)).then(String::new),
    };
    if let Some(reason) = refused {
        return ApiError::forbidden_because(&attributes, &user.name, &reason).into_response();
    }
    request.extensions_mut().insert(Arc::new(user));
    next.run(request).await
}
