//! Tenant ids, user ids and request ids as types of their own, so that passing one where
//! another belongs does not compile. Both are 1 to 128 characters without control characters
//! ([`crate::validate::principal_id_problem`]); they are made by [`parse`](UserId::parse) (a
//! request's field) or by the authentication layer (a verified token).
//!
//! Either reads as a `&str` (`Deref`), so formatting, comparing and SQL parameters need nothing
//! special; the other way round (a string or the other id where one is expected) does not
//! compile.

use std::fmt;
use std::ops::Deref;

use tonic_types::FieldViolation;

use crate::validate::principal_id_problem;

macro_rules! principal_id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Checks `value` (the request field `field`): 1 to 128 characters without control
            /// characters.
            pub fn parse(field: &str, value: &str) -> Result<Self, FieldViolation> {
                match principal_id_problem(value) {
                    None => Ok(Self(value.to_owned())),
                    Some(problem) => Err(FieldViolation::new(field, problem)),
                }
            }

            /// An id that was checked already (a verified token's claim, a stored value).
            pub fn trusted(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                self == &other.0
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

principal_id_type!(
    /// The tenant every read and write is confined to.
    TenantId
);

principal_id_type!(
    /// A user (or, for service tokens, the service's principal).
    UserId
);

/// An idempotency key (AIP-155): 1 to 128 visible ASCII characters, a UUID recommended. What
/// a repeated key means is `crate::idempotency`'s rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// Longest request id.
    pub const MAX_CHARS: usize = 128;

    /// Checks an optional `request_id` field: empty means none.
    pub fn parse(field: &str, value: &str) -> Result<Option<Self>, FieldViolation> {
        if value.is_empty() {
            return Ok(None);
        }
        if value.len() > Self::MAX_CHARS || !value.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(FieldViolation::new(
                field,
                "must be 1 to 128 visible ASCII characters (a UUID is recommended)",
            ));
        }
        Ok(Some(Self(value.to_owned())))
    }

    /// A request id that was checked already (a stored value).
    pub fn trusted(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for RequestId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<RequestId> for String {
    fn from(id: RequestId) -> String {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_like_principal_ids_and_compare_with_text() {
        assert!(UserId::parse("user_id", "").is_err());
        assert!(UserId::parse("user_id", "a\u{0}b").is_err());
        assert!(UserId::parse("user_id", &"x".repeat(129)).is_err());
        let alice = UserId::parse("user_id", "alice").expect("valid");
        assert_eq!(alice, "alice");
        assert_eq!("alice".to_owned(), alice);
        assert_eq!(alice.as_str(), "alice");
        assert_eq!(TenantId::trusted("acme").to_string(), "acme");
    }
}
