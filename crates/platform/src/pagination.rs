//! Opaque cursor page tokens (AIP-158).
//!
//! A token is the URL-safe base64 of a small JSON envelope: the position after the last item
//! returned (the keyset key), and a fingerprint of the request's other fields. A token used with
//! different filters, or one this service did not issue, is `INVALID_ARGUMENT` on the
//! `page_token` field. Tokens carry no authority: every page is still filtered by tenant and
//! permissions, so a forged token can at most move the starting position.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tonic_types::FieldViolation;

const TOKEN_VERSION: u8 = 1;

#[derive(serde::Serialize, serde::Deserialize)]
struct Envelope<K> {
    v: u8,
    f: String,
    k: K,
}

/// A stable fingerprint of the request fields that a page token is tied to. The parts are
/// joined unambiguously, so ("a", "bc") and ("ab", "c") differ.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    URL_SAFE_NO_PAD.encode(&digest[..12])
}

/// Encodes the keyset position after the last item of a page.
pub fn encode<K: Serialize>(fingerprint: &str, key: &K) -> String {
    let envelope = Envelope {
        v: TOKEN_VERSION,
        f: fingerprint.to_owned(),
        k: key,
    };
    let json = serde_json::to_vec(&envelope).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// Decodes a page token; an empty token means "first page" (`None`). A bad token is
/// `INVALID_ARGUMENT` on `field`.
pub fn decode<K: DeserializeOwned>(
    field: &str,
    token: &str,
    fingerprint: &str,
) -> crate::ApiResult<Option<K>> {
    decode_token(field, token, fingerprint)
        .map_err(|violation| crate::ApiError::InvalidArgument(vec![violation]))
}

/// [`decode`] of a keyset position `(time, key)` that was encoded with the time in
/// microseconds since the epoch (`(time.timestamp_micros(), key)`).
pub fn decode_timed<K: DeserializeOwned>(
    field: &str,
    token: &str,
    fingerprint: &str,
) -> crate::ApiResult<Option<(chrono::DateTime<chrono::Utc>, K)>> {
    match decode::<(i64, K)>(field, token, fingerprint)? {
        Some((micros, key)) => chrono::DateTime::from_timestamp_micros(micros)
            .map(|time| Some((time, key)))
            .ok_or_else(|| crate::ApiError::invalid(field, "is not a valid page token")),
        None => Ok(None),
    }
}

/// Turns rows fetched with a limit of `page_size + 1` into the page and the token of the next
/// page (empty when there is none), keyed by `key` of the page's last row.
pub fn finish<T, K: Serialize>(
    mut rows: Vec<T>,
    page_size: u64,
    fingerprint: &str,
    key: impl Fn(&T) -> K,
) -> (Vec<T>, String) {
    let more = rows.len() as u64 > page_size;
    rows.truncate(usize::try_from(page_size).unwrap_or(usize::MAX));
    let next = match (more, rows.last()) {
        (true, Some(last)) => encode(fingerprint, &key(last)),
        _ => String::new(),
    };
    (rows, next)
}

fn decode_token<K: DeserializeOwned>(
    field: &str,
    token: &str,
    fingerprint: &str,
) -> Result<Option<K>, FieldViolation> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || FieldViolation::new(field, "is not a page token issued for this request");
    let json = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let envelope: Envelope<K> = serde_json::from_slice(&json).map_err(|_| invalid())?;
    if envelope.v != TOKEN_VERSION || envelope.f != fingerprint {
        return Err(FieldViolation::new(
            field,
            "does not match this request: keep every other field as in the first page",
        ));
    }
    Ok(Some(envelope.k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_keeps_the_page_and_points_past_it() {
        let (rows, next) = finish(vec![1, 2, 3], 2, "f", |last| *last);
        assert_eq!(rows, vec![1, 2]);
        assert_eq!(
            decode::<i32>("page_token", &next, "f").ok().flatten(),
            Some(2)
        );
        let (rows, next) = finish(vec![1, 2], 2, "f", |last| *last);
        assert_eq!((rows, next), (vec![1, 2], String::new()));
    }

    #[test]
    fn round_trips_and_rejects_changed_filters() {
        let token = encode(&fingerprint(&["a", "b"]), &(42_i64, "x".to_owned()));
        let key: Option<(i64, String)> = decode("page_token", &token, &fingerprint(&["a", "b"]))
            .ok()
            .flatten();
        assert_eq!(key, Some((42, "x".to_owned())));
        assert!(decode::<(i64, String)>("page_token", &token, &fingerprint(&["ab"])).is_err());
        assert!(decode::<(i64, String)>("page_token", "%%%", "f").is_err());
        assert!(decode::<(i64, String)>("page_token", "", "f").is_ok_and(|key| key.is_none()));
    }
}
