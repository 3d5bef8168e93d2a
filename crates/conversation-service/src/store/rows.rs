//! Rows as domain values and back: kinds and roles are stored by name, and a name this code
//! did not write is [`StoreError::Corrupt`].

use super::{ConversationRow, ParticipantRow, StoreError, StoreResult};
use crate::domain::{Conversation, Kind, Participant, Role};

fn kind(name: &str) -> StoreResult<Kind> {
    Kind::parse(name).ok_or_else(|| StoreError::Corrupt(format!("stored kind {name:?}")))
}

fn role(name: &str) -> StoreResult<Role> {
    Role::parse(name).ok_or_else(|| StoreError::Corrupt(format!("stored role {name:?}")))
}

/// A conversation row as a conversation.
pub fn conversation(row: ConversationRow) -> StoreResult<Conversation> {
    Ok(Conversation {
        kind: kind(&row.kind)?,
        id: row.id,
        tenant_id: row.tenant_id,
        title: row.title,
        description: row.description,
        direct_key: row.direct_key,
        create_request_id: row
            .create_request_id
            .map(messaging_platform::RequestId::trusted),
        create_request_hash: row.create_request_hash,
        creator_id: row.creator_id,
        created_at: row.created_at,
        updater_id: row.updater_id,
        updated_at: row.updated_at,
        last_activity_at: row.last_activity_at,
        archived_at: row.archived_at,
        archiver_id: row.archiver_id,
        deleted_at: row.deleted_at,
        deleter_id: row.deleter_id,
        participant_count: row.participant_count,
        version: row.version,
    })
}

/// A conversation as a row.
pub fn conversation_row(conversation: &Conversation) -> ConversationRow {
    let conversation = conversation.clone();
    ConversationRow {
        kind: conversation.kind.as_str().to_owned(),
        id: conversation.id,
        tenant_id: conversation.tenant_id,
        title: conversation.title,
        description: conversation.description,
        direct_key: conversation.direct_key,
        create_request_id: conversation.create_request_id.map(String::from),
        create_request_hash: conversation.create_request_hash,
        creator_id: conversation.creator_id,
        created_at: conversation.created_at,
        updater_id: conversation.updater_id,
        updated_at: conversation.updated_at,
        last_activity_at: conversation.last_activity_at,
        archived_at: conversation.archived_at,
        archiver_id: conversation.archiver_id,
        deleted_at: conversation.deleted_at,
        deleter_id: conversation.deleter_id,
        participant_count: conversation.participant_count,
        version: conversation.version,
    }
}

/// A participant row as a participant.
pub fn participant(row: ParticipantRow) -> StoreResult<Participant> {
    Ok(Participant {
        role: role(&row.role)?,
        tenant_id: row.tenant_id,
        conversation_id: row.conversation_id,
        user_id: row.user_id,
        joined_at: row.joined_at,
        inviter_id: row.inviter_id,
        role_updated_at: row.role_updated_at,
        role_updater_id: row.role_updater_id,
    })
}

/// A participant as a row.
pub fn participant_row(participant: &Participant) -> ParticipantRow {
    ParticipantRow {
        role: participant.role.as_str().to_owned(),
        tenant_id: participant.tenant_id.clone(),
        conversation_id: participant.conversation_id,
        user_id: participant.user_id.clone(),
        joined_at: participant.joined_at,
        inviter_id: participant.inviter_id.clone(),
        role_updated_at: participant.role_updated_at,
        role_updater_id: participant.role_updater_id.clone(),
    }
}
