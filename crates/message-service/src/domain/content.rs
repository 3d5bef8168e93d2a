//! What a message carries, and the checks a client's content must pass: text of bounded size
//! without control characters, or an opaque end-to-end payload with its client search tokens.

use messaging_platform::FieldViolations;
use tonic_types::FieldViolation;

/// Longest end-to-end algorithm name.
pub const MAX_ALGORITHM_CHARS: usize = 64;
/// Longest end-to-end key id.
pub const MAX_KEY_ID_CHARS: usize = 256;
/// Most client search tokens per payload or query.
pub const MAX_CLIENT_TOKENS: usize = 256;
/// Largest client search token, in bytes.
pub const MAX_CLIENT_TOKEN_BYTES: usize = 128;

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
    /// Which of the two it is.
    pub fn kind(&self) -> ContentKind {
        match self {
            Self::Text(_) => ContentKind::Text,
            Self::Encrypted { .. } => ContentKind::Encrypted,
        }
    }

    /// The text, if it is text.
    pub fn text(&self) -> Option<&str> {
        match self {
            Self::Text(text) => Some(text),
            Self::Encrypted { .. } => None,
        }
    }
}

/// The kinds of content; an edit keeps the kind of the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentKind {
    /// UTF-8 text, readable by the service (indexed for search, sealed at rest).
    Text,
    /// An end-to-end payload the service cannot read.
    Encrypted,
}

impl ContentKind {
    /// The name clients and the stored rows use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Encrypted => "encrypted",
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

/// Checks the client search tokens of an end-to-end payload or query: at most
/// [`MAX_CLIENT_TOKENS`] of 1 to [`MAX_CLIENT_TOKEN_BYTES`] bytes; returns them sorted, without
/// repeats.
pub fn client_tokens(
    violations: &mut FieldViolations,
    field: &str,
    tokens: &[Vec<u8>],
) -> Vec<Vec<u8>> {
    if tokens.len() > MAX_CLIENT_TOKENS {
        violations.add(field, format!("at most {MAX_CLIENT_TOKENS} tokens"));
        return Vec::new();
    }
    for (index, token) in tokens.iter().enumerate() {
        if token.is_empty() || token.len() > MAX_CLIENT_TOKEN_BYTES {
            violations.add(
                format!("{field}[{index}]"),
                format!("must be 1 to {MAX_CLIENT_TOKEN_BYTES} bytes"),
            );
        }
    }
    let mut unique = tokens.to_vec();
    unique.sort();
    unique.dedup();
    unique
}
