//! The participant projection: who participates in which conversation, as conversation-service's
//! copied events say, maintained in the copying transaction (`crate::jobs::membership`), and read by
//! Subscribe streams within a snapshot together with the relay's head.

use std::collections::HashSet;

use messaging_outbox::EventBus;
use messaging_proto::message::v1 as pb;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::entity::{participant, purge};
use messaging_outbox::entity::event;

/// Event kinds that change who participates.
pub const PARTICIPANT_KINDS: [&str; 3] = [
    "participant.added",
    "participant.removed",
    "participant.role_changed",
];

/// Applies a copied conversation-service event to the projection, and seals the stored copy of
/// conversation events (they carry titles) when encryption at rest is on.
#[derive(Debug, Clone)]
pub struct ParticipantProjection {
    /// The tenants' keys.
    pub keys: crate::store::keys::Keyring,
}

/// Kinds of copied events that carry a conversation's title.
pub const TITLED_KINDS: [&str; 4] = [
    "conversation.created",
    "conversation.updated",
    "conversation.archived",
    "conversation.deleted",
];

#[async_trait::async_trait]
impl messaging_outbox::store::Projection for ParticipantProjection {
    async fn seal(
        &self,
        transaction: &sea_orm::DatabaseTransaction,
        event: &pb::Event,
        kind: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, DbErr> {
        if !TITLED_KINDS.contains(&kind) {
            return Ok(payload);
        }
        let key = self
            .keys
            .current(transaction, &event.tenant_id)
            .await
            .map_err(|error| DbErr::Custom(format!("sealing a copied event: {error}")))?;
        let Some(key) = key else {
            return Ok(payload);
        };
        let (Ok(conversation), Ok(event_id)) = (
            Uuid::parse_str(&event.conversation_id),
            Uuid::parse_str(&event.event_id),
        ) else {
            return Ok(payload);
        };
        messaging_outbox::seal_payload(&key, &event.tenant_id, conversation, event_id, &payload)
            .map_err(|error| DbErr::Custom(format!("sealing a copied event: {error}")))
    }

    async fn apply(
        &self,
        transaction: &sea_orm::DatabaseTransaction,
        event: &pb::Event,
    ) -> Result<(), DbErr> {
        let Ok(conversation) = Uuid::parse_str(&event.conversation_id) else {
            return Ok(());
        };
        use pb::event::Payload;
        match &event.payload {
            Some(Payload::ParticipantAdded(change) | Payload::ParticipantRoleChanged(change)) => {
                participant::Entity::insert(participant::ActiveModel {
                    tenant_id: sea_orm::Set(event.tenant_id.clone()),
                    user_id: sea_orm::Set(change.user_id.clone()),
                    conversation_id: sea_orm::Set(conversation),
                    role: sea_orm::Set(change.role.clone()),
                })
                .on_conflict(
                    OnConflict::columns([
                        participant::Column::TenantId,
                        participant::Column::UserId,
                        participant::Column::ConversationId,
                    ])
                    .update_column(participant::Column::Role)
                    .to_owned(),
                )
                .exec_without_returning(transaction)
                .await?;
            }
            // Gone for good: nobody participates any more, and the compliance job deletes the
            // conversation's data (`ComplianceStore::purge_conversation`).
            Some(Payload::ConversationPurged(_)) => {
                participant::Entity::delete_many()
                    .filter(participant::Column::TenantId.eq(&event.tenant_id))
                    .filter(participant::Column::ConversationId.eq(conversation))
                    .exec(transaction)
                    .await?;
                purge::Entity::insert(purge::ActiveModel {
                    tenant_id: sea_orm::Set(event.tenant_id.clone()),
                    conversation_id: sea_orm::Set(conversation),
                    purged_at: sea_orm::Set(messaging_platform::time::now()),
                })
                .on_conflict(
                    OnConflict::columns([purge::Column::TenantId, purge::Column::ConversationId])
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(transaction)
                .await?;
            }
            Some(Payload::ParticipantRemoved(change)) => {
                participant::Entity::delete_many()
                    .filter(participant::Column::TenantId.eq(&event.tenant_id))
                    .filter(participant::Column::UserId.eq(&change.user_id))
                    .filter(participant::Column::ConversationId.eq(conversation))
                    .exec(transaction)
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl super::ParticipantStore for super::SqlStore {
    async fn participants_among(
        &self,
        tenant: &messaging_platform::TenantId,
        conversation: Uuid,
        users: &[String],
    ) -> super::StoreResult<HashSet<String>> {
        let tenant = tenant.as_str();
        if users.is_empty() {
            return Ok(HashSet::new());
        }
        let found: Vec<String> = participant::Entity::find()
            .select_only()
            .column(participant::Column::UserId)
            .filter(participant::Column::TenantId.eq(tenant))
            .filter(participant::Column::ConversationId.eq(conversation))
            .filter(participant::Column::UserId.is_in(users.to_vec()))
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(found.into_iter().collect())
    }
}

/// The conversations `user` of `tenant` participates in, as of position `from`: the
/// projection (which is as of `head`, read in the same snapshot) with the participant events
/// of positions `from + 1 ..= head` undone.
pub async fn conversations_at(
    snapshot: &sea_orm::DatabaseTransaction,
    bus: &EventBus,
    tenant: &str,
    user: &str,
    head: i64,
    from: i64,
) -> Result<HashSet<Uuid>, DbErr> {
    let mut conversations: HashSet<Uuid> = participant::Entity::find()
        .filter(participant::Column::TenantId.eq(tenant))
        .filter(participant::Column::UserId.eq(user))
        .all(snapshot)
        .await?
        .into_iter()
        .map(|row| row.conversation_id)
        .collect();
    if from >= head {
        return Ok(conversations);
    }
    let rows = event::Entity::find()
        .filter(event::Column::TenantId.eq(tenant))
        .filter(event::Column::Kind.is_in(PARTICIPANT_KINDS))
        .filter(event::Column::Position.gt(from))
        .filter(event::Column::Position.lte(head))
        .order_by_asc(event::Column::Position)
        .all(snapshot)
        .await?;
    // The first change of each conversation after `from` tells what it was at `from`.
    let mut undone = HashSet::new();
    for row in rows {
        if undone.contains(&row.conversation_id) {
            continue;
        }
        let Some(decoded) = messaging_outbox::decode_within(bus, Some(snapshot), &row).await else {
            continue;
        };
        use pb::event::Payload;
        let was_participant =
            match &decoded.event.payload {
                Some(Payload::ParticipantAdded(change)) if change.user_id == user => false,
                Some(
                    Payload::ParticipantRemoved(change) | Payload::ParticipantRoleChanged(change),
                ) if change.user_id == user => true,
                _ => continue,
            };
        undone.insert(row.conversation_id);
        if was_participant {
            conversations.insert(row.conversation_id);
        } else {
            conversations.remove(&row.conversation_id);
        }
    }
    Ok(conversations)
}
