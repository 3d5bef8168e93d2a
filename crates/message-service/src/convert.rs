//! Conversions from stored rows to protos, shared by the gRPC adapter and the event outbox.

use messaging_platform::time::{to_optional_timestamp, to_timestamp};
use messaging_proto::message::v1 as pb;

use crate::app::{self, MessageView};
use crate::domain::Content;
use crate::store::{ReactionRow, ReadStateRow};

/// See the module documentation.
pub fn content_to_proto(content: Option<Content>) -> Option<pb::message::Content> {
    content.map(|content| match content {
        Content::Text(text) => pb::message::Content::Text(text),
        Content::Encrypted {
            ciphertext,
            algorithm,
            key_id,
        } => pb::message::Content::Encrypted(pb::EncryptedPayload {
            ciphertext,
            algorithm,
            key_id,
            search_tokens: Vec::new(),
        }),
    })
}

/// See the module documentation.
pub fn message_to_proto(view: MessageView) -> pb::Message {
    let row = view.row;
    let content = app::row_content(
        &row.content_kind,
        &row.text,
        &row.ciphertext,
        &row.cipher_algorithm,
        &row.cipher_key_id,
    );
    pb::Message {
        message_id: row.id.to_string(),
        conversation_id: row.conversation_id.to_string(),
        sequence: row.sequence,
        sender_id: row.sender_id,
        content: content_to_proto(content),
        parent_id: row.parent_id.map(|id| id.to_string()).unwrap_or_default(),
        mention_ids: serde_json::from_str(&row.mention_ids).unwrap_or_default(),
        metadata: serde_json::from_str(&row.metadata).unwrap_or_default(),
        attachments: Vec::new(),
        reactions: view
            .reactions
            .into_iter()
            .map(|reaction| pb::ReactionSummary {
                emoji: reaction.emoji,
                count: i32::try_from(reaction.count).unwrap_or(i32::MAX),
                reacted_by_caller: reaction.mine,
            })
            .collect(),
        reply_count: row.reply_count,
        last_reply_time: to_optional_timestamp(row.last_reply_at),
        create_time: Some(to_timestamp(row.created_at)),
        edit_time: to_optional_timestamp(row.edited_at),
        delete_time: to_optional_timestamp(row.deleted_at),
        request_id: row.request_id.unwrap_or_default(),
    }
}

/// See the module documentation.
pub fn read_state_to_proto(row: ReadStateRow) -> pb::ReadState {
    pb::ReadState {
        user_id: row.user_id,
        last_read_sequence: row.last_read_sequence,
        update_time: Some(to_timestamp(row.updated_at)),
    }
}

/// See the module documentation.
pub fn summaries_to_proto(reactions: Vec<app::ReactionSummary>) -> Vec<pb::ReactionSummary> {
    reactions
        .into_iter()
        .map(|reaction| pb::ReactionSummary {
            emoji: reaction.emoji,
            count: i32::try_from(reaction.count).unwrap_or(i32::MAX),
            reacted_by_caller: reaction.mine,
        })
        .collect()
}

/// A reaction row as a proto.
pub fn reaction_to_proto(row: &ReactionRow) -> pb::Reaction {
    pb::Reaction {
        message_id: row.message_id.to_string(),
        user_id: row.user_id.clone(),
        emoji: row.emoji.clone(),
        create_time: Some(to_timestamp(row.created_at)),
    }
}
