//! The one idempotency rule of both services (AIP-155), for creating requests that carry an
//! optional `request_id`: the format of the key, and what a repeated key means.
//!
//! - A `request_id` is 1 to 128 visible ASCII characters (a UUID is recommended); empty means
//!   "not idempotent". Anything else is INVALID_ARGUMENT naming the field.
//! - The same key from the same caller with the same payload returns what the first request
//!   created (its current state), and creates nothing.
//! - The same key with a different payload is ALREADY_EXISTS: the key is taken, and returning the
//!   first result would silently drop what the second request asked for.

use sha2::{Digest, Sha256};
use tonic_types::FieldViolation;

use crate::error::{ApiError, ApiResult};

pub use crate::ids::RequestId;

/// Parses an optional `request_id` as the rule above says.
pub fn parse_request_id(field: &str, value: &str) -> Result<Option<RequestId>, FieldViolation> {
    RequestId::parse(field, value)
}

/// A fingerprint of a request's payload: SHA-256 over the length-prefixed parts, in hex.
pub fn fingerprint<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The decision for a request whose key was used before: `existing` when the payload is the
/// same (`stored` is `None` for resources created before fingerprints were kept), otherwise
/// ALREADY_EXISTS.
pub fn replay<T>(stored: Option<&str>, fingerprint: &str, existing: T) -> ApiResult<T> {
    match stored {
        Some(stored) if stored != fingerprint => Err(ApiError::AlreadyExists(
            "request_id was already used for a different request".to_owned(),
        )),
        _ => Ok(existing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_visible_ascii_of_at_most_128() {
        assert_eq!(parse_request_id("request_id", "").ok(), Some(None));
        assert_eq!(
            parse_request_id("request_id", "0b1c9f2e-6d1a-4c55-9d0e-3f1f2a7b8c9d")
                .ok()
                .flatten()
                .map(String::from),
            Some("0b1c9f2e-6d1a-4c55-9d0e-3f1f2a7b8c9d".to_owned())
        );
        assert!(parse_request_id("request_id", &"a".repeat(128)).is_ok());
        for bad in [
            "a".repeat(129),
            "with space".to_owned(),
            "é".to_owned(),
            "\u{0}".to_owned(),
        ] {
            assert!(parse_request_id("request_id", &bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_different_payload_is_already_exists() {
        let first = fingerprint([b"title".as_slice(), b"a"]);
        let same = fingerprint([b"title".as_slice(), b"a"]);
        // Length prefixes keep ("ab", "") apart from ("a", "b").
        assert_ne!(
            fingerprint([b"ab".as_slice(), b""]),
            fingerprint([b"a".as_slice(), b"b"])
        );
        assert_eq!(replay(Some(&first), &same, 7).ok(), Some(7));
        assert_eq!(replay(None, &same, 7).ok(), Some(7));
        let other = fingerprint([b"title".as_slice(), b"b"]);
        assert!(matches!(
            replay(Some(&first), &other, 7),
            Err(ApiError::AlreadyExists(_))
        ));
    }
}
