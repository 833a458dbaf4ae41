//! The signers the server runs, as kube-controller-manager's csrsigning: `kubernetes.io/kube-apiserver-client-kubelet` and `kubernetes.io/kubelet-serving`, issuing from the cluster CA.

use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SanType,
};

use super::CertificateError;
use super::request::Request;

/// Client certificates of node agents (`system:node:NAME` in `system:nodes`).
pub const KUBELET_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// Serving certificates of node agents.
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
/// The prefix of a node's user name.
pub const NODE_PREFIX: &str = "system:node:";
/// The group of every node.
pub const NODES_GROUP: &str = "system:nodes";

/// How long an issued certificate lives unless the request asks for less
/// (`--cluster-signing-duration`'s default, a year).
pub const DEFAULT_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// How far back `notBefore` is set, for clocks a little behind (upstream's 5 minutes).
const BACKDATE: Duration = Duration::from_secs(300);

/// Whether this server signs for `signer`.
pub fn signs_for(signer: &str) -> bool {
    matches!(signer, KUBELET_CLIENT | KUBELET_SERVING)
}

/// Whether `usages` (a set) is `required`, with or without `key encipherment` (which ECDSA
/// keys do not need), as upstream's `kubeletClientRequiredUsages(NoRSA)`.
fn usages_are(usages: &[String], purpose: &str) -> bool {
    let set = |list: &mut Vec<&str>| {
        list.sort_unstable();
        list.dedup();
    };
    let mut given: Vec<&str> = usages.iter().map(String::as_str).collect();
    set(&mut given);
    let mut with_rsa = vec![purpose, "digital signature", "key encipherment"];
    set(&mut with_rsa);
    let mut without = vec![purpose, "digital signature"];
    set(&mut without);
    given == with_rsa || given == without
}

/// Upstream's `ValidateKubeletClientCSR`: `system:node:NAME` in exactly `system:nodes`, no
/// alternative names, client usages.
pub fn check_kubelet_client(request: &Request, usages: &[String]) -> Result<(), String> {
    if request.organizations != [NODES_GROUP] {
        return Err("subject organization is not system:nodes".into());
    }
    if !request.dns_names.is_empty() || !request.ip_addresses.is_empty() || request.other_names > 0
    {
        return Err("subject alternative names are not allowed".into());
    }
    if !request.common_name.starts_with(NODE_PREFIX) {
        return Err("subject common name does not begin with system:node:".into());
    }
    if !usages_are(usages, "client auth") {
        return Err("usages did not match [client auth digital signature key encipherment]".into());
    }
    Ok(())
}

/// Upstream's `ValidateKubeletServingCSR`: `system:node:NAME` in exactly `system:nodes`, at
/// least one DNS name or address and nothing else, serving usages.
pub fn check_kubelet_serving(request: &Request, usages: &[String]) -> Result<(), String> {
    if request.organizations != [NODES_GROUP] {
        return Err("subject organization is not system:nodes".into());
    }
    if request.dns_names.is_empty() && request.ip_addresses.is_empty() {
        return Err("DNS or IP subjectAltName is required".into());
    }
    if request.other_names > 0 {
        return Err("email and URI subjectAltNames are not allowed".into());
    }
    if !usages_are(usages, "server auth") {
        return Err("usages did not match [digital signature key encipherment server auth]".into());
    }
    if !request.common_name.starts_with(NODE_PREFIX) {
        return Err("subject common name does not begin with system:node:".into());
    }
    Ok(())
}

/// The cluster CA, able to sign.
pub struct Authority {
    ca: rcgen::Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for Authority {
    /// The CA's name only: the key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

impl Authority {
    /// The CA made of its parameters and key (the certificate made again signs as the one on
    /// disk: same name, same key).
    pub fn new(ca: CertificateParams, key_pem: &str) -> Result<Authority, CertificateError> {
        let key = KeyPair::from_pem(key_pem)?;
        let ca = ca.self_signed(&key)?;
        Ok(Authority { ca, key })
    }

    /// A certificate (PEM) for `request` with `usages`, valid from a little before now for
    /// `duration`.
    pub fn sign(
        &self,
        request: &Request,
        usages: &[String],
        duration: Duration,
    ) -> Result<String, CertificateError> {
        let mut params = CertificateParams::new(request.dns_names.clone())?;
        params.subject_alt_names.extend(
            request
                .ip_addresses
                .iter()
                .map(|ip| SanType::IpAddress(*ip)),
        );
        params
            .distinguished_name
            .push(DnType::CommonName, request.common_name.as_str());
        for organization in &request.organizations {
            params
                .distinguished_name
                .push(DnType::OrganizationName, organization.as_str());
        }
        for usage in usages {
            match usage.as_str() {
                "digital signature" => params.key_usages.push(KeyUsagePurpose::DigitalSignature),
                "key encipherment" => params.key_usages.push(KeyUsagePurpose::KeyEncipherment),
                "client auth" => params
                    .extended_key_usages
                    .push(ExtendedKeyUsagePurpose::ClientAuth),
                "server auth" => params
                    .extended_key_usages
                    .push(ExtendedKeyUsagePurpose::ServerAuth),
                _ => {}
            }
        }
        let since_epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_err(|_| CertificateError::Clock)?;
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        params.not_before = epoch + since_epoch.saturating_sub(BACKDATE);
        params.not_after = epoch
            + since_epoch
                .checked_add(duration)
                .ok_or(CertificateError::Clock)?;
        Ok(params.signed_by(&request.key, &self.ca, &self.key)?.pem())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificates::request::{parse, tests::make};

    fn usages(list: &[&str]) -> Vec<String> {
        list.iter().map(|u| u.to_string()).collect()
    }

    #[test]
    fn kubelet_client_requests_as_upstream_checks_them() {
        let key = KeyPair::generate().expect("key");
        let client = usages(&["digital signature", "client auth"]);
        let ok = parse(make("system:node:a", NODES_GROUP, &[], &key).as_bytes()).expect("ok");
        assert_eq!(check_kubelet_client(&ok, &client), Ok(()));
        let rsa = usages(&["key encipherment", "client auth", "digital signature"]);
        assert_eq!(check_kubelet_client(&ok, &rsa), Ok(()));
        assert!(check_kubelet_client(&ok, &usages(&["client auth"])).is_err());
        assert!(check_kubelet_client(&ok, &usages(&["digital signature", "server auth"])).is_err());
        for (cn, org, sans) in [
            ("alice", NODES_GROUP, &[][..]),
            ("system:node:a", "system:masters", &[]),
            ("system:node:a", NODES_GROUP, &["a.example"]),
        ] {
            let request = parse(make(cn, org, sans, &key).as_bytes()).expect("parsed");
            assert!(
                check_kubelet_client(&request, &client).is_err(),
                "{cn} {org} {sans:?}"
            );
        }
        let serving = usages(&["digital signature", "server auth"]);
        assert!(check_kubelet_serving(&ok, &serving).is_err(), "no names");
        let named = parse(make("system:node:a", NODES_GROUP, &["10.0.0.1"], &key).as_bytes())
            .expect("parsed");
        assert_eq!(check_kubelet_serving(&named, &serving), Ok(()));
    }

    #[test]
    fn the_pin_is_the_hash_of_the_public_key_info() {
        let key = KeyPair::generate().expect("key");
        let ca = CertificateParams::new(Vec::<String>::new())
            .expect("params")
            .self_signed(&key)
            .expect("ca");
        let digest = ring::digest::digest(&ring::digest::SHA256, &key.public_key_der());
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            crate::certificates::ca_pin(&ca.pem()).expect("pinned"),
            format!("sha256:{hex}")
        );
        assert!(crate::certificates::ca_pin("junk").is_err());
    }

    #[test]
    fn signs_the_requests_subject_and_key() {
        let ca_key = KeyPair::generate().expect("key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let authority = Authority::new(ca, &ca_key.serialize_pem()).expect("authority");
        let key = KeyPair::generate().expect("key");
        let request = parse(make("system:node:a", NODES_GROUP, &[], &key).as_bytes()).expect("ok");
        let pem = authority
            .sign(
                &request,
                &usages(&["digital signature", "client auth"]),
                Duration::from_secs(3600),
            )
            .expect("signed");
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        use base64::Engine as _;
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("der");
        let user = crate::auth::CertificateUser::from_der(&der).expect("a user");
        assert_eq!(user.0.name, "system:node:a");
        assert!(user.0.in_group(NODES_GROUP));
    }
}
