//! Keys at rest and signatures: the master key that seals secrets in the database, and Ed25519 key
//! pairs (agent identities, the JWT signing key). Everything here is `ring`, which rustls already
//! brings, so there is no second crypto library.
//!
//! The master key comes from `master_key` in the config (`AGENTD_MASTER_KEY`: 32 bytes, base64 or
//! hex). Unset, it is read from `<data_dir>/master.key`, which the first start generates. Several
//! nodes sharing one PostgreSQL database must be given the same master key.

use std::path::Path;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

use crate::Error;

/// The file the generated master key is kept in, inside the data directory.
pub const MASTER_KEY_FILE: &str = "master.key";
/// Sealed values start with this, so a later format can be told apart.
const SEALED_PREFIX: &str = "v1:";

/// The key that encrypts secrets at rest (ChaCha20-Poly1305). `Debug` never shows it.
pub struct MasterKey {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

impl MasterKey {
    /// A key from its 32 bytes given as base64 or hex.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let text = text.trim();
        let bytes = decode_hex(text)
            .or_else(|| STANDARD.decode(text).ok())
            .or_else(|| URL_SAFE_NO_PAD.decode(text).ok())
            .filter(|bytes| bytes.len() == 32)
            .ok_or_else(|| {
                Error::Config("master_key must be 32 bytes, as base64 or hex".to_owned())
            })?;
        Self::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes)
            .map_err(|_| Error::Config("master_key must be 32 bytes".to_owned()))?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        })
    }

    /// The configured key, else the one in `data_dir` (generated there on first use, readable by
    /// its owner only).
    pub fn load(configured: Option<&str>, data_dir: &Path) -> Result<Self, Error> {
        if let Some(text) = configured {
            return Self::parse(text);
        }
        let path = data_dir.join(MASTER_KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text).map_err(|_| {
                Error::Config(format!(
                    "{} does not hold a 32-byte base64 key",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                SystemRandom::new()
                    .fill(&mut bytes)
                    .map_err(|_| Error::Config("no system randomness".to_owned()))?;
                std::fs::create_dir_all(data_dir).map_err(|e| {
                    Error::Config(format!("cannot create {}: {e}", data_dir.display()))
                })?;
                write_private(&path, &STANDARD.encode(bytes))?;
                tracing::info!(path = %path.display(), "generated the master key");
                Self::from_bytes(&bytes)
            }
            Err(e) => Err(Error::Config(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// Encrypts `plain`, bound to `context` (such as `agent:<id>`): the sealed text opens only with
    /// the same context, so a sealed value cannot be moved to another row.
    pub fn seal(&self, context: &str, plain: &[u8]) -> Result<String, Error> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| Error::Internal("no system randomness".to_owned()))?;
        let mut data = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut data,
            )
            .map_err(|_| Error::Internal("sealing failed".to_owned()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(format!("{SEALED_PREFIX}{}", STANDARD.encode(out)))
    }

    /// Decrypts what [`seal`](Self::seal) made with the same context.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, Error> {
        let wrong = || {
            Error::Internal(format!(
                "a sealed secret ({context}) does not open with this master key"
            ))
        };
        let bytes = sealed
            .strip_prefix(SEALED_PREFIX)
            .and_then(|b64| STANDARD.decode(b64).ok())
            .filter(|bytes| bytes.len() >= NONCE_LEN + aead::MAX_TAG_LEN)
            .ok_or_else(wrong)?;
        let (nonce, data) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| wrong())?;
        let mut data = data.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut data)
            .map_err(|_| wrong())?;
        Ok(plain.to_vec())
    }
}

/// An Ed25519 key pair, kept as its PKCS#8 document.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    pkcs8: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.public_key_base64())
    }
}

impl SigningKey {
    /// A fresh key pair.
    pub fn generate() -> Result<Self, Error> {
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| Error::Internal("cannot generate an Ed25519 key".to_owned()))?;
        Self::from_pkcs8(document.as_ref())
    }

    /// A key pair from its PKCS#8 document.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, Error> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|_| Error::Internal("not an Ed25519 PKCS#8 key".to_owned()))?;
        Ok(Self {
            pair,
            pkcs8: pkcs8.to_vec(),
        })
    }

    /// The PKCS#8 document, to be sealed with the master key before it is stored.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The 32-byte public key.
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// The public key as standard base64 (how agents and cards show it).
    pub fn public_key_base64(&self) -> String {
        STANDARD.encode(self.public_key())
    }

    /// The 64-byte signature of `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

/// Whether `signature` is `public_key`'s Ed25519 signature of `message`.
pub fn verify_ed25519(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(message, signature)
        .is_ok()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| Error::Config(format!("cannot create {}: {e}", path.display())))?;
    file.write_all(text.as_bytes())
        .map_err(|e| Error::Config(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_context_and_key() {
        let key = MasterKey::parse(&"ab".repeat(32)).unwrap();
        let sealed = key.seal("agent:1", b"secret").unwrap();
        assert_eq!(key.open("agent:1", &sealed).unwrap(), b"secret");
        assert!(key.open("agent:2", &sealed).is_err());
        let other = MasterKey::parse(&STANDARD.encode([7u8; 32])).unwrap();
        assert!(other.open("agent:1", &sealed).is_err());
        assert!(MasterKey::parse("short").is_err());
    }

    #[test]
    fn the_master_key_is_generated_once_into_the_data_dir() {
        let dir = std::env::temp_dir().join(format!("agentd-mk-{}", uuid_like()));
        let first = MasterKey::load(None, &dir).unwrap();
        let sealed = first.seal("x", b"y").unwrap();
        let again = MasterKey::load(None, &dir).unwrap();
        assert_eq!(again.open("x", &sealed).unwrap(), b"y");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn ed25519_signatures_verify_against_the_public_key_only() {
        let key = SigningKey::generate().unwrap();
        let signature = key.sign(b"hello");
        assert!(verify_ed25519(key.public_key(), b"hello", &signature));
        assert!(!verify_ed25519(key.public_key(), b"hellO", &signature));
        let copy = SigningKey::from_pkcs8(key.pkcs8()).unwrap();
        assert_eq!(copy.public_key(), key.public_key());
    }

    fn uuid_like() -> String {
        let mut bytes = [0u8; 8];
        SystemRandom::new().fill(&mut bytes).unwrap();
        agentd_core::hex(&bytes)
    }
}
