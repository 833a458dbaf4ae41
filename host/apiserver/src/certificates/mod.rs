//! CertificateSigningRequests (`certificates.k8s.io/v1`): the request checked on create, the requester recorded, approval and status writes kept apart, node client requests approved as kube-controller-manager's csrapproving does, and approved requests signed by the cluster CA.

pub mod request;
pub mod signer;

use base64::Engine as _;
use serde_json::{Value, json};
use wasmkube_model::meta::{ResourceExt, now};
use wasmkube_model::resource::ResourceInfo;
use wasmkube_model::validation::{ErrorType, FieldError, is_dns1123_subdomain};

use crate::auth::{Attributes, User};
use crate::error::ApiError;
use crate::server::Server;
pub use signer::Authority;
use signer::{KUBELET_CLIENT, KUBELET_SERVING, NODE_PREFIX, NODES_GROUP};

/// The API group of CertificateSigningRequests.
pub const GROUP: &str = "certificates.k8s.io";

#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("{0}")]
    Request(String),
    #[error("signing: {0}")]
    Sign(#[from] rcgen::Error),
    #[error("the clock is outside the range a certificate can name")]
    Clock,
}

/// The shortest `spec.expirationSeconds` accepted (upstream's 10 minutes).
const MIN_EXPIRATION_SECONDS: i64 = 600;
/// The longest `spec.signerName` (upstream: a 253-character domain, `/`, a 317-character path).
const MAX_SIGNER_NAME: usize = 571;

/// The key usages a request may ask for (upstream's `KeyUsage` values).
const USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

/// kubeadm's `--discovery-token-ca-cert-hash` of the PEM CA certificate `ca_pem`:
/// `sha256:` and the hex SHA-256 of its SubjectPublicKeyInfo.
pub fn ca_pin(ca_pem: &str) -> Result<String, CertificateError> {
    let der = request::pem_block(ca_pem.as_bytes(), "CERTIFICATE")?;
    let info = crate::auth::x509::public_key_info(&der)
        .ok_or_else(|| CertificateError::Request("unreadable CA certificate".into()))?;
    let digest = ring::digest::digest(&ring::digest::SHA256, info);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("sha256:{hex}"))
}

/// Whether `info` is CertificateSigningRequests.
pub fn is_csr(info: &ResourceInfo) -> bool {
    info.group == GROUP && info.kind == "CertificateSigningRequest"
}

fn text<'a>(csr: &'a Value, pointer: &str) -> &'a str {
    csr.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn usages_of(csr: &Value) -> Vec<String> {
    csr["spec"]["usages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u.as_str().map(String::from))
        .collect()
}

fn field(field: &str, error: ErrorType) -> FieldError {
    FieldError {
        field: field.into(),
        error,
    }
}

fn invalid(field_path: &str, value: &str, detail: &str) -> FieldError {
    field(
        field_path,
        ErrorType::Invalid {
            value: json!(value).to_string(),
            detail: detail.into(),
        },
    )
}

/// The PEM of `spec.request` (base64 in JSON), read and verified.
fn request_of(csr: &Value) -> Result<request::Request, FieldError> {
    let encoded = text(csr, "/spec/request");
    if encoded.is_empty() {
        return Err(field("spec.request", ErrorType::Required(String::new())));
    }
    let pem = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| invalid("spec.request", "", "not base64"))?;
    request::parse(&pem).map_err(|e| invalid("spec.request", "", &e.to_string()))
}

/// `signerName` as upstream validates it: `DOMAIN/PATH`, the domain a DNS subdomain.
fn check_signer_name(name: &str, errors: &mut Vec<FieldError>) {
    let path = "spec.signerName";
    if name.is_empty() {
        errors.push(field(path, ErrorType::Required(String::new())));
        return;
    }
    if name.len() > MAX_SIGNER_NAME {
        errors.push(field(path, ErrorType::TooLong(MAX_SIGNER_NAME)));
        return;
    }
    match name.split_once('/') {
        Some((domain, rest)) if is_dns1123_subdomain(domain) && !rest.is_empty() => {}
        _ => errors.push(invalid(
            path,
            name,
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        )),
    }
}

/// The spec checks of upstream's `ValidateCertificateSigningRequestCreate`; the request parsed.
fn check_spec(csr: &Value) -> Result<request::Request, Vec<FieldError>> {
    let mut errors = Vec::new();
    let parsed = request_of(csr).map_err(|e| errors.push(e)).ok();
    check_signer_name(text(csr, "/spec/signerName"), &mut errors);
    let usages = usages_of(csr);
    if usages.is_empty() {
        errors.push(field("spec.usages", ErrorType::Required(String::new())));
    }
    for (i, usage) in usages.iter().enumerate() {
        if !USAGES.contains(&usage.as_str()) {
            errors.push(field(
                &format!("spec.usages[{i}]"),
                ErrorType::NotSupported {
                    value: json!(usage).to_string(),
                    supported: USAGES.iter().map(|u| u.to_string()).collect(),
                },
            ));
        }
    }
    if let Some(seconds) = csr["spec"]["expirationSeconds"].as_i64()
        && seconds < MIN_EXPIRATION_SECONDS
    {
        errors.push(invalid(
            "spec.expirationSeconds",
            &seconds.to_string(),
            "may not specify a duration less than 600 seconds (10 minutes)",
        ));
    }
    match parsed {
        Some(parsed) if errors.is_empty() => Ok(parsed),
        _ => Err(errors),
    }
}

/// Whether `csr` has a condition of `kind` (Approved, Denied, Failed) that is True.
fn has_condition(csr: &Value, kind: &str) -> bool {
    csr["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == kind && c["status"] == "True")
}

const APPROVAL_TYPES: [&str; 2] = ["Approved", "Denied"];

/// Upstream's `validateConditions`: a type, a status, Approved/Denied/Failed True and at most
/// once, Approved and Denied never together.
fn check_conditions(csr: &Value, errors: &mut Vec<FieldError>) {
    let conditions = csr["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut seen: Vec<&str> = Vec::new();
    for (i, c) in conditions.iter().enumerate() {
        let kind = c["type"].as_str().unwrap_or_default();
        let status = c["status"].as_str().unwrap_or_default();
        let at = |f: &str| format!("status.conditions[{i}].{f}");
        if kind.is_empty() {
            errors.push(field(&at("type"), ErrorType::Required(String::new())));
        }
        let special = APPROVAL_TYPES.contains(&kind) || kind == "Failed";
        if special && status != "True" {
            errors.push(field(
                &at("status"),
                ErrorType::NotSupported {
                    value: json!(status).to_string(),
                    supported: vec!["True".into()],
                },
            ));
        } else if !["True", "False", "Unknown"].contains(&status) {
            errors.push(field(
                &at("status"),
                ErrorType::NotSupported {
                    value: json!(status).to_string(),
                    supported: vec!["True".into(), "False".into(), "Unknown".into()],
                },
            ));
        }
        if special && seen.contains(&kind) {
            errors.push(field(&at("type"), ErrorType::Duplicate(kind.into())));
        }
        seen.push(kind);
    }
    if APPROVAL_TYPES.iter().all(|t| seen.contains(t)) {
        errors.push(invalid(
            "status.conditions",
            "",
            "Approved and Denied conditions are mutually exclusive",
        ));
    }
}

/// The user who made the request, as `spec` records it.
fn requester(csr: &Value) -> User {
    let list = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(String::from))
            .collect()
    };
    User {
        name: text(csr, "/spec/username").to_string(),
        uid: text(csr, "/spec/uid").to_string(),
        groups: list(&csr["spec"]["groups"]),
        extra: csr["spec"]["extra"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), list(v)))
            .collect(),
    }
}

/// Whether `user` may do `attributes` (everyone may on a server without authorization).
fn allowed(server: &Server, user: &User, attributes: &Attributes) -> bool {
    server
        .auth
        .as_ref()
        .is_none_or(|auth| auth.authorizer.allows(user, attributes))
}

/// Whether `user` holds `verb` on the `signers` resource for `signer`, by name or by
/// `DOMAIN/*` (upstream's certificateapproval and certificatesigning admission).
fn may_use_signer(server: &Server, user: &User, verb: &str, signer: &str) -> bool {
    let wildcard = signer.split_once('/').map(|(d, _)| format!("{d}/*"));
    std::iter::once(signer.to_string())
        .chain(wildcard)
        .any(|name| {
            allowed(
                server,
                user,
                &Attributes::resource(verb, GROUP, "signers", "", &name),
            )
        })
}

fn condition(kind: &str, reason: &str, message: &str) -> Value {
    let now = now();
    json!({"type": kind, "status": "True", "reason": reason, "message": message,
           "lastUpdateTime": now, "lastTransitionTime": now})
}

fn push_condition(csr: &mut Value, condition: Value) {
    if !csr["status"].is_object() {
        csr["status"] = json!({});
    }
    match csr["status"]["conditions"].as_array_mut() {
        Some(conditions) => conditions.push(condition),
        None => csr["status"]["conditions"] = json!([condition]),
    }
}

/// Why csrapproving approves `csr` on its own, if it does: a node client certificate whose
/// requester may `create` `certificatesigningrequests/selfnodeclient` (renewing its own name) or
/// `/nodeclient` (a bootstrap token); and, here, a node's serving certificate for the names and
/// addresses its Node reports.
async fn auto_approval(
    server: &Server,
    csr: &Value,
    request: &request::Request,
) -> Result<Option<&'static str>, ApiError> {
    let user = requester(csr);
    let usages = usages_of(csr);
    let own_name = user.name == request.common_name;
    match text(csr, "/spec/signerName") {
        KUBELET_CLIENT if signer::check_kubelet_client(request, &usages).is_ok() => {
            for (sub, self_only, message) in [
                (
                    "selfnodeclient",
                    true,
                    "Auto approving self kubelet client certificate after SubjectAccessReview.",
                ),
                (
                    "nodeclient",
                    false,
                    "Auto approving kubelet client certificate after SubjectAccessReview.",
                ),
            ] {
                let mut wanted =
                    Attributes::resource("create", GROUP, "certificatesigningrequests", "", "");
                wanted.subresource = sub.into();
                if (own_name || !self_only) && allowed(server, &user, &wanted) {
                    return Ok(Some(message));
                }
            }
            Ok(None)
        }
        KUBELET_SERVING
            if own_name
                && user.in_group(NODES_GROUP)
                && signer::check_kubelet_serving(request, &usages).is_ok() =>
        {
            let node = request.common_name.trim_start_matches(NODE_PREFIX);
            let reported = node_addresses(server, node).await?;
            let names = request
                .dns_names
                .iter()
                .cloned()
                .chain(request.ip_addresses.iter().map(|ip| ip.to_string()));
            let mut names = names.peekable();
            let own = names.peek().is_some() && names.all(|n| reported.contains(&n));
            Ok(own.then_some(
                "Auto approving kubelet serving certificate for the addresses its Node reports.",
            ))
        }
        _ => Ok(None),
    }
}

/// The name and addresses the Node `name` reports (`status.addresses`), empty if it is not
/// registered.
async fn node_addresses(server: &Server, name: &str) -> Result<Vec<String>, ApiError> {
    let registry = server.registry();
    let info = registry
        .by_kind("v1", "Node")
        .ok_or_else(|| ApiError::Internal("nodes are not served".into()))?;
    let Some(node) = server.objects.get(info, None, name).await? else {
        return Ok(Vec::new());
    };
    Ok(node
        .object
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| a["address"].as_str().map(String::from))
        .collect())
}

/// Signs an approved request for a signer of this server that has no certificate yet, or
/// marks it Failed when the signer's checks refuse it (as csrsigning).
fn issue(server: &Server, csr: &mut Value, request: &request::Request) -> Result<(), ApiError> {
    let signer_name = text(csr, "/spec/signerName").to_string();
    let Some(authority) = server.cluster.certificate_authority.as_ref() else {
        return Ok(());
    };
    if !signer::signs_for(&signer_name)
        || !has_condition(csr, "Approved")
        || has_condition(csr, "Failed")
        || !text(csr, "/status/certificate").is_empty()
    {
        return Ok(());
    }
    let usages = usages_of(csr);
    let checked = match signer_name.as_str() {
        KUBELET_CLIENT => signer::check_kubelet_client(request, &usages),
        _ => signer::check_kubelet_serving(request, &usages),
    };
    if let Err(reason) = checked {
        push_condition(csr, condition("Failed", "SignerValidationFailure", &reason));
        return Ok(());
    }
    let requested = csr["spec"]["expirationSeconds"]
        .as_u64()
        .map(std::time::Duration::from_secs)
        .unwrap_or(signer::DEFAULT_DURATION);
    let pem = authority
        .sign(request, &usages, requested.min(signer::DEFAULT_DURATION))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    csr["status"]["certificate"] = json!(base64::engine::general_purpose::STANDARD.encode(pem));
    Ok(())
}

/// On create: the request and spec checked, the requester recorded in `spec` (upstream's
/// `PrepareForCreate`), the status cleared, then approval and signing as the controllers would.
pub async fn admit_create(
    server: &Server,
    info: &ResourceInfo,
    csr: &mut Value,
    user: Option<&User>,
) -> Result<(), ApiError> {
    if let Some(user) = user {
        csr["spec"]["username"] = json!(user.name);
        csr["spec"]["uid"] = json!(user.uid);
        csr["spec"]["groups"] = json!(user.groups);
        csr["spec"]["extra"] = json!(user.extra);
        for (key, empty) in [
            ("uid", user.uid.is_empty()),
            ("extra", user.extra.is_empty()),
        ] {
            if empty && let Some(spec) = csr["spec"].as_object_mut() {
                spec.remove(key);
            }
        }
    }
    if let Some(o) = csr.as_object_mut() {
        o.remove("status");
    }
    let request = check_spec(csr).map_err(|errors| ApiError::invalid(info, csr.name(), errors))?;
    if let Some(message) = auto_approval(server, csr, &request).await? {
        push_condition(csr, condition("Approved", "AutoApproved", message));
    }
    issue(server, csr, &request)
}

/// On update: the spec never changes; `approval` changes only the conditions (an Approved or
/// Denied one added needs `approve` on the signer), `status` everything but them (a certificate
/// needs `sign` on the signer and an approval, and is never replaced); Approved and Denied are
/// never removed. An approved request for a signer of this server is then signed.
pub fn prepare_update(
    server: &Server,
    info: &ResourceInfo,
    old: &Value,
    csr: &mut Value,
    subresource: Option<&str>,
    user: Option<&User>,
) -> Result<(), ApiError> {
    csr["spec"] = old["spec"].clone();
    let signer_name = text(old, "/spec/signerName");
    let refuse = |verb: &str| {
        ApiError::Forbidden(format!(
            "user not permitted to {verb} requests with signerName {signer_name:?}"
        ))
    };
    match subresource {
        Some("approval") => {
            csr["status"]["certificate"] = old["status"]["certificate"].clone();
            if let Some(user) = user
                && APPROVAL_TYPES
                    .iter()
                    .any(|t| has_condition(csr, t) && !has_condition(old, t))
                && !may_use_signer(server, user, "approve", signer_name)
            {
                return Err(refuse("approve"));
            }
        }
        Some("status") => {
            let kept: Vec<Value> = old["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| APPROVAL_TYPES.contains(&c["type"].as_str().unwrap_or_default()))
                .cloned()
                .chain(
                    csr["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|c| {
                            !APPROVAL_TYPES.contains(&c["type"].as_str().unwrap_or_default())
                        })
                        .cloned(),
                )
                .collect();
            csr["status"]["conditions"] = json!(kept);
            let old_certificate = text(old, "/status/certificate");
            if !old_certificate.is_empty() {
                csr["status"]["certificate"] = json!(old_certificate);
            } else if !text(csr, "/status/certificate").is_empty() {
                if let Some(user) = user
                    && !may_use_signer(server, user, "sign", signer_name)
                {
                    return Err(refuse("sign"));
                }
                if !has_condition(csr, "Approved") || has_condition(csr, "Failed") {
                    return Err(ApiError::invalid(
                        info,
                        csr.name(),
                        vec![invalid(
                            "status.certificate",
                            "",
                            "certificate may only be set when the request is Approved and not Failed",
                        )],
                    ));
                }
            }
        }
        _ => {}
    }
    let mut errors = Vec::new();
    check_conditions(csr, &mut errors);
    for kind in APPROVAL_TYPES {
        if has_condition(old, kind) && !has_condition(csr, kind) {
            errors.push(field(
                "status.conditions",
                ErrorType::Forbidden(format!(
                    "updates may not remove a condition of type {kind:?}"
                )),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(info, csr.name(), errors));
    }
    let request = request_of(csr).map_err(|e| ApiError::invalid(info, csr.name(), vec![e]))?;
    issue(server, csr, &request)
}
