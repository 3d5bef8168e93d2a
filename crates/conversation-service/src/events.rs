//! The event contract of conversation-service: each [`ConversationEvent`] as the
//! `messaging.message.v1.Event` payload (`messaging_outbox::contract`) the outbox stores, WatchEvents and NATS carry, and
//! message-service follows.

use messaging_outbox::contract::event::Payload;
use messaging_outbox::contract::{ConversationChanged, ParticipantChanged};

use crate::domain::{ConversationEvent, Role};

fn conversation_changed(title: &str, archived: bool) -> ConversationChanged {
    ConversationChanged {
        title: title.to_owned(),
        archived,
        participants: Vec::new(),
    }
}

/// A participant's role as events name it (`ROLE_OWNER`, ...); empty once removed.
fn participant_changed(user: &str, role: Option<Role>) -> ParticipantChanged {
    ParticipantChanged {
        user_id: user.to_owned(),
        role: role
            .map(|role| format!("ROLE_{}", role.as_str().to_ascii_uppercase()))
            .unwrap_or_default(),
    }
}

/// The wire payload of `event`.
pub fn payload(event: &ConversationEvent<'_>) -> Payload {
    match event {
        ConversationEvent::Created {
            title,
            participants,
        } => Payload::ConversationCreated(ConversationChanged {
            participants: participants
                .iter()
                .map(|(user, role)| participant_changed(user, Some(*role)))
                .collect(),
            ..conversation_changed(title, false)
        }),
        ConversationEvent::Updated { title, archived } => {
            Payload::ConversationUpdated(conversation_changed(title, *archived))
        }
        ConversationEvent::Archived { title, archived } => {
            Payload::ConversationArchived(conversation_changed(title, *archived))
        }
        ConversationEvent::Deleted { title, archived } => {
            Payload::ConversationDeleted(conversation_changed(title, *archived))
        }
        ConversationEvent::Purged { archived } => {
            Payload::ConversationPurged(conversation_changed("", *archived))
        }
        ConversationEvent::ParticipantAdded { user, role } => {
            Payload::ParticipantAdded(participant_changed(user, Some(*role)))
        }
        ConversationEvent::ParticipantRemoved { user } => {
            Payload::ParticipantRemoved(participant_changed(user, None))
        }
        ConversationEvent::RoleChanged { user, role } => {
            Payload::ParticipantRoleChanged(participant_changed(user, Some(*role)))
        }
    }
}
