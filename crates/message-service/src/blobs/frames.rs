//! How attachment content is laid out in object storage: fixed-size frames of 64 KiB of
//! content each (the last one shorter), each sealed on its own so that any byte range can be
//! read and checked without the rest of the file.
//!
//! - With encryption at rest, a frame is AES-256-GCM under the tenant's data key
//!   ([`DataKey::seal`]): format byte, key version, nonce, ciphertext, tag.
//! - Without it (development), a frame is the content followed by a keyless checksum
//!   ([`crypto::checksum`]): corruption and misplaced frames are still found.
//!
//! Either way a frame is bound to its tenant, attachment id, index and whether it is the last
//! one, so frames reordered, dropped from the end, or moved between files do not open.

use std::sync::Arc;

use messaging_platform::crypto::{self, Binding, CryptoError, DataKey, SEAL_OVERHEAD, TOKEN_LEN};
use uuid::Uuid;

/// Content bytes per frame.
pub const FRAME: usize = 64 * 1024;

/// Seals and opens the frames of one attachment.
#[derive(Debug, Clone)]
pub struct Frames {
    key: Option<Arc<DataKey>>,
    tenant: String,
    attachment: Uuid,
    count: u64,
}

impl Frames {
    /// The frames of `attachment` (of `size` bytes) of `tenant`, sealed with `key` (`None`:
    /// encryption at rest is off).
    pub fn new(key: Option<Arc<DataKey>>, tenant: &str, attachment: Uuid, size: u64) -> Self {
        Self {
            key,
            tenant: tenant.to_owned(),
            attachment,
            count: size.div_ceil(FRAME as u64),
        }
    }

    /// Stored bytes of a full frame.
    pub fn stored_len(&self) -> u64 {
        (FRAME + self.overhead()) as u64
    }

    /// Bytes a frame adds to its content.
    pub fn overhead(&self) -> usize {
        if self.key.is_some() {
            SEAL_OVERHEAD
        } else {
            TOKEN_LEN
        }
    }

    /// How many frames the content has.
    pub fn count(&self) -> u64 {
        self.count
    }

    fn binding(&self, index: u64) -> Binding {
        let last = [u8::from(index + 1 == self.count)];
        Binding::new("attachment.frame")
            .with(self.tenant.as_bytes())
            .with(self.attachment.as_bytes())
            .with(&index.to_be_bytes())
            .with(&last)
    }

    /// Frame `index` of `content`.
    pub fn seal(&self, index: u64, content: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let binding = self.binding(index);
        match &self.key {
            Some(key) => key.seal(&binding, content),
            None => {
                let mut frame = Vec::with_capacity(content.len() + TOKEN_LEN);
                frame.extend_from_slice(content);
                frame.extend_from_slice(&crypto::checksum(&binding, content));
                Ok(frame)
            }
        }
    }

    /// The content of frame `index`, if it is the one sealed there.
    pub fn open(&self, index: u64, frame: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let binding = self.binding(index);
        match &self.key {
            Some(key) => key.open(&binding, frame),
            None => {
                let split = frame
                    .len()
                    .checked_sub(TOKEN_LEN)
                    .ok_or(CryptoError::Corrupt)?;
                let (content, tag) = frame.split_at(split);
                // Keyless: nothing secret to leak through the comparison's timing.
                if tag != crypto::checksum(&binding, content) {
                    return Err(CryptoError::Corrupt);
                }
                Ok(content.to_vec())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(key: bool, attachment: Uuid) -> Frames {
        let key = key.then(|| {
            Arc::new(DataKey::new(1, &crypto::generate_key().expect("key")).expect("data key"))
        });
        Frames::new(key, "acme", attachment, 3 * FRAME as u64)
    }

    #[test]
    fn frames_open_only_at_their_place_in_their_file() {
        for key in [true, false] {
            let id = Uuid::now_v7();
            let frames = frames(key, id);
            let sealed = frames.seal(1, b"middle").expect("seal");
            assert_eq!(frames.open(1, &sealed).expect("open"), b"middle");
            assert!(frames.open(0, &sealed).is_err(), "reordered");
            assert!(frames.open(2, &sealed).is_err(), "moved to the end");
            let other = Frames {
                attachment: Uuid::now_v7(),
                ..frames.clone()
            };
            assert!(other.open(1, &sealed).is_err(), "moved to another file");
            let mut tampered = sealed.clone();
            tampered[2] ^= 1;
            assert!(frames.open(1, &tampered).is_err(), "tampered");
        }
    }

    #[test]
    fn sealed_frames_hide_their_content() {
        let frames = frames(true, Uuid::now_v7());
        let sealed = frames.seal(0, b"a canary in the file").expect("seal");
        assert!(!sealed.windows(6).any(|window| window == b"canary"));
        assert_eq!(sealed.len(), 20 + frames.overhead());
    }
}
