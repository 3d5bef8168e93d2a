//! Metadata: a few small key/value strings a client attaches to a message.

use std::collections::BTreeMap;

use tonic_types::FieldViolation;

/// Most metadata entries on a message.
pub const MAX_METADATA_ENTRIES: usize = 16;
/// Longest metadata key, in characters.
pub const MAX_METADATA_KEY_CHARS: usize = 64;
/// Longest metadata value, in bytes.
pub const MAX_METADATA_VALUE_BYTES: usize = 1_024;

/// A message's metadata, in key order.
pub type Metadata = BTreeMap<String, String>;

/// Checks metadata: entry count, key form, value size.
pub fn metadata(
    field: &str,
    entries: &std::collections::HashMap<String, String>,
) -> Result<Metadata, FieldViolation> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
