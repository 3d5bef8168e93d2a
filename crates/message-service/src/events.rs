//! Events: the outbox, relay, bus and NATS publishing are shared with conversation-service and
//! live in `messaging_platform::outbox`.

pub use messaging_platform::outbox::{
    BusEvent, EventBus, NatsPublisher, NatsSettings, RelaySettings, decode, encode, relay_once,
    run_relay, tenant_token,
};

/// Kinds of the events copied from conversation-service's stream into this service's outbox
/// (so Subscribe delivers and replays them): conversation-service publishes those to NATS
/// itself, so this service's NATS publisher leaves them out.
pub const FOREIGN_KINDS: &[&str] = &["conversation.", "participant."];
