//! Checking what a registry sends against its descriptor: size and sha256 digest.

use sha2::{Digest as _, Sha256};

use super::RegistryError;
use crate::image::oci::Descriptor;

/// Checks bytes against a descriptor's size and sha256 digest as they arrive.
pub struct Check {
    digest: String,
    expected: u64,
    size: u64,
    hasher: Sha256,
}

impl Check {
    pub fn new(descriptor: &Descriptor) -> Result<Check, RegistryError> {
        if !descriptor.digest.starts_with("sha256:") {
            return Err(RegistryError::Algorithm {
                digest: descriptor.digest.clone(),
            });
        }
        Ok(Check {
            digest: descriptor.digest.clone(),
            expected: descriptor.size,
            size: 0,
            hasher: Sha256::new(),
        })
    }

    pub fn update(&mut self, data: &[u8]) -> Result<(), RegistryError> {
        self.size += data.len() as u64;
        if self.size > self.expected {
            return Err(RegistryError::TooLong {
                digest: self.digest.clone(),
                expected: self.expected,
            });
        }
        self.hasher.update(data);
        Ok(())
    }

    pub fn finish(self) -> Result<(), RegistryError> {
        if self.size != self.expected {
            return Err(RegistryError::Size {
                digest: self.digest,
                expected: self.expected,
                size: self.size,
            });
        }
        let actual = format!("sha256:{:x}", self.hasher.finalize());
        if actual != self.digest {
            return Err(RegistryError::Digest {
                digest: self.digest,
                actual,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::oci;

    fn blob(data: &[u8]) -> Descriptor {
        Descriptor::new(oci::LAYER_GZIP, oci::sha256(data), data.len() as u64)
    }

    #[test]
    fn checks_accept_the_right_bytes_in_any_chunks() {
        let mut check = Check::new(&blob(b"hello world")).expect("sha256");
        check.update(b"hello").expect("within the size");
        check.update(b" world").expect("within the size");
        check.finish().expect("the right bytes");
    }

    #[test]
    fn checks_refuse_other_bytes_short_and_long_ones() {
        let mut wrong = blob(b"hello world");
        wrong.digest = oci::sha256(b"hello there");
        let mut check = Check::new(&wrong).expect("sha256");
        check.update(b"hello world").expect("within the size");
        assert!(matches!(
            check.finish(),
            Err(RegistryError::Digest { actual, .. }) if actual == oci::sha256(b"hello world")
        ));

        let mut check = Check::new(&blob(b"hello world")).expect("sha256");
        check.update(b"hello").expect("within the size");
        assert!(matches!(
            check.finish(),
            Err(RegistryError::Size {
                size: 5,
                expected: 11,
                ..
            })
        ));

        let mut check = Check::new(&blob(b"hello")).expect("sha256");
        assert!(matches!(
            check.update(b"hello world"),
            Err(RegistryError::TooLong { expected: 5, .. })
        ));

        let mut other = blob(b"x");
        other.digest = "sha512:00".into();
        assert!(matches!(
            Check::new(&other),
            Err(RegistryError::Algorithm { .. })
        ));
    }
}
