//! Background work of message-service, started by `crate::run` and drained on shutdown: the
//! follower of conversation-service's events and the attachment sweeper. (Re-encryption after a key rotation is an
//! operator's command over the store: `crate::store::rotation`.)

pub mod attachments;
pub mod membership;
