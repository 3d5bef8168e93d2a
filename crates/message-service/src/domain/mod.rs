//! Message rules with no I/O: content and metadata limits, emoji, and the fingerprint that
//! tells an idempotent retry from a conflicting reuse of a request id.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use tonic_types::FieldViolation;
use unicode_segmentation::UnicodeSegmentation;

/// Most metadata entries on a message.
pub const MAX_METADATA_ENTRIES: usize = 16;
/// Longest metadata key, in characters.
pub const MAX_METADATA_KEY_CHARS: usize = 64;
/// Longest metadata value, in bytes.
pub const MAX_METADATA_VALUE_BYTES: usize = 1_024;
/// Most mentions on a message.
pub const MAX_MENTIONS: usize = 50;
/// Longest end-to-end algorithm name.
pub const MAX_ALGORITHM_CHARS: usize = 64;
/// Longest end-to-end key id.
pub const MAX_KEY_ID_CHARS: usize = 256;

/// What a message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// UTF-8 text.
    Text(String),
    /// An opaque end-to-end payload, stored untouched.
    Encrypted {
        /// The ciphertext.
        ciphertext: Vec<u8>,
        /// The client's algorithm name.
        algorithm: String,
        /// The client's key id.
        key_id: String,
    },
}

impl Content {
    /// The stored kind name.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Text(_) => "text",
            Self::Encrypted { .. } => "encrypted",
        }
    }
}

/// Checks text: at most `max_bytes` of UTF-8 (the proto guarantees UTF-8).
pub fn text(field: &str, value: &str, max_bytes: usize) -> Result<String, FieldViolation> {
    if value.len() > max_bytes {
        return Err(FieldViolation::new(
            field,
            format!("must be at most {max_bytes} bytes"),
        ));
    }
    if let Some(problem) = messaging_platform::validate::free_text_problem(value) {
        return Err(FieldViolation::new(field, problem));
    }
    Ok(value.to_owned())
}

fn printable_ascii(field: &str, value: &str, max: usize) -> Result<String, FieldViolation> {
    if value.is_empty() {
        return Err(FieldViolation::new(field, "required"));
    }
    if value.len() > max || !value.bytes().all(|byte| (0x20..0x7f).contains(&byte)) {
        return Err(FieldViolation::new(
            field,
            format!("must be 1 to {max} printable ASCII characters"),
        ));
    }
    Ok(value.to_owned())
}

/// Checks an end-to-end payload's parts.
pub fn encrypted(
    field: &str,
    ciphertext: &[u8],
    algorithm: &str,
    key_id: &str,
    max_bytes: usize,
) -> Result<Content, FieldViolation> {
    if ciphertext.is_empty() || ciphertext.len() > max_bytes {
        return Err(FieldViolation::new(
            format!("{field}.ciphertext"),
            format!("must be 1 to {max_bytes} bytes"),
        ));
    }
    Ok(Content::Encrypted {
        ciphertext: ciphertext.to_vec(),
        algorithm: printable_ascii(
            &format!("{field}.algorithm"),
            algorithm,
            MAX_ALGORITHM_CHARS,
        )?,
        key_id: printable_ascii(&format!("{field}.key_id"), key_id, MAX_KEY_ID_CHARS)?,
    })
}

/// Checks metadata: entry count, key form, value size.
pub fn metadata(
    field: &str,
    entries: &std::collections::HashMap<String, String>,
) -> Result<BTreeMap<String, String>, FieldViolation> {
    if entries.len() > MAX_METADATA_ENTRIES {
        return Err(FieldViolation::new(
            field,
            format!("at most {MAX_METADATA_ENTRIES} entries"),
        ));
    }
    for (key, value) in entries {
        let key_ok = !key.is_empty()
            && key.chars().count() <= MAX_METADATA_KEY_CHARS
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !key_ok {
            return Err(FieldViolation::new(
                format!("{field}[{key}]"),
                "keys are 1 to 64 of a-z, A-Z, 0-9, _, ., -",
            ));
        }
        if value.len() > MAX_METADATA_VALUE_BYTES {
            return Err(FieldViolation::new(
                format!("{field}[{key}]"),
                format!("values are at most {MAX_METADATA_VALUE_BYTES} bytes"),
            ));
        }
        if let Some(problem) = messaging_platform::validate::free_text_problem(value) {
            return Err(FieldViolation::new(format!("{field}[{key}]"), problem));
        }
    }
    Ok(entries
        .iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect())
}

/// Checks a reaction: one emoji grapheme (with its skin tone or other modifiers), or a
/// shortcode `:name:` whose name is 1 to 64 of a-z, 0-9, `_`, `+`, `-`.
pub fn emoji(field: &str, value: &str) -> Result<String, FieldViolation> {
    if let Some(name) = value
        .strip_prefix(':')
        .and_then(|rest| rest.strip_suffix(':'))
    {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'+' | b'-')
            });
        return if valid {
            Ok(value.to_owned())
        } else {
            Err(FieldViolation::new(
                field,
                "shortcodes are :name: with 1 to 64 of a-z, 0-9, _, +, -",
            ))
        };
    }
    if value.graphemes(true).count() == 1 && emojis::get(value).is_some() {
        Ok(value.to_owned())
    } else {
        Err(FieldViolation::new(
            field,
            "must be a single emoji or a :shortcode:",
        ))
    }
}

/// A fingerprint of everything a send request asks for, so that a retry with the same request
/// id can be told from a different message reusing it.
pub fn payload_fingerprint(
    content: Option<&Content>,
    parent: Option<uuid::Uuid>,
    mentions: &[String],
    metadata: &BTreeMap<String, String>,
) -> String {
    let mut hasher = Sha256::new();
    let mut part = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    match content {
        Some(Content::Text(text)) => {
            part(b"text");
            part(text.as_bytes());
        }
        Some(Content::Encrypted {
            ciphertext,
            algorithm,
            key_id,
        }) => {
            part(b"encrypted");
            part(ciphertext);
            part(algorithm.as_bytes());
            part(key_id.as_bytes());
        }
        None => part(b"none"),
    }
    part(
        parent
            .map(|id| id.to_string())
            .unwrap_or_default()
            .as_bytes(),
    );
    let mut mentions = mentions.to_vec();
    mentions.sort();
    for mention in &mentions {
        part(mention.as_bytes());
    }
    for (key, value) in metadata {
        part(key.as_bytes());
        part(value.as_bytes());
    }
    let digest = hasher.finalize();
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emoji_accepts_single_graphemes_and_shortcodes() {
        for good in ["👍", "👍🏽", "❤️", "🇫🇷", "👩‍👩‍👧", ":party_parrot:", ":+1:"]
        {
            assert!(emoji("emoji", good).is_ok(), "{good}");
        }
        for bad in ["", "a", "👍👍", ":Bad:", "::", ":x", "hello", ":a b:"] {
            assert!(emoji("emoji", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fingerprint_ignores_mention_order_but_not_content() {
        let empty = BTreeMap::new();
        let text = Content::Text("hi".to_owned());
        let a = payload_fingerprint(Some(&text), None, &["a".into(), "b".into()], &empty);
        let b = payload_fingerprint(Some(&text), None, &["b".into(), "a".into()], &empty);
        let c = payload_fingerprint(Some(&Content::Text("ho".to_owned())), None, &[], &empty);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn metadata_limits() {
        let mut entries = std::collections::HashMap::new();
        entries.insert("ok.key-1".to_owned(), "v".to_owned());
        assert!(metadata("metadata", &entries).is_ok());
        entries.insert("bad key".to_owned(), "v".to_owned());
        assert!(metadata("metadata", &entries).is_err());
        let big: std::collections::HashMap<_, _> =
            (0..17).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(metadata("metadata", &big).is_err());
    }
}
