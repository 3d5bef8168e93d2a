//! Events: the outbox, relay, bus and NATS publishing are shared with conversation-service and
//! live in `messaging_platform::outbox`.

pub use messaging_platform::outbox::{
    BusEvent, EventBus, NatsPublisher, NatsSettings, RelaySettings, decode, encode, relay_once,
    run_relay, tenant_token,
};
