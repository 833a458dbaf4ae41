//! The `pod-template-hash`: FNV-32a of a pod template, encoded as Kubernetes' `ComputeHash` does.
//!
//! Difference from Kubernetes: Kubernetes hashes a `spew` dump of the Go struct; this hashes the
//! template's JSON serialization (fields in `k8s-openapi` order, maps sorted by key). The hash is
//! stable, changes whenever the template changes, and uses the same FNV-32a, collision-count
//! suffix and safe encoding, but its value differs from the one Kubernetes computes for the same
//! template.

use k8s_openapi::api::core::v1::PodTemplateSpec;

use crate::error::Error;

/// The label carrying the hash on ReplicaSets and their pods.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// The alphabet of `k8s.io/apimachinery/pkg/util/rand.SafeEncodeString`: no vowels, no
/// look-alike characters.
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// 32-bit FNV-1a.
pub fn fnv32a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |hash, b| {
        (hash ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// `SafeEncodeString`: each byte of `s` mapped onto [`ALPHANUMS`].
fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| char::from(ALPHANUMS[usize::from(b) % ALPHANUMS.len()]))
        .collect()
}

/// The hash of `template`, with the collision count (as in a Deployment's
/// `status.collisionCount`) appended to the hashed bytes as little-endian `u32` when set.
pub fn pod_template_hash(
    template: &PodTemplateSpec,
    collision_count: Option<i32>,
) -> Result<String, Error> {
    let mut bytes = serde_json::to_vec(template).map_err(|source| Error::Encode {
        what: "pod template".to_string(),
        source,
    })?;
    if let Some(count) = collision_count {
        bytes.extend_from_slice(&count.to_le_bytes());
    }
    Ok(safe_encode(&fnv32a(&bytes).to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn fnv32a_matches_reference_vectors() {
        assert_eq!(fnv32a(b""), 0x811c9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c292c);
        assert_eq!(fnv32a(b"foobar"), 0xbf9cf968);
    }

    #[test]
    fn safe_encoding_maps_digits_like_kubernetes() {
        // '0' is 48: 48 % 27 = 21 -> '4'; '9' is 57: 57 % 27 = 3 -> 'f'.
        assert_eq!(safe_encode("09"), "4f");
    }

    #[test]
    fn hash_changes_with_template_and_collision_count() {
        let labels = |v: &str| BTreeMap::from([("app".to_string(), v.to_string())]);
        let template = |v: &str| PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels(v)),
                ..Default::default()
            }),
            spec: None,
        };
        let a = pod_template_hash(&template("a"), None).unwrap();
        assert_eq!(a, pod_template_hash(&template("a"), None).unwrap());
        assert_ne!(a, pod_template_hash(&template("b"), None).unwrap());
        assert_ne!(a, pod_template_hash(&template("a"), Some(1)).unwrap());
        assert!(a.bytes().all(|b| ALPHANUMS.contains(&b)));
    }
}
