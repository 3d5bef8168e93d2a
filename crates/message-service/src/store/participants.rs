//! The participant projection: who participates in which conversation, as conversation-service's
//! copied events say, maintained in the copying transaction (`crate::membership`), and read by
//! Subscribe streams within a snapshot together with the relay's head.

use std::collections::HashSet;

use messaging_platform::outbox::EventBus;
use messaging_proto::message::v1 as pb;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::entity::participant;
use messaging_platform::outbox::entity::event;

/// Event kinds that change who participates.
pub const PARTICIPANT_KINDS: [&str; 3] = [
    "participant.added",
    "participant.removed",
    "participant.role_changed",
];

/// Applies a copied conversation-service event to the projection.
#[derive(Debug, Clone, Copy)]
pub struct ParticipantProjection;

#[async_trait::async_trait]
impl messaging_platform::outbox::store::Projection for ParticipantProjection {
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
        let Some(decoded) =
            messaging_platform::outbox::decode_within(bus, Some(snapshot), &row).await
        else {
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
