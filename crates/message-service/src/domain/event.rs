//! What message-service tells the world: the events each write records in the outbox, in the
//! same transaction as the change. Their wire form (`messaging.message.v1.Event`) is made at
//! the storage edge (`crate::events`).

use uuid::Uuid;

use super::message::{Message, Reaction, ReadState};

/// One change to a conversation's messages, borrowing what changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageEvent<'a> {
    /// A message was sent.
    Created(&'a Message),
    /// A message was edited.
    Edited(&'a Message),
    /// A message was deleted (its content is gone).
    Deleted {
        /// Its conversation.
        conversation: Uuid,
        /// The message.
        message: Uuid,
        /// Its position.
        sequence: i64,
    },
    /// A user reacted.
    ReactionAdded(&'a Reaction),
    /// A user took a reaction back.
    ReactionRemoved(&'a Reaction),
    /// A user's read watermark moved forward.
    ReadStateMoved(&'a ReadState),
}

impl MessageEvent<'_> {
    /// The conversation it happened in.
    pub fn conversation(&self) -> Uuid {
        match self {
            Self::Created(message) | Self::Edited(message) => message.conversation,
            Self::Deleted { conversation, .. } => *conversation,
            Self::ReactionAdded(reaction) | Self::ReactionRemoved(reaction) => {
                reaction.conversation
            }
            Self::ReadStateMoved(state) => state.conversation,
        }
    }

    /// Whether the event carries message content (and so is sealed at rest).
    pub fn carries_content(&self) -> bool {
        matches!(self, Self::Created(_) | Self::Edited(_))
    }
}
