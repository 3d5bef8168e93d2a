//! Conversation rules with no I/O: kinds, roles, the permission matrix and validated inputs.

pub mod conversation;
pub mod event;
pub mod permissions;

use std::collections::HashSet;

use messaging_platform::FieldViolations;
use tonic_types::FieldViolation;

pub use conversation::{Conversation, Participant};
pub use event::{AuditAction, ConversationEvent};
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

/// The other participants of a new conversation or an AddParticipants call, from `parsed`
/// (one entry per requested participant, `None` where its id or role did not parse): at most
/// [`MAX_PARTICIPANTS_PER_CALL`] of `requested`, each user once, never the caller. Violations
/// name `field[index].user_id`.
pub fn other_participants(
    violations: &mut FieldViolations,
    field: &str,
    caller: &str,
    requested: usize,
    parsed: Vec<Option<(String, Role)>>,
) -> Vec<(String, Role)> {
    if requested > MAX_PARTICIPANTS_PER_CALL {
        violations.add(
            field,
            format!("at most {MAX_PARTICIPANTS_PER_CALL} per call"),
        );
        return Vec::new();
    }
    let mut seen = HashSet::new();
    let mut others = Vec::with_capacity(parsed.len());
    for (index, entry) in parsed.into_iter().enumerate() {
        let Some((user, role)) = entry else {
            continue;
        };
        let user_field = format!("{field}[{index}].user_id");
        if user == caller {
            violations.add(user_field, "must not be the caller");
        } else if !seen.insert(user.clone()) {
            violations.add(user_field, "duplicate user");
        } else {
            others.push((user, role));
        }
    }
    others
}

/// A direct conversation is created with exactly one other participant.
pub fn participant_count(field: &str, kind: Kind, others: usize) -> Result<(), FieldViolation> {
    if kind == Kind::Direct && others != 1 {
        return Err(FieldViolation::new(
            field,
            "a direct conversation needs exactly one other user",
        ));
    }
    Ok(())
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

    #[test]
    fn other_participants_are_each_once_never_the_caller() {
        let mut violations = FieldViolations::new();
        let parsed = vec![
            Some(("bob".to_owned(), Role::Member)),
            Some(("alice".to_owned(), Role::Admin)),
            None,
            Some(("bob".to_owned(), Role::Viewer)),
        ];
        let others = other_participants(&mut violations, "participants", "alice", 4, parsed);
        assert_eq!(others, [("bob".to_owned(), Role::Member)]);
        let Err(messaging_platform::ApiError::InvalidArgument(found)) = violations.finish() else {
            panic!("violations expected");
        };
        let fields: Vec<&str> = found
            .iter()
            .map(|violation| violation.field.as_str())
            .collect();
        assert_eq!(
            fields,
            ["participants[1].user_id", "participants[3].user_id"]
        );
        let mut too_many = FieldViolations::new();
        assert!(other_participants(&mut too_many, "p", "a", 101, Vec::new()).is_empty());
        assert!(too_many.finish().is_err());
        assert!(participant_count("participants", Kind::Direct, 2).is_err());
        assert!(participant_count("participants", Kind::Direct, 1).is_ok());
        assert!(participant_count("participants", Kind::Group, 0).is_ok());
    }
}
