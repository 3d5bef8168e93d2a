//! Reactions name one emoji, or a `:shortcode:` for custom ones.

use tonic_types::FieldViolation;
use unicode_segmentation::UnicodeSegmentation;

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
}
