//! Conversation rules with no I/O: kinds, roles, the permission matrix and validated inputs.

pub mod event;
pub mod permissions;

use tonic_types::FieldViolation;

pub use event::ConversationEvent;
pub use permissions::{Action, Denial};

/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2_000;
/// Most users in one AddParticipants or CreateConversation call.
pub const MAX_PARTICIPANTS_PER_CALL: usize = 100;

/// The kind of a conversation, fixed at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Two participants, both members, de-duplicated per pair.
    Direct,
    /// Private; members are added.
    Group,
    /// Discoverable in the tenant; anyone may join.
    Channel,
}

impl Kind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Group => "group",
            Self::Channel => "channel",
        }
    }

    /// Parses a stored name.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "direct" => Some(Self::Direct),
            "group" => Some(Self::Group),
            "channel" => Some(Self::Channel),
            _ => None,
        }
    }
}

/// A participant's role, ordered by authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads only.
    Viewer,
    /// Reads, posts, reacts.
    Member,
    /// Manages the conversation and its members and viewers.
    Admin,
    /// Everything; one per group or channel.
    Owner,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Member => "member",
            Self::Admin => "admin",
            Self::Owner => "owner",
        }
    }

    /// Parses a stored name.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "viewer" => Some(Self::Viewer),
            "member" => Some(Self::Member),
            "admin" => Some(Self::Admin),
            "owner" => Some(Self::Owner),
            _ => None,
        }
    }
}

/// A validated title: trimmed, at most [`MAX_TITLE_CHARS`], required unless `kind` is DIRECT.
pub fn title(field: &str, value: &str, kind: Kind) -> Result<String, FieldViolation> {
    let title = messaging_platform::validate::text(field, value, MAX_TITLE_CHARS)?;
    if title.is_empty() && kind != Kind::Direct {
        return Err(FieldViolation::new(
            field,
            "required for groups and channels",
        ));
    }
    Ok(title)
}

/// A validated description: trimmed, at most [`MAX_DESCRIPTION_CHARS`].
pub fn description(field: &str, value: &str) -> Result<String, FieldViolation> {
    messaging_platform::validate::text(field, value, MAX_DESCRIPTION_CHARS)
}

/// The de-duplication key of a DIRECT conversation: the two user ids in order. User ids cannot
/// contain control characters, so the separator is unambiguous.
pub fn direct_key(first: &str, second: &str) -> String {
    if first <= second {
        format!("{first}\n{second}")
    } else {
        format!("{second}\n{first}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_key_is_order_independent() {
        assert_eq!(direct_key("alice", "bob"), direct_key("bob", "alice"));
        assert_ne!(direct_key("a", "bc"), direct_key("ab", "c"));
    }

    #[test]
    fn titles_are_required_except_for_direct() {
        assert!(title("title", "  ", Kind::Group).is_err());
        assert_eq!(title("title", "  ", Kind::Direct).ok(), Some(String::new()));
        assert_eq!(
            title("title", " Hi ", Kind::Channel).ok(),
            Some("Hi".to_owned())
        );
        assert!(title("title", &"x".repeat(201), Kind::Group).is_err());
        assert!(title("title", &"é".repeat(200), Kind::Group).is_ok());
        assert!(title("title", "a\u{0}b", Kind::Group).is_err());
    }
}
