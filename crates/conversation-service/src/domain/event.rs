//! What conversation-service tells the world: the events each change records in the outbox
//! (and the audit actions it logs),
//! in the change's transaction. message-service follows them (participants decide who sees
//! what); their wire form is made at the storage edge (`crate::events`).

use super::Role;

/// One change to a conversation, borrowing what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConversationEvent<'a> {
    /// Created, with its first participants (so that a stream can tell them the conversation
    /// exists before their own `ParticipantAdded`).
    Created {
        /// The title.
        title: &'a str,
        /// Every first participant with its role, the creator included.
        participants: Vec<(&'a str, Role)>,
    },
    /// Title or description changed, or restored after a delete.
    Updated {
        /// The title after.
        title: &'a str,
        /// Whether it is archived.
        archived: bool,
    },
    /// Archived or unarchived.
    Archived {
        /// The title.
        title: &'a str,
        /// Whether it is archived now.
        archived: bool,
    },
    /// Deleted (restorable within the undelete window).
    Deleted {
        /// The title.
        title: &'a str,
        /// Whether it was archived.
        archived: bool,
    },
    /// Purged for good, its undelete window having passed (carries no title: the
    /// conversation's content is gone).
    Purged {
        /// Whether it was archived.
        archived: bool,
    },
    /// A user became a participant.
    ParticipantAdded {
        /// The user.
        user: &'a str,
        /// Its role.
        role: Role,
    },
    /// A participant left or was removed.
    ParticipantRemoved {
        /// The user.
        user: &'a str,
    },
    /// A participant's role changed.
    RoleChanged {
        /// The user.
        user: &'a str,
        /// The new role.
        role: Role,
    },
}

/// What an audit row says was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    /// `conversation.created`.
    Created,
    /// `conversation.updated`.
    Updated,
    /// `conversation.archived`.
    Archived,
    /// `conversation.unarchived`.
    Unarchived,
    /// `conversation.deleted`.
    Deleted,
    /// `conversation.undeleted`.
    Undeleted,
    /// `conversation.ownership_transferred`.
    OwnershipTransferred,
    /// `participant.added`.
    ParticipantAdded,
    /// `participant.removed`.
    ParticipantRemoved,
    /// `participant.role_changed`.
    RoleChanged,
    /// `participant.joined`.
    ParticipantJoined,
    /// `participant.left`.
    ParticipantLeft,
}

impl AuditAction {
    /// The name stored in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "conversation.created",
            Self::Updated => "conversation.updated",
            Self::Archived => "conversation.archived",
            Self::Unarchived => "conversation.unarchived",
            Self::Deleted => "conversation.deleted",
            Self::Undeleted => "conversation.undeleted",
            Self::OwnershipTransferred => "conversation.ownership_transferred",
            Self::ParticipantAdded => "participant.added",
            Self::ParticipantRemoved => "participant.removed",
            Self::RoleChanged => "participant.role_changed",
            Self::ParticipantJoined => "participant.joined",
            Self::ParticipantLeft => "participant.left",
        }
    }
}
