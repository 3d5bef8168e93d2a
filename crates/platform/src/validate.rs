//! Validation of the identifiers and paging fields that every RPC takes.

use tonic_types::FieldViolation;
use uuid::Uuid;

/// Longest user or tenant id, in characters.
pub const MAX_PRINCIPAL_ID_CHARS: usize = 128;

/// Parses a resource id, which must be a UUID in any standard text form.
pub fn resource_id(field: &str, value: &str) -> Result<Uuid, FieldViolation> {
    if value.is_empty() {
        return Err(FieldViolation::new(field, "required"));
    }
    Uuid::parse_str(value).map_err(|_| FieldViolation::new(field, "must be a UUID"))
}

/// Checks a user or tenant id: opaque, 1 to 128 characters, no control characters.
pub fn principal_id(field: &str, value: &str) -> Result<String, FieldViolation> {
    principal_id_problem(value).map_or_else(
        || Ok(value.to_owned()),
        |problem| Err(FieldViolation::new(field, problem)),
    )
}

/// Why a string is not a valid user or tenant id, if it is not.
pub fn principal_id_problem(value: &str) -> Option<&'static str> {
    if value.is_empty() {
        Some("required")
    } else if value.chars().count() > MAX_PRINCIPAL_ID_CHARS {
        Some("must be at most 128 characters")
    } else if value.chars().any(char::is_control) {
        Some("must not contain control characters")
    } else {
        None
    }
}

/// Resolves a requested page size: 0 means `default`, 1..=`max` is taken as is, anything else
/// is a violation.
pub fn page_size(field: &str, value: i32, default: u64, max: u64) -> Result<u64, FieldViolation> {
    match u64::try_from(value) {
        Ok(0) => Ok(default),
        Ok(size) if size <= max => Ok(size),
        _ => Err(FieldViolation::new(
            field,
            format!("must be between 0 and {max}"),
        )),
    }
}

/// The one rule for every free-text field of both services (message text, metadata values,
/// titles, descriptions, search queries): no control characters (U+0000 included) other than
/// line breaks and tabs.
pub fn free_text_problem(value: &str) -> Option<&'static str> {
    value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
        .then_some("must not contain control characters other than line breaks and tabs")
}

/// Checks free text: at most `max_chars` characters and [`free_text_problem`]. Returns the text
/// trimmed of surrounding white space.
pub fn text(field: &str, value: &str, max_chars: usize) -> Result<String, FieldViolation> {
    let trimmed = value.trim();
    if trimmed.chars().count() > max_chars {
        return Err(FieldViolation::new(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    if let Some(problem) = free_text_problem(trimmed) {
        return Err(FieldViolation::new(field, problem));
    }
    Ok(trimmed.to_owned())
}
