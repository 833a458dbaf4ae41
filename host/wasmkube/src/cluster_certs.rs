//! The control-plane material every control-plane host shares (kubeadm's `--upload-certs`): the files of `pki/` encrypted with AES-256-GCM under a key printed once, kept in the Secret `kube-system/wasmkube-certs` for two hours.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};
use serde_json::{Value, json};

/// Where the Secret is kept (kubeadm's `kube-system/kubeadm-certs`).
pub const NAMESPACE: &str = "kube-system";
pub const SECRET_NAME: &str = "wasmkube-certs";
/// The Role (and RoleBinding) that lets bootstrap tokens get that one Secret, as kubeadm's
/// `kubeadm:kubeadm-certs`.
pub const ROLE: &str = "wasmkube:wasmkube-certs";
/// The annotation that says when the Secret stops being accepted (RFC 3339).
const EXPIRES: &str = "wasmkube.io/certificates-expire";
/// How long the uploaded material may be used to join (kubeadm's two hours).
pub const TTL: chrono::TimeDelta = chrono::TimeDelta::hours(2);

/// The files of `pki/` a second control-plane host needs, and nothing else: the cluster CA and
/// its key (it signs the host's serving certificate, node certificates and the apiserver's
/// client certificate for node agents), the ServiceAccount signing key pair and the admin
/// token. No name outside this list is ever written.
pub const SHARED_FILES: &[&str] = &["ca.crt", "ca.key", "sa.key", "sa.pub", "token"];
/// The largest file accepted from the Secret (a PEM key or certificate is a few KiB).
const MAX_FILE_BYTES: usize = 64 * 1024;
/// The key's length: AES-256.
const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error(
        "--certificate-key: not 64 hexadecimal digits (a 32-byte key, as `wasmkube token create --upload-certs` prints it)"
    )]
    BadKey,
    #[error(
        "the certificate key does not decrypt {0} of the Secret {NAMESPACE}/{SECRET_NAME}: a wrong --certificate-key, or the certificates were uploaded again with another key"
    )]
    WrongKey(String),
    #[error(
        "the Secret {NAMESPACE}/{SECRET_NAME} expired at {0}: run `wasmkube token create --upload-certs` on a control-plane host for a new key"
    )]
    Expired(String),
    #[error(
        "the Secret {NAMESPACE}/{SECRET_NAME} holds {0:?}, not one of the files a control-plane host shares"
    )]
    UnknownFile(String),
    #[error("the Secret {NAMESPACE}/{SECRET_NAME} lacks {0}")]
    MissingFile(String),
    #[error("the Secret {NAMESPACE}/{SECRET_NAME}: {0}")]
    Malformed(String),
    #[error("reading or writing {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the system's random number generator failed")]
    Random,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CertsError + '_ {
    move |source| CertsError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The AES-256-GCM key the material is encrypted with, shown as 64 hexadecimal digits.
pub struct CertificateKey([u8; KEY_LEN]);

impl CertificateKey {
    /// A new random key.
    pub fn generate() -> Result<CertificateKey, CertsError> {
        let mut key = [0; KEY_LEN];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| CertsError::Random)?;
        Ok(CertificateKey(key))
    }

    /// The key of `hex` (kubeadm's `--certificate-key`).
    pub fn parse(hex: &str) -> Result<CertificateKey, CertsError> {
        let hex = hex.trim().as_bytes();
        if hex.len() != 2 * KEY_LEN {
            return Err(CertsError::BadKey);
        }
        let mut key = [0; KEY_LEN];
        for (byte, pair) in key.iter_mut().zip(hex.chunks_exact(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| CertsError::BadKey)?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| CertsError::BadKey)?;
        }
        Ok(CertificateKey(key))
    }

    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn aead(&self) -> Result<LessSafeKey, CertsError> {
        let key = UnboundKey::new(&AES_256_GCM, &self.0).map_err(|_| CertsError::BadKey)?;
        Ok(LessSafeKey::new(key))
    }

    /// `contents` sealed: a random nonce, then the ciphertext and tag. The file's name is the
    /// associated data, so that one entry cannot stand in for another.
    fn seal(&self, name: &str, contents: &[u8]) -> Result<Vec<u8>, CertsError> {
        let mut nonce = [0; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| CertsError::Random)?;
        let mut sealed = contents.to_vec();
        self.aead()?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name),
                &mut sealed,
            )
            .map_err(|_| CertsError::Random)?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, CertsError> {
        let (nonce, ciphertext) = sealed
            .split_at_checked(NONCE_LEN)
            .ok_or_else(|| CertsError::WrongKey(name.to_string()))?;
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| CertsError::WrongKey(name.to_string()))?;
        let mut plain = ciphertext.to_vec();
        let opened = self
            .aead()?
            .open_in_place(nonce, Aad::from(name), &mut plain)
            .map_err(|_| CertsError::WrongKey(name.to_string()))?;
        Ok(opened.to_vec())
    }
}

/// The shared files, by name.
pub struct Material(BTreeMap<&'static str, Vec<u8>>);

impl Material {
    /// The shared files of the `pki` directory of a control-plane host; each must be there.
    pub fn read(pki: &Path) -> Result<Material, CertsError> {
        let mut files = BTreeMap::new();
        for name in SHARED_FILES {
            let path = pki.join(name);
            files.insert(*name, std::fs::read(&path).map_err(io(&path))?);
        }
        Ok(Material(files))
    }

    /// The cluster CA certificate (PEM).
    pub fn ca_pem(&self) -> String {
        String::from_utf8_lossy(self.0.get("ca.crt").map_or(&[][..], |c| c)).into_owned()
    }

    /// The Secret holding the files sealed with `key`, accepted until `expires`, owned by
    /// `owner` (an ownerReference: the bootstrap token's Secret, so that it goes with it).
    pub fn secret(
        &self,
        key: &CertificateKey,
        expires: chrono::DateTime<chrono::Utc>,
        owner: Option<Value>,
    ) -> Result<Value, CertsError> {
        let mut data = serde_json::Map::new();
        for (name, contents) in &self.0 {
            let sealed = key.seal(name, contents)?;
            data.insert(
                name.to_string(),
                json!(base64::engine::general_purpose::STANDARD.encode(sealed)),
            );
        }
        let expires = expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut secret = json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": SECRET_NAME, "namespace": NAMESPACE,
                         "annotations": {EXPIRES: expires}},
            "data": data,
        });
        if let Some(owner) = owner {
            secret["metadata"]["ownerReferences"] = json!([owner]);
        }
        Ok(secret)
    }

    /// The files of `secret` opened with `key`, if it has not expired at `now`. Every file is
    /// opened before any is returned: a wrong key gets nothing.
    pub fn open(
        secret: &Value,
        key: &CertificateKey,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Material, CertsError> {
        let expires = secret["metadata"]["annotations"][EXPIRES]
            .as_str()
            .ok_or_else(|| CertsError::Malformed(format!("no {EXPIRES} annotation")))?;
        let at = chrono::DateTime::parse_from_rfc3339(expires)
            .map_err(|e| CertsError::Malformed(format!("{EXPIRES}: {e}")))?;
        if at <= now {
            return Err(CertsError::Expired(expires.to_string()));
        }
        let data = secret["data"]
            .as_object()
            .ok_or_else(|| CertsError::Malformed("no data".into()))?;
        if let Some(unknown) = data.keys().find(|k| !SHARED_FILES.contains(&k.as_str())) {
            return Err(CertsError::UnknownFile(unknown.clone()));
        }
        let mut files = BTreeMap::new();
        for name in SHARED_FILES {
            let encoded = data
                .get(*name)
                .and_then(Value::as_str)
                .ok_or_else(|| CertsError::MissingFile(name.to_string()))?;
            let sealed = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| CertsError::Malformed(format!("{name}: {e}")))?;
            if sealed.len() > MAX_FILE_BYTES {
                return Err(CertsError::Malformed(format!(
                    "{name} is larger than {MAX_FILE_BYTES} bytes"
                )));
            }
            files.insert(*name, key.open(name, &sealed)?);
        }
        Ok(Material(files))
    }

    /// Writes the files into the new directory `pki` (private, each file readable by its owner
    /// only): into a directory beside it first, renamed to `pki` once all are written, so that a
    /// crash leaves no `pki` with some files only (a start would make the missing ones anew).
    pub fn write(&self, pki: &Path) -> Result<(), CertsError> {
        let mut partial = pki.as_os_str().to_owned();
        partial.push(".partial");
        let partial = std::path::PathBuf::from(partial);
        if partial.exists() {
            std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
        }
        wasmkube_apiserver::tls::create_private_dir(&partial).map_err(io(&partial))?;
        for (name, contents) in &self.0 {
            let path = partial.join(name);
            wasmkube_apiserver::tls::write_private(&path, contents).map_err(io(&path))?;
        }
        std::fs::rename(&partial, pki).map_err(io(pki))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn material() -> Material {
        Material(
            SHARED_FILES
                .iter()
                .map(|name| (*name, format!("contents of {name}\n").into_bytes()))
                .collect(),
        )
    }

    fn later() -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + TTL
    }

    #[test]
    fn the_material_comes_back_with_its_key_only() {
        let key = CertificateKey::generate().expect("a key");
        let secret = material().secret(&key, later(), None).expect("sealed");
        let text = secret.to_string();
        assert!(!text.contains("contents of"), "not encrypted: {text}");
        let again = CertificateKey::parse(&key.hex()).expect("its hex");
        let opened = Material::open(&secret, &again, chrono::Utc::now()).expect("opened");
        assert_eq!(opened.0, material().0);
        assert_eq!(opened.ca_pem(), "contents of ca.crt\n");

        let wrong = CertificateKey::generate().expect("another key");
        let err = Material::open(&secret, &wrong, chrono::Utc::now())
            .err()
            .expect("refused");
        assert!(matches!(err, CertsError::WrongKey(_)), "{err}");
        assert!(err.to_string().contains("wrong --certificate-key"), "{err}");
    }

    #[test]
    fn a_key_is_64_hexadecimal_digits() {
        assert_eq!(CertificateKey::generate().expect("a key").hex().len(), 64);
        for bad in ["", "abc", &"g".repeat(64), &"a".repeat(63), &"é".repeat(32)] {
            assert!(
                matches!(CertificateKey::parse(bad), Err(CertsError::BadKey)),
                "{bad}"
            );
        }
        assert!(CertificateKey::parse(&"AB".repeat(32)).is_ok());
    }

    #[test]
    fn expired_swapped_unknown_and_missing_entries_are_refused() {
        let key = CertificateKey::generate().expect("a key");
        let now = chrono::Utc::now();
        let secret = material().secret(&key, now, None).expect("sealed");
        let err = Material::open(&secret, &key, now).err().expect("expired");
        assert!(matches!(err, CertsError::Expired(_)), "{err}");

        let secret = material().secret(&key, later(), None).expect("sealed");
        // One entry in another's place: the name is authenticated too.
        let mut swapped = secret.clone();
        swapped["data"]["ca.key"] = secret["data"]["ca.crt"].clone();
        let err = Material::open(&swapped, &key, now).err().expect("refused");
        assert!(
            matches!(err, CertsError::WrongKey(ref f) if f == "ca.key"),
            "{err}"
        );

        let mut unknown = secret.clone();
        unknown["data"]["../../etc/passwd"] = secret["data"]["ca.crt"].clone();
        let err = Material::open(&unknown, &key, now).err().expect("refused");
        assert!(matches!(err, CertsError::UnknownFile(_)), "{err}");

        let mut missing = secret.clone();
        missing["data"]
            .as_object_mut()
            .expect("data")
            .remove("sa.key");
        let err = Material::open(&missing, &key, now).err().expect("refused");
        assert!(matches!(err, CertsError::MissingFile(_)), "{err}");

        let mut short = secret;
        short["data"]["token"] = json!("AAAA");
        let err = Material::open(&short, &key, now).err().expect("refused");
        assert!(matches!(err, CertsError::WrongKey(_)), "{err}");
    }

    #[test]
    fn the_files_are_written_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = dir.path().join("pki");
        material().write(&pki).expect("written");
        let mode = |p: &Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode(&pki), 0o700);
        for name in SHARED_FILES {
            assert_eq!(mode(&pki.join(name)), 0o600, "{name}");
        }
        assert_eq!(Material::read(&pki).expect("read back").0, material().0);
        assert!(!dir.path().join("pki.partial").exists());
    }
}
