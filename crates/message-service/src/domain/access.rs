//! What a caller may be asking to do in a conversation, as message-service's use cases ask it
//! of conversation-service (`crate::peer` maps it onto the wire).

/// An action in a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Read its messages, reactions and read state; subscribe to it.
    Read,
    /// Send, edit or delete one's own messages; typing indicators.
    Post,
    /// Add or remove one's reactions.
    React,
    /// Delete others' messages, read others' revisions.
    Moderate,
}
