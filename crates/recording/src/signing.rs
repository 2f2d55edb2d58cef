//! The gateway's Ed25519 signing key and the public keys that verify checkpoints.
//!
//! The private key is a PKCS#8 v1 PEM file (`-----BEGIN PRIVATE KEY-----`, the
//! form `openssl genpkey -algorithm ed25519` writes), created on first start
//! with mode 0600. A key file that the group or others may read is refused.
//! Public keys are SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`).
//! The key id is the lowercase hex SHA-256 of the raw 32-byte public key.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use portcullis_core::{Secret, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{RecordingConfig, RecordingError, Result};

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), followed by the 32 key bytes.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// An Ed25519 public key that verifies checkpoint signatures.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    raw: [u8; 32],
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.key_id())
    }
}

impl PublicKey {
    /// From the raw 32 bytes.
    pub fn from_raw(raw: [u8; 32]) -> Self {
        Self { raw }
    }

    /// The raw 32 bytes.
    pub fn raw(&self) -> &[u8; 32] {
        &self.raw
    }

    /// The key id: lowercase hex SHA-256 of the raw 32-byte key.
    pub fn key_id(&self) -> String {
        hex::encode(Sha256::digest(self.raw))
    }

    /// SubjectPublicKeyInfo PEM.
    pub fn to_pem(&self) -> String {
        let mut der = Vec::with_capacity(44);
        der.extend_from_slice(&SPKI_PREFIX);
        der.extend_from_slice(&self.raw);
        pem_encode("PUBLIC KEY", &der)
    }

    /// Parses one SubjectPublicKeyInfo PEM block.
    pub fn from_pem(pem: &str) -> Result<Self> {
        let mut keys = Self::all_from_pem(pem)?;
        match (keys.pop(), keys.is_empty()) {
            (Some(k), true) => Ok(k),
            (None, _) => Err(RecordingError::Key("no PUBLIC KEY block".into())),
            (Some(_), false) => Err(RecordingError::Key(
                "more than one PUBLIC KEY block where one was expected".into(),
            )),
        }
    }

    /// Parses every `PUBLIC KEY` block of a PEM text (other blocks are skipped).
    pub fn all_from_pem(pem: &str) -> Result<Vec<Self>> {
        let mut out = Vec::new();
        for der in pem_decode_all(pem, "PUBLIC KEY")? {
            let raw = der
                .strip_prefix(&SPKI_PREFIX[..])
                .and_then(|k| <[u8; 32]>::try_from(k).ok())
                .ok_or_else(|| RecordingError::Key("not an Ed25519 public key".into()))?;
            out.push(Self { raw });
        }
        Ok(out)
    }

    /// Whether `signature` is this key's Ed25519 signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.raw)
            .verify(message, signature)
            .is_ok()
    }
}

/// A public key as kept in the store and in bundles (`public-keys.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyRecord {
    /// Key id (hex SHA-256 of the raw key).
    pub key_id: String,
    /// Always `ed25519`.
    pub algorithm: String,
    /// SubjectPublicKeyInfo PEM.
    pub public_key_pem: String,
    /// When the store first saw the key.
    pub added_at: Timestamp,
}

impl PublicKeyRecord {
    /// The record of `key`, seen now.
    pub fn new(key: &PublicKey) -> Self {
        Self {
            key_id: key.key_id(),
            algorithm: "ed25519".into(),
            public_key_pem: key.to_pem(),
            added_at: Timestamp::now(),
        }
    }

    /// Parses the PEM and checks that the key id is the key's fingerprint.
    pub fn key(&self) -> Result<PublicKey> {
        if self.algorithm != "ed25519" {
            return Err(RecordingError::Key(format!(
                "key {}: unknown algorithm {}",
                self.key_id, self.algorithm
            )));
        }
        let key = PublicKey::from_pem(&self.public_key_pem)?;
        if key.key_id() != self.key_id {
            return Err(RecordingError::Key(format!(
                "key {}: the PEM is the key {}",
                self.key_id,
                key.key_id()
            )));
        }
        Ok(key)
    }
}

/// The gateway's signing key. The private half never prints itself.
pub struct SigningKey {
    pair: Secret<Ed25519KeyPair>,
    public: PublicKey,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.public.key_id())
            .field("path", &self.path)
            .finish()
    }
}

impl SigningKey {
    /// A new random key held in memory only (tests, examples).
    pub fn generate() -> Result<Self> {
        let pair = Ed25519KeyPair::generate()
            .map_err(|_| RecordingError::Key("key generation failed".into()))?;
        Ok(Self::from_pair(pair, None))
    }

    fn from_pair(pair: Ed25519KeyPair, path: Option<PathBuf>) -> Self {
        let mut raw = [0u8; 32];
        let bytes = pair.public_key().as_ref();
        if bytes.len() == 32 {
            raw.copy_from_slice(bytes);
        }
        Self {
            pair: Secret::new(pair),
            public: PublicKey { raw },
            path,
        }
    }

    /// Loads the key at `path`, or creates it (mode 0600, parent directories
    /// included) if the file does not exist. Refuses a key file that the group or
    /// others may read or write.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        match Self::load(path) {
            Err(RecordingError::Key(m)) if m.starts_with(NOT_FOUND) => Self::create(path),
            other => other,
        }
    }

    /// Loads an existing key file (checked for mode as in [`SigningKey::load_or_create`]).
    pub fn load(path: &Path) -> Result<Self> {
        let shown = path.display();
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RecordingError::Key(format!("{NOT_FOUND}: {shown}")));
            }
            Err(e) => return Err(RecordingError::Key(format!("{shown}: {e}"))),
        };
        check_mode(&file, path)?;
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(|e| RecordingError::Key(format!("{shown}: {e}")))?;
        let ders = pem_decode_all(&text, "PRIVATE KEY")?;
        let der = match ders.as_slice() {
            [one] => one,
            _ => {
                return Err(RecordingError::Key(format!(
                    "{shown}: expected exactly one PRIVATE KEY block"
                )));
            }
        };
        let pair = Ed25519KeyPair::from_pkcs8(der)
            .map_err(|e| RecordingError::Key(format!("{shown}: not an Ed25519 key: {e}")))?;
        Ok(Self::from_pair(pair, Some(path.to_path_buf())))
    }

    fn create(path: &Path) -> Result<Self> {
        let shown = path.display();
        let key_err = |e: std::io::Error| RecordingError::Key(format!("{shown}: {e}"));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(key_err)?;
        }
        let pair = Ed25519KeyPair::generate()
            .map_err(|_| RecordingError::Key("key generation failed".into()))?;
        let der = pair
            .to_pkcs8v1()
            .map_err(|_| RecordingError::Key("key encoding failed".into()))?;
        let pem = pem_encode("PRIVATE KEY", der.as_ref());
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = match options.open(path) {
            Ok(f) => f,
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Self::load(path),
            Err(e) => return Err(key_err(e)),
        };
        file.write_all(pem.as_bytes()).map_err(key_err)?;
        file.sync_all().map_err(key_err)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(key_err)?;
        }
        tracing::info!(path = %shown, "created a new checkpoint signing key");
        Ok(Self::from_pair(pair, Some(path.to_path_buf())))
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The key id (see [`PublicKey::key_id`]).
    pub fn key_id(&self) -> String {
        self.public.key_id()
    }

    /// Where the key was loaded from, if from a file.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The Ed25519 signature of `message` (64 bytes).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.expose().sign(message).as_ref().to_vec()
    }
}

const NOT_FOUND: &str = "no key file";

#[cfg(unix)]
fn check_mode(file: &File, path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file
        .metadata()
        .map_err(|e| RecordingError::Key(format!("{}: {e}", path.display())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(RecordingError::Key(format!(
            "{}: mode {:03o} lets the group or others read or write the private key; \
             run chmod 600 on it",
            path.display(),
            mode & 0o777
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_file: &File, _path: &Path) -> Result<()> {
    Ok(())
}

/// The signing key path a configuration uses: `signing_key`, or
/// `signing-key.pem` inside the store directory.
pub fn signing_key_path(config: &RecordingConfig) -> PathBuf {
    config
        .signing_key
        .clone()
        .unwrap_or_else(|| config.path.join("signing-key.pem"))
}

/// The key id and public key PEM of the gateway's signing key (created if missing),
/// for `portcullis key show`.
pub fn public_key_info(config: &RecordingConfig) -> Result<(String, String)> {
    let key = SigningKey::load_or_create(&signing_key_path(config))?;
    Ok((key.key_id(), key.public_key().to_pem()))
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    let mut rest = b64.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn pem_decode_all(text: &str, label: &str) -> Result<Vec<Vec<u8>>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut body: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if line == begin {
            body = Some(String::new());
        } else if line == end {
            let b = body
                .take()
                .ok_or_else(|| RecordingError::Key(format!("{end} without {begin}")))?;
            let der = STANDARD
                .decode(b.as_bytes())
                .map_err(|e| RecordingError::Key(format!("bad base64 in {label}: {e}")))?;
            out.push(der);
        } else if let Some(b) = body.as_mut() {
            b.push_str(line);
        }
    }
    if body.is_some() {
        return Err(RecordingError::Key(format!("{begin} without {end}")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_private_and_reloads_to_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/signing-key.pem");
        let a = SigningKey::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let b = SigningKey::load_or_create(&path).unwrap();
        assert_eq!(a.key_id(), b.key_id());
        assert_eq!(a.key_id().len(), 64);
        let sig = a.sign(b"hello");
        assert!(b.public_key().verify(b"hello", &sig));
        assert!(!b.public_key().verify(b"hellO", &sig));
        assert!(!format!("{a:?}").contains("PRIVATE"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    }

    #[cfg(unix)]
    #[test]
    fn group_readable_key_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        SigningKey::load_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = SigningKey::load_or_create(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn public_key_pem_round_trips_and_garbage_is_refused() {
        let k = SigningKey::generate().unwrap();
        let pem = k.public_key().to_pem();
        assert_eq!(&PublicKey::from_pem(&pem).unwrap(), k.public_key());
        let rec = PublicKeyRecord::new(k.public_key());
        assert_eq!(rec.key().unwrap(), *k.public_key());
        let mut bad = rec.clone();
        bad.key_id = "00".repeat(32);
        assert!(bad.key().is_err());
        assert!(PublicKey::from_pem("nothing").is_err());
        let two = format!("{pem}{pem}");
        assert_eq!(PublicKey::all_from_pem(&two).unwrap().len(), 2);
        assert!(PublicKey::from_pem(&two).is_err());
    }
}
