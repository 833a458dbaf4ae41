//! A PKCS#10 certificate request (RFC 2986) read from PEM: its subject, its subject alternative names and its public key, the request's self-signature checked.

use std::net::IpAddr;

use base64::Engine as _;
use ring::signature;

use super::CertificateError;
use crate::auth::x509::{Element, SEQUENCE, element, elements, name_of};

/// The longest PEM request accepted (an RSA-8192 request is under 3 KiB).
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// The most subject alternative names one request may carry.
const MAX_NAMES: usize = 64;

const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const OID_ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
const OID_RSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
const OID_EXTENSION_REQUEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0e];
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

const OID: u8 = 0x06;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const ATTRIBUTES: u8 = 0xa0;
/// `GeneralName` tags: rfc822Name, dNSName, uniformResourceIdentifier, iPAddress.
const SAN_EMAIL: u8 = 0x81;
const SAN_DNS: u8 = 0x82;
const SAN_URI: u8 = 0x86;
const SAN_IP: u8 = 0x87;

/// The public key of a request, in the form rcgen signs a certificate for.
pub struct PublicKey {
    /// The subjectPublicKey bits (an EC point, an RSAPublicKey, an Ed25519 key).
    raw: Vec<u8>,
    algorithm: &'static rcgen::SignatureAlgorithm,
}

impl rcgen::PublicKeyData for PublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.raw
    }

    fn algorithm(&self) -> &rcgen::SignatureAlgorithm {
        self.algorithm
    }
}

/// A certificate request whose signature verified.
pub struct Request {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    /// Email and URI names, which no signer here issues.
    pub other_names: usize,
    pub key: PublicKey,
}

/// The contents of a BIT STRING without unused bits.
fn bits(e: &Element<'_>) -> Option<Vec<u8>> {
    match e.contents.split_first() {
        Some((0, bits)) if e.tag == BIT_STRING => Some(bits.to_vec()),
        _ => None,
    }
}

/// The OID and parameters of an AlgorithmIdentifier.
fn algorithm<'a>(e: &Element<'a>) -> Option<(&'a [u8], Option<&'a [u8]>)> {
    let parts = elements(e.contents)?;
    let oid = parts.first().filter(|o| o.tag == OID)?;
    let params = parts.get(1).filter(|p| p.tag == OID).map(|p| p.contents);
    Some((oid.contents, params))
}

/// The public key of a SubjectPublicKeyInfo and how its signatures are verified.
fn public_key(
    spki: &Element<'_>,
    signed_with: &[u8],
) -> Result<(PublicKey, &'static dyn signature::VerificationAlgorithm), CertificateError> {
    let bad = || CertificateError::Request("unreadable public key".into());
    let [alg, key] = <[Element<'_>; 2]>::try_from(elements(spki.contents).ok_or_else(bad)?)
        .map_err(|_| bad())?;
    let (oid, params) = algorithm(&alg).ok_or_else(bad)?;
    let raw = bits(&key).ok_or_else(bad)?;
    let (rcgen_alg, verify): (_, &'static dyn signature::VerificationAlgorithm) = match (
        oid,
        params,
        signed_with,
    ) {
        (OID_EC_PUBLIC_KEY, Some(OID_P256), OID_ECDSA_SHA256) => (
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &signature::ECDSA_P256_SHA256_ASN1,
        ),
        (OID_EC_PUBLIC_KEY, Some(OID_P384), OID_ECDSA_SHA384) => (
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &signature::ECDSA_P384_SHA384_ASN1,
        ),
        (OID_ED25519, None, OID_ED25519) => (&rcgen::PKCS_ED25519, &signature::ED25519),
        (OID_RSA, _, OID_RSA_SHA256) => (
            &rcgen::PKCS_RSA_SHA256,
            &signature::RSA_PKCS1_2048_8192_SHA256,
        ),
        _ => {
            return Err(CertificateError::Request(
                    "unsupported key or signature algorithm (ECDSA P-256/P-384, Ed25519 or RSA with SHA-256)".into(),
                ));
        }
    };
    let key = PublicKey {
        raw,
        algorithm: rcgen_alg,
    };
    Ok((key, verify))
}

/// The subject alternative names of the request's `extensionRequest` attribute.
fn alternative_names(attributes: &Element<'_>, request: &mut Request) -> Option<()> {
    for attribute in elements(attributes.contents)? {
        let [oid, values] = <[Element<'_>; 2]>::try_from(elements(attribute.contents)?).ok()?;
        if oid.contents != OID_EXTENSION_REQUEST {
            continue;
        }
        for extensions in elements(values.contents)? {
            for extension in elements(extensions.contents)? {
                let parts = elements(extension.contents)?;
                if parts.first()?.contents != OID_SUBJECT_ALT_NAME {
                    continue;
                }
                let value = parts.last().filter(|v| v.tag == OCTET_STRING)?;
                let (names, _) = element(value.contents)?;
                for name in elements(names.contents)? {
                    match (name.tag, name.contents.len()) {
                        (SAN_DNS, _) => request
                            .dns_names
                            .push(String::from_utf8(name.contents.to_vec()).ok()?),
                        (SAN_IP, 4) => request
                            .ip_addresses
                            .push(IpAddr::from(<[u8; 4]>::try_from(name.contents).ok()?)),
                        (SAN_IP, 16) => request
                            .ip_addresses
                            .push(IpAddr::from(<[u8; 16]>::try_from(name.contents).ok()?)),
                        (SAN_EMAIL | SAN_URI, _) => request.other_names += 1,
                        _ => return None,
                    }
                }
            }
        }
    }
    Some(())
}

/// The DER of the first PEM block of type `label` in `pem` (at most [`MAX_REQUEST_BYTES`]).
pub(crate) fn pem_block(pem: &[u8], label: &str) -> Result<Vec<u8>, CertificateError> {
    if pem.len() > MAX_REQUEST_BYTES {
        return Err(CertificateError::Request(format!(
            "longer than {MAX_REQUEST_BYTES} bytes"
        )));
    }
    let wrong_type = || CertificateError::Request(format!("PEM block type must be {label}"));
    let text = std::str::from_utf8(pem).map_err(|_| wrong_type())?;
    let body = text
        .split_once(&format!("-----BEGIN {label}-----"))
        .and_then(|(_, rest)| rest.split_once(&format!("-----END {label}-----")))
        .map(|(body, _)| body)
        .ok_or_else(wrong_type)?;
    let body: String = body.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| CertificateError::Request("the PEM block is not base64".into()))
}

/// The DER of a PEM `CERTIFICATE REQUEST` block, as `spec.request` carries it.
fn der_of(pem: &[u8]) -> Result<Vec<u8>, CertificateError> {
    pem_block(pem, "CERTIFICATE REQUEST")
}

/// Reads and verifies the PEM request `pem`.
pub fn parse(pem: &[u8]) -> Result<Request, CertificateError> {
    let der = der_of(pem)?;
    let bad = || CertificateError::Request("not a valid certificate request".into());
    let (outer, rest) = element(&der)
        .filter(|(o, _)| o.tag == SEQUENCE)
        .ok_or_else(bad)?;
    if !rest.is_empty() {
        return Err(bad());
    }
    let [info, signed_with, signature] =
        <[Element<'_>; 3]>::try_from(elements(outer.contents).ok_or_else(bad)?)
            .map_err(|_| bad())?;
    let fields = elements(info.contents).ok_or_else(bad)?;
    let (Some(subject), Some(spki)) = (fields.get(1), fields.get(2)) else {
        return Err(bad());
    };
    let (signed_with, _) = algorithm(&signed_with).ok_or_else(bad)?;
    let (key, verify) = public_key(spki, signed_with)?;
    let signature = bits(&signature).ok_or_else(bad)?;
    signature::UnparsedPublicKey::new(verify, &key.raw)
        .verify(info.raw, &signature)
        .map_err(|_| CertificateError::Request("the request's signature does not verify".into()))?;
    let (common_name, organizations) = name_of(subject).ok_or_else(bad)?;
    let mut request = Request {
        common_name: common_name.unwrap_or_default(),
        organizations,
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        other_names: 0,
        key,
    };
    if let Some(attributes) = fields.get(3).filter(|a| a.tag == ATTRIBUTES) {
        alternative_names(attributes, &mut request).ok_or_else(bad)?;
    }
    if request.dns_names.len() + request.ip_addresses.len() + request.other_names > MAX_NAMES {
        return Err(CertificateError::Request(format!(
            "more than {MAX_NAMES} subject alternative names"
        )));
    }
    Ok(request)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A request made by rcgen, as a node would make it.
    pub(crate) fn make(cn: &str, org: &str, sans: &[&str], key: &rcgen::KeyPair) -> String {
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, org);
        params
            .serialize_request(key)
            .expect("request")
            .pem()
            .expect("pem")
    }

    #[test]
    fn reads_subject_names_and_key() {
        let key = rcgen::KeyPair::generate().expect("key");
        let pem = make(
            "system:node:n1",
            "system:nodes",
            &["n1.example", "10.0.0.7"],
            &key,
        );
        let request = parse(pem.as_bytes()).expect("parsed");
        assert_eq!(request.common_name, "system:node:n1");
        assert_eq!(request.organizations, vec!["system:nodes"]);
        assert_eq!(request.dns_names, vec!["n1.example"]);
        assert_eq!(request.ip_addresses, vec![IpAddr::from([10, 0, 0, 7])]);
        use rcgen::PublicKeyData as _;
        assert_eq!(request.key.der_bytes(), key.public_key_raw());
    }

    #[test]
    fn a_tampered_or_foreign_request_is_refused() {
        let key = rcgen::KeyPair::generate().expect("key");
        let pem = make("system:node:n1", "system:nodes", &[], &key);
        let mut der = der_of(pem.as_bytes()).expect("der");
        // Change one byte of the common name: the signature no longer covers it.
        let at = der
            .windows(6)
            .position(|w| w == b"system")
            .expect("the subject");
        der[at] = b'S';
        let tampered = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            base64::engine::general_purpose::STANDARD.encode(&der)
        );
        let err = parse(tampered.as_bytes()).err().expect("refused");
        assert!(err.to_string().contains("signature"), "{err}");
        for bad in [
            "",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
        }
        let huge = "A".repeat(MAX_REQUEST_BYTES + 1);
        assert!(parse(huge.as_bytes()).is_err());
    }
}
