//! Encryption at rest: envelope encryption with AES-256-GCM (ring) and keyed search tokens.
//!
//! - A **master key** (32 bytes, from configuration or a key file, never from the database)
//!   wraps each tenant's data keys. A wrapped key is bound to its tenant and version as
//!   associated data, so a wrapped key copied to another tenant or version does not unwrap.
//! - A **data key** has a version; every sealed value starts with a format byte and that
//!   version, so values sealed by older versions stay readable after a rotation and a
//!   re-encryption pass can find them.
//! - Every sealed value is bound to its row by associated data ([`Binding`]: tenant,
//!   conversation, row id and field), so a ciphertext copied into another row, field or tenant
//!   fails to open instead of leaking. Tampering fails the same way: [`CryptoError::Corrupt`].
//! - A **search key** turns normalised words into HMAC-SHA256 tokens (a blind index): equal
//!   words give equal tokens for one tenant, and nobody without the key can invert them.
//!
//! Layout of a sealed value: `1` (format) | key version (u32, big endian) | nonce (12 bytes) |
//! ciphertext and tag.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// Length of every key: 256 bits.
pub const KEY_LEN: usize = 32;
const FORMAT: u8 = 1;
const HEADER_LEN: usize = 1 + 4 + NONCE_LEN;
/// Bytes of a search token (a truncated HMAC-SHA256: 128 bits).
pub const TOKEN_LEN: usize = 16;

/// What can go wrong opening or unwrapping.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The value is not what was sealed for this row: tampered, truncated, copied from
    /// elsewhere, or sealed with another key.
    #[error("encrypted data is corrupt or does not belong here")]
    Corrupt,
    /// Key material of the wrong length or encoding.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// The system's random source failed.
    #[error("no secure random numbers available")]
    Random,
}

/// Fresh key material from the system's secure random source.
pub fn generate_key() -> Result<[u8; KEY_LEN], CryptoError> {
    let mut key = [0_u8; KEY_LEN];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| CryptoError::Random)?;
    Ok(key)
}

fn aead_key(material: &[u8]) -> Result<LessSafeKey, CryptoError> {
    if material.len() != KEY_LEN {
        return Err(CryptoError::InvalidKey(format!(
            "expected {KEY_LEN} bytes, got {}",
            material.len()
        )));
    }
    let key = UnboundKey::new(&AES_256_GCM, material)
        .map_err(|_| CryptoError::InvalidKey("rejected by AES-256-GCM".to_owned()))?;
    Ok(LessSafeKey::new(key))
}

fn seal_with(
    key: &LessSafeKey,
    version: u32,
    associated: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut nonce = [0_u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| CryptoError::Random)?;
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + AES_256_GCM.tag_len());
    out.push(FORMAT);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&nonce);
    let mut body = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(associated),
        &mut body,
    )
    .map_err(|_| CryptoError::Corrupt)?;
    out.extend_from_slice(&body);
    Ok(out)
}

fn open_with(key: &LessSafeKey, associated: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < HEADER_LEN + AES_256_GCM.tag_len() || sealed[0] != FORMAT {
        return Err(CryptoError::Corrupt);
    }
    let nonce = Nonce::try_assume_unique_for_key(&sealed[5..HEADER_LEN])
        .map_err(|_| CryptoError::Corrupt)?;
    let mut body = sealed[HEADER_LEN..].to_vec();
    let plaintext = key
        .open_in_place(nonce, Aad::from(associated), &mut body)
        .map_err(|_| CryptoError::Corrupt)?;
    let length = plaintext.len();
    body.truncate(length);
    Ok(body)
}

/// Whether `value` has the layout of a sealed value (its first byte is the format byte), as
/// opposed to an encoded protobuf message, whose first byte is never 1.
pub fn is_sealed(value: &[u8]) -> bool {
    value.first() == Some(&FORMAT)
}

/// The key version a sealed value names, without opening it.
pub fn key_version(sealed: &[u8]) -> Result<u32, CryptoError> {
    match sealed {
        [FORMAT, a, b, c, d, ..] if sealed.len() >= HEADER_LEN => {
            Ok(u32::from_be_bytes([*a, *b, *c, *d]))
        }
        _ => Err(CryptoError::Corrupt),
    }
}

/// Associated data that binds a sealed value to its place: each part length-prefixed, so no
/// two different places give the same bytes.
#[derive(Debug, Clone, Default)]
pub struct Binding(Vec<u8>);

impl Binding {
    /// Starts a binding with its purpose, for example `"message.body"`.
    pub fn new(purpose: &str) -> Self {
        Self::default().with(purpose.as_bytes())
    }

    /// Adds one part (a tenant id, a conversation id, a row id, ...).
    #[must_use]
    pub fn with(mut self, part: &[u8]) -> Self {
        let length = u32::try_from(part.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&length.to_be_bytes());
        self.0.extend_from_slice(part);
        self
    }

    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A keyless integrity check of `data` in the place `binding` names: a truncated
/// HMAC-SHA256 under a fixed, public key. It detects corruption, truncation and values moved
/// between places, but not a deliberate forgery: it is what content stored without encryption
/// at rest (development) is checked with, where a data key would seal it otherwise.
pub fn checksum(binding: &Binding, data: &[u8]) -> [u8; TOKEN_LEN] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"messaging.plain-integrity.v1");
    let mut context = hmac::Context::with_key(&key);
    context.update(binding.bytes());
    context.update(data);
    let tag = context.sign();
    let mut out = [0_u8; TOKEN_LEN];
    out.copy_from_slice(&tag.as_ref()[..TOKEN_LEN]);
    out
}

/// Bytes a [`DataKey::seal`] adds to its plaintext: format, key version, nonce and tag.
pub const SEAL_OVERHEAD: usize = HEADER_LEN + 16;

/// The master key: wraps and unwraps data keys.
pub struct MasterKey(LessSafeKey);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("MasterKey([redacted])")
    }
}

impl MasterKey {
    /// A master key from its 32 raw bytes.
    pub fn from_bytes(material: &[u8]) -> Result<Self, CryptoError> {
        aead_key(material).map(Self)
    }

    /// A master key from standard base64 (as in configuration or a key file; surrounding
    /// whitespace is ignored).
    pub fn from_base64(encoded: &str) -> Result<Self, CryptoError> {
        use base64::Engine as _;
        let material = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| CryptoError::InvalidKey("not base64".to_owned()))?;
        Self::from_bytes(&material)
    }

    /// Wraps `material`, the data key `version` of `tenant` (`kind` tells data keys from
    /// search keys).
    pub fn wrap(
        &self,
        tenant: &str,
        kind: &str,
        version: u32,
        material: &[u8; KEY_LEN],
    ) -> Result<Vec<u8>, CryptoError> {
        seal_with(
            &self.0,
            0,
            Self::binding(tenant, kind, version).bytes(),
            material,
        )
    }

    /// Unwraps what [`MasterKey::wrap`] made for the same tenant, kind and version; another
    /// master key, tenant, kind or version gives [`CryptoError::Corrupt`].
    pub fn unwrap(
        &self,
        tenant: &str,
        kind: &str,
        version: u32,
        wrapped: &[u8],
    ) -> Result<[u8; KEY_LEN], CryptoError> {
        let material = open_with(
            &self.0,
            Self::binding(tenant, kind, version).bytes(),
            wrapped,
        )?;
        material.try_into().map_err(|_| CryptoError::Corrupt)
    }

    fn binding(tenant: &str, kind: &str, version: u32) -> Binding {
        Binding::new("wrapped-key")
            .with(tenant.as_bytes())
            .with(kind.as_bytes())
            .with(&version.to_be_bytes())
    }
}

/// One version of a tenant's data key.
pub struct DataKey {
    version: u32,
    key: LessSafeKey,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("DataKey")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl DataKey {
    /// Data key `version` from its material.
    pub fn new(version: u32, material: &[u8; KEY_LEN]) -> Result<Self, CryptoError> {
        Ok(Self {
            version,
            key: aead_key(material)?,
        })
    }

    /// Its version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Seals `plaintext` for the place `binding` names.
    pub fn seal(&self, binding: &Binding, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        seal_with(&self.key, self.version, binding.bytes(), plaintext)
    }

    /// Opens a value sealed with this key for the same place.
    pub fn open(&self, binding: &Binding, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if key_version(sealed)? != self.version {
            return Err(CryptoError::Corrupt);
        }
        open_with(&self.key, binding.bytes(), sealed)
    }
}

/// A tenant's search key: keyed tokens of normalised words.
pub struct SearchKey(hmac::Key);

impl std::fmt::Debug for SearchKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("SearchKey([redacted])")
    }
}

impl SearchKey {
    /// A search key from its material.
    pub fn new(material: &[u8; KEY_LEN]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, material))
    }

    /// The token of an already normalised word.
    pub fn token(&self, word: &str) -> [u8; TOKEN_LEN] {
        let tag = hmac::sign(&self.0, word.as_bytes());
        let mut token = [0_u8; TOKEN_LEN];
        token.copy_from_slice(&tag.as_ref()[..TOKEN_LEN]);
        token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(message: &str) -> Binding {
        Binding::new("message.body")
            .with(b"acme")
            .with(b"conversation-1")
            .with(message.as_bytes())
    }

    #[test]
    fn sealed_values_open_only_in_their_place() {
        let key = DataKey::new(3, &generate_key().expect("key")).expect("data key");
        let sealed = key.seal(&place("m1"), b"the canary sings").expect("seal");
        assert_eq!(key_version(&sealed), Ok(3));
        assert!(!sealed.windows(6).any(|w| w == b"canary"));
        assert_eq!(
            key.open(&place("m1"), &sealed).expect("open"),
            b"the canary sings"
        );
        // Another row, another tenant, a flipped bit, a cut: all corrupt, never text.
        assert_eq!(key.open(&place("m2"), &sealed), Err(CryptoError::Corrupt));
        let elsewhere = Binding::new("message.body")
            .with(b"globex")
            .with(b"conversation-1")
            .with(b"m1");
        assert_eq!(key.open(&elsewhere, &sealed), Err(CryptoError::Corrupt));
        for index in [0, 2, HEADER_LEN, sealed.len() - 1] {
            let mut tampered = sealed.clone();
            tampered[index] ^= 1;
            assert_eq!(
                key.open(&place("m1"), &tampered),
                Err(CryptoError::Corrupt),
                "byte {index}"
            );
        }
        assert_eq!(
            key.open(&place("m1"), &sealed[..sealed.len() - 1]),
            Err(CryptoError::Corrupt)
        );
        // Another key of the same version does not open it either.
        let other = DataKey::new(3, &generate_key().expect("key")).expect("data key");
        assert_eq!(other.open(&place("m1"), &sealed), Err(CryptoError::Corrupt));
    }

    #[test]
    fn bindings_do_not_collide_by_concatenation() {
        let a = Binding::new("x").with(b"ab").with(b"c");
        let b = Binding::new("x").with(b"a").with(b"bc");
        assert_ne!(a.bytes(), b.bytes());
    }

    #[test]
    fn wrapped_keys_unwrap_only_for_their_tenant_kind_and_version() {
        let master = MasterKey::from_bytes(&generate_key().expect("key")).expect("master");
        let material = generate_key().expect("key");
        let wrapped = master.wrap("acme", "data", 1, &material).expect("wrap");
        assert_eq!(master.unwrap("acme", "data", 1, &wrapped), Ok(material));
        assert!(master.unwrap("globex", "data", 1, &wrapped).is_err());
        assert!(master.unwrap("acme", "search", 1, &wrapped).is_err());
        assert!(master.unwrap("acme", "data", 2, &wrapped).is_err());
        let wrong = MasterKey::from_bytes(&generate_key().expect("key")).expect("master");
        assert_eq!(
            wrong.unwrap("acme", "data", 1, &wrapped),
            Err(CryptoError::Corrupt)
        );
    }

    #[test]
    fn master_keys_must_be_32_base64_bytes() {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode([7_u8; KEY_LEN]);
        assert!(MasterKey::from_base64(&format!(" {encoded}\n")).is_ok());
        assert!(matches!(
            MasterKey::from_base64("not base64!"),
            Err(CryptoError::InvalidKey(_))
        ));
        let short = base64::engine::general_purpose::STANDARD.encode([7_u8; 16]);
        assert!(matches!(
            MasterKey::from_base64(&short),
            Err(CryptoError::InvalidKey(_))
        ));
    }

    #[test]
    fn search_tokens_are_keyed() {
        let acme = SearchKey::new(&generate_key().expect("key"));
        let globex = SearchKey::new(&generate_key().expect("key"));
        assert_eq!(acme.token("run"), acme.token("run"));
        assert_ne!(acme.token("run"), acme.token("ran"));
        assert_ne!(acme.token("run"), globex.token("run"));
    }
}
