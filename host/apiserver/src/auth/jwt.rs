//! Compact JSON Web Tokens signed with ES256 (ECDSA P-256, SHA-256): signing, and verification that accepts nothing else.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
    UnparsedPublicKey,
};
use serde_json::{Value, json};

/// The longest token read: upstream's tokens are about 1 KiB; anything far larger is refused
/// before it is decoded.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// The only algorithm signed and accepted.
const ALG: &str = "ES256";
/// An ES256 signature: r and s, 32 bytes each.
const SIGNATURE_LEN: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("the token is longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    #[error("the token is not three base64url parts")]
    Malformed,
    #[error("the token's header is not an ES256 JWT header of this issuer")]
    Header,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the signing key is unusable: {0}")]
    Key(String),
}

/// An ES256 key pair and its key id (upstream's: base64url of the SHA-256 of the public key's
/// SubjectPublicKeyInfo).
pub struct Signer {
    key: EcdsaKeyPair,
    kid: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("kid", &self.kid).finish()
    }
}

impl Signer {
    /// The signer of a PKCS#8 P-256 key; `spki` is its public key's DER, for the key id.
    pub fn new(pkcs8: &[u8], spki: &[u8]) -> Result<Signer, JwtError> {
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
            .map_err(|e| JwtError::Key(e.to_string()))?;
        let kid = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, spki));
        Ok(Signer { key, kid, rng })
    }

    /// `claims` signed: `header.payload.signature`.
    pub fn sign(&self, claims: &Value) -> Result<String, JwtError> {
        let header = json!({"alg": ALG, "kid": self.kid});
        let mut token = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&self.rng, token.as_bytes())
            .map_err(|_| JwtError::Key("signing failed".into()))?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature.as_ref()));
        Ok(token)
    }

    /// The claims of `token` if this key signed it with ES256; its header may carry no other
    /// algorithm (`none`, HS256 with the public key as secret: refused), and a key id, if
    /// any, must be this key's. The claims are not checked here (see `token::Claims`).
    pub fn verify(&self, token: &str) -> Result<Value, JwtError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::TooLong);
        }
        let mut parts = token.split('.');
        let (Some(header_part), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let decode = |part: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| JwtError::Malformed)
        };
        let header: Value =
            serde_json::from_slice(&decode(header_part)?).map_err(|_| JwtError::Header)?;
        let kid_ok = header
            .get("kid")
            .is_none_or(|kid| kid.as_str() == Some(self.kid.as_str()));
        let typ_ok = header.get("typ").is_none_or(|t| t == "JWT");
        if header["alg"] != ALG || !kid_ok || !typ_ok || header.get("crit").is_some() {
            return Err(JwtError::Header);
        }
        let signature = decode(signature)?;
        if signature.len() != SIGNATURE_LEN {
            return Err(JwtError::Signature);
        }
        let signed = &token[..header_part.len() + 1 + payload.len()];
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.key.public_key().as_ref())
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| JwtError::Signature)?;
        serde_json::from_slice(&decode(payload)?).map_err(|_| JwtError::Malformed)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn signer() -> Signer {
        let key = rcgen::KeyPair::generate().expect("key");
        Signer::new(&key.serialize_der(), &key.public_key_der()).expect("signer")
    }

    fn forge(header: &Value, claims: &Value, signature: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            URL_SAFE_NO_PAD.encode(signature)
        )
    }

    #[test]
    fn signs_and_verifies() {
        let s = signer();
        let claims = json!({"sub": "system:serviceaccount:a:b", "exp": 5});
        let token = s.sign(&claims).expect("signed");
        assert_eq!(s.verify(&token), Ok(claims));
    }

    #[test]
    fn refuses_tampering_other_keys_and_other_algorithms() {
        let s = signer();
        let token = s.sign(&json!({"sub": "a"})).expect("signed");
        let parts: Vec<&str> = token.split('.').collect();
        let other_claims = URL_SAFE_NO_PAD.encode(json!({"sub": "b"}).to_string());
        let tampered = format!("{}.{other_claims}.{}", parts[0], parts[2]);
        assert_eq!(s.verify(&tampered), Err(JwtError::Signature));
        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).expect("b64");
        sig[10] ^= 1;
        let flipped = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(&sig));
        assert_eq!(s.verify(&flipped), Err(JwtError::Signature));
        let other = signer();
        assert_eq!(other.verify(&token), Err(JwtError::Header), "another kid");
        let other_token = other.sign(&json!({"sub": "a"})).expect("signed");
        let no_kid = forge(
            &json!({"alg": "ES256"}),
            &json!({"sub": "a"}),
            &URL_SAFE_NO_PAD
                .decode(other_token.rsplit('.').next().expect("sig"))
                .expect("b64"),
        );
        assert_eq!(s.verify(&no_kid), Err(JwtError::Signature));
        for header in [
            json!({"alg": "none"}),
            json!({"alg": "HS256"}),
            json!({"alg": "es256"}),
            json!({"alg": "ES256", "crit": ["exp"]}),
        ] {
            assert_eq!(
                s.verify(&forge(&header, &json!({"sub": "a"}), &[])),
                Err(JwtError::Header)
            );
        }
        let unsigned = format!("{}.{}.", parts[0], parts[1]);
        assert_eq!(s.verify(&unsigned), Err(JwtError::Signature));
    }

    #[test]
    fn refuses_malformed_and_oversized_tokens() {
        let s = signer();
        for bad in ["", "a", "a.b", "a.b.c.d", "!!.??.**"] {
            assert!(s.verify(bad).is_err(), "{bad}");
        }
        let huge = format!("{}.e30.AA", "e".repeat(MAX_TOKEN_LEN));
        assert_eq!(s.verify(&huge), Err(JwtError::TooLong));
    }
}
