//! Background work of message-service, started by `crate::run` and drained on shutdown: the
//! follower of conversation-service's events, the attachment sweeper, and the compliance job
//! (erasures and retention). (Re-encryption after a key rotation is an operator's command over
//! the store: `crate::store::rotation`.)

pub mod attachments;
pub mod compliance;
pub mod membership;
