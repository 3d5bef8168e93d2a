//! Domain values as protos: what responses carry, and what the outbox's events carry
//! (`crate::events` uses these too, so a message looks the same in both).

use messaging_platform::time::{to_optional_timestamp, to_timestamp};
use messaging_proto::message::v1 as pb;

use crate::domain::attachment::{Attachment, AttachmentState};
use crate::domain::{
    Content, Message, MessageView, Reaction, ReactionSummary, ReadState, Revision,
};

/// A message's content as the proto oneof.
pub fn content_to_proto(content: Option<&Content>) -> Option<pb::message::Content> {
    content.map(|content| match content {
        Content::Text(text) => pb::message::Content::Text(text.clone()),
        Content::Encrypted {
            ciphertext,
            algorithm,
            key_id,
        } => pb::message::Content::Encrypted(pb::EncryptedPayload {
            ciphertext: ciphertext.clone(),
            algorithm: algorithm.clone(),
            key_id: key_id.clone(),
            search_tokens: Vec::new(),
        }),
    })
}

/// An attachment's metadata.
pub fn attachment_to_proto(attachment: &Attachment) -> pb::Attachment {
    pb::Attachment {
        attachment_id: attachment.id.to_string(),
        file_name: attachment.file_name.clone(),
        content_type: attachment.content_type.clone(),
        size_bytes: attachment.size,
        sha256: attachment.sha256.clone(),
        uploader_id: attachment.uploader.clone(),
        create_time: Some(to_timestamp(attachment.created_at)),
        declared_content_type: attachment.declared_type.clone(),
        state: match attachment.state {
            AttachmentState::Uploading => pb::AttachmentState::Uploading,
            AttachmentState::Pending => pb::AttachmentState::Pending,
            AttachmentState::Clean => pb::AttachmentState::Clean,
            AttachmentState::Infected => pb::AttachmentState::Infected,
        }
        .into(),
        conversation_id: attachment.conversation.to_string(),
        message_id: attachment
            .message
            .map(|id| id.to_string())
            .unwrap_or_default(),
        uploaded_bytes: attachment.uploaded,
    }
}

/// A message with the caller's view of its reactions.
pub fn message_to_proto(message: &Message, reactions: &[ReactionSummary]) -> pb::Message {
    pb::Message {
        message_id: message.id.to_string(),
        conversation_id: message.conversation.to_string(),
        sequence: message.sequence,
        sender_id: message.sender.clone(),
        content: content_to_proto(message.content.as_ref()),
        parent_id: message.parent.map(|id| id.to_string()).unwrap_or_default(),
        mention_ids: message.mentions.clone(),
        metadata: message
            .metadata
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
        attachments: message
            .attachments
            .iter()
            .map(attachment_to_proto)
            .collect(),
        reactions: summaries_to_proto(reactions),
        reply_count: message.reply_count,
        last_reply_time: to_optional_timestamp(message.last_reply_at),
        create_time: Some(to_timestamp(message.created_at)),
        edit_time: to_optional_timestamp(message.edited_at),
        delete_time: to_optional_timestamp(message.deleted_at),
        request_id: message
            .request_id
            .as_ref()
            .map(|id| id.to_string())
            .unwrap_or_default(),
    }
}

/// [`message_to_proto`] of a view.
pub fn view_to_proto(view: &MessageView) -> pb::Message {
    message_to_proto(&view.message, &view.reactions)
}

/// A read watermark.
pub fn read_state_to_proto(state: &ReadState) -> pb::ReadState {
    pb::ReadState {
        user_id: state.user.clone(),
        last_read_sequence: state.last_read_sequence,
        update_time: Some(to_timestamp(state.updated_at)),
    }
}

/// Reaction summaries.
pub fn summaries_to_proto(reactions: &[ReactionSummary]) -> Vec<pb::ReactionSummary> {
    reactions
        .iter()
        .map(|reaction| pb::ReactionSummary {
            emoji: reaction.emoji.clone(),
            count: i32::try_from(reaction.count).unwrap_or(i32::MAX),
            reacted_by_caller: reaction.mine,
        })
        .collect()
}

/// One user's reaction.
pub fn reaction_to_proto(reaction: &Reaction) -> pb::Reaction {
    pb::Reaction {
        message_id: reaction.message.to_string(),
        user_id: reaction.user.clone(),
        emoji: reaction.emoji.clone(),
        create_time: Some(to_timestamp(reaction.created_at)),
    }
}

/// An earlier version of a message.
pub fn revision_to_proto(revision: &Revision) -> pb::MessageRevision {
    pb::MessageRevision {
        message_id: revision.message.to_string(),
        revision: revision.revision,
        content: revision.content.as_ref().map(|content| match content {
            Content::Text(text) => pb::message_revision::Content::Text(text.clone()),
            Content::Encrypted {
                ciphertext,
                algorithm,
                key_id,
            } => pb::message_revision::Content::Encrypted(pb::EncryptedPayload {
                ciphertext: ciphertext.clone(),
                algorithm: algorithm.clone(),
                key_id: key_id.clone(),
                search_tokens: Vec::new(),
            }),
        }),
        create_time: Some(to_timestamp(revision.created_at)),
    }
}
