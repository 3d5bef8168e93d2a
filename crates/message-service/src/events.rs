//! The event contract of message-service: each [`MessageEvent`] as the
//! `messaging.message.v1.Event` payload the outbox stores, NATS carries and Subscribe
//! delivers. The outbox, relay, bus and NATS publishing are shared with conversation-service
//! and live in `messaging_outbox`.

use messaging_proto::message::v1 as pb;

pub use messaging_outbox::{
    BusEvent, EventBus, NatsPublisher, NatsSettings, RelaySettings, decode, encode, relay_once,
    run_relay, tenant_token,
};

use crate::domain::{Message, MessageEvent};
use crate::grpc::response::{message_to_proto, reaction_to_proto, read_state_to_proto};

/// A new message rendered for the wire once: the `message.created` event carries it, and
/// SendMessage returns it, without converting the message a second time. Opaque to the use
/// cases, which only pass it on.
#[derive(Debug, Clone)]
pub struct Rendered(Box<pb::Message>);

impl Rendered {
    /// `message` as it appears in its `message.created` event (no reactions yet).
    pub fn of(message: &Message) -> Self {
        Self(Box::new(message_to_proto(message, &[])))
    }

    /// The payload of the `message.created` event.
    pub fn created(&self) -> pb::event::Payload {
        pb::event::Payload::MessageCreated(pb::MessageCreated {
            message: Some(self.0.as_ref().clone()),
        })
    }

    /// The message for a response.
    pub fn into_proto(self) -> pb::Message {
        *self.0
    }
}

/// Kinds of the events copied from conversation-service's stream into this service's outbox
/// (so Subscribe delivers and replays them): conversation-service publishes those to NATS
/// itself, so this service's NATS publisher leaves them out.
pub const FOREIGN_KINDS: &[&str] = &["conversation.", "participant."];

/// The wire payload of `event`. Messages in events carry no reactions (those are events of
/// their own).
pub fn payload(event: MessageEvent<'_>) -> pb::event::Payload {
    use pb::event::Payload;
    match event {
        MessageEvent::Created(message) => Payload::MessageCreated(pb::MessageCreated {
            message: Some(message_to_proto(message, &[])),
        }),
        MessageEvent::Edited(message) => Payload::MessageEdited(pb::MessageEdited {
            message: Some(message_to_proto(message, &[])),
        }),
        MessageEvent::Deleted {
            message, sequence, ..
        } => Payload::MessageDeleted(pb::MessageDeleted {
            message_id: message.to_string(),
            sequence,
        }),
        MessageEvent::ReactionAdded(reaction) => Payload::ReactionAdded(pb::ReactionAdded {
            reaction: Some(reaction_to_proto(reaction)),
        }),
        MessageEvent::ReactionRemoved(reaction) => Payload::ReactionRemoved(pb::ReactionRemoved {
            reaction: Some(reaction_to_proto(reaction)),
        }),
        MessageEvent::ReadStateMoved(state) => Payload::ReadStateMoved(pb::ReadStateMoved {
            read_state: Some(read_state_to_proto(state)),
        }),
    }
}
