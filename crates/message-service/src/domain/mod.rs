//! message-service's own types and the rules that need no I/O. Storage rows and protos are
//! translated to and from these at the edges (`crate::store`, `crate::grpc`); the use cases
//! (`crate::app`) speak only these.

pub mod access;
pub mod attachment;
pub mod compliance;
pub mod content;
pub mod emoji;
pub mod event;
pub mod filter;
pub mod message;
pub mod metadata;
pub mod text;

pub use access::Action;
pub use content::{Content, ContentKind};
pub use event::MessageEvent;
pub use filter::MessageFilter;
pub use message::{
    Edit, Message, MessageView, NewMessage, Reaction, ReactionSummary, ReadState, Revision, Unread,
};
pub use metadata::Metadata;
