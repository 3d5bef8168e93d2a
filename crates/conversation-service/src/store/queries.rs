//! The SQL of conversation-service: SeaORM queries over its tables, generic over the
//! connection (the database or a change's transaction), the same for SQLite and PostgreSQL.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Query;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use super::entity::{audit_log, conversation, participant};
use super::{
    Archived, ConversationFilter, ConversationKey, ConversationRow, Membership, ParticipantRow,
};
use crate::domain::{Kind, Role};

/// A conversation by id, deleted or not; `lock` takes a row lock (PostgreSQL) for the rest of
/// the transaction, so concurrent changes to one conversation apply one after the other.
pub async fn find_conversation<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    id: Uuid,
    lock: bool,
) -> Result<Option<ConversationRow>, DbErr> {
    let mut query = conversation::Entity::find()
        .filter(conversation::Column::TenantId.eq(tenant))
        .filter(conversation::Column::Id.eq(id));
    if lock {
        query = query.lock_exclusive();
    }
    query.one(connection).await
}

/// A live (not deleted) conversation by one of its unique keys.
pub async fn find_conversation_by<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    key: ConversationKey<'_>,
) -> Result<Option<ConversationRow>, DbErr> {
    let query = conversation::Entity::find().filter(conversation::Column::TenantId.eq(tenant));
    let query = match key {
        ConversationKey::Direct(direct_key) => {
            query.filter(conversation::Column::DirectKey.eq(direct_key))
        }
        ConversationKey::Request {
            creator,
            request_id,
        } => query
            .filter(conversation::Column::CreatorId.eq(creator))
            .filter(conversation::Column::CreateRequestId.eq(request_id)),
    };
    query.one(connection).await
}

pub async fn insert_conversation<C: ConnectionTrait>(
    connection: &C,
    row: ConversationRow,
) -> Result<(), DbErr> {
    conversation::Entity::insert(conversation::ActiveModel::from(row))
        .exec_without_returning(connection)
        .await?;
    Ok(())
}

/// Writes every field of a conversation row.
pub async fn save_conversation<C: ConnectionTrait>(
    connection: &C,
    row: ConversationRow,
) -> Result<ConversationRow, DbErr> {
    let tenant = row.tenant_id.clone();
    let id = row.id;
    let mut active = conversation::ActiveModel::from(row);
    active = active.reset_all();
    conversation::Entity::update_many()
        .set(active)
        .filter(conversation::Column::TenantId.eq(tenant.as_str()))
        .filter(conversation::Column::Id.eq(id))
        .exec(connection)
        .await?;
    find_conversation(connection, &tenant, id, false)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("conversation vanished during update".to_owned()))
}

/// A participant, if the user participates.
pub async fn find_participant<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    conversation_id: Uuid,
    user: &str,
) -> Result<Option<ParticipantRow>, DbErr> {
    participant::Entity::find()
        .filter(participant::Column::TenantId.eq(tenant))
        .filter(participant::Column::ConversationId.eq(conversation_id))
        .filter(participant::Column::UserId.eq(user))
        .one(connection)
        .await
}

/// The participant holding `role` (for the OWNER: at most one).
pub async fn find_participant_with_role<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    conversation_id: Uuid,
    role: Role,
) -> Result<Option<ParticipantRow>, DbErr> {
    participant::Entity::find()
        .filter(participant::Column::TenantId.eq(tenant))
        .filter(participant::Column::ConversationId.eq(conversation_id))
        .filter(participant::Column::Role.eq(role.as_str()))
        .one(connection)
        .await
}

/// Inserts participant rows.
pub async fn insert_participants<C: ConnectionTrait>(
    connection: &C,
    rows: Vec<ParticipantRow>,
) -> Result<(), DbErr> {
    if rows.is_empty() {
        return Ok(());
    }
    participant::Entity::insert_many(rows.into_iter().map(participant::ActiveModel::from))
        .exec_without_returning(connection)
        .await?;
    Ok(())
}

/// Changes a participant's role.
pub async fn set_role<C: ConnectionTrait>(
    connection: &C,
    row: &ParticipantRow,
    role: Role,
    updater: &str,
    at: DateTime<Utc>,
) -> Result<ParticipantRow, DbErr> {
    let mut active = participant::ActiveModel::from(row.clone());
    active.role = Set(role.as_str().to_owned());
    active.role_updated_at = Set(at);
    active.role_updater_id = Set(updater.to_owned());
    active.update(connection).await
}

/// Removes a participant.
pub async fn delete_participant<C: ConnectionTrait>(
    connection: &C,
    row: &ParticipantRow,
) -> Result<(), DbErr> {
    participant::Entity::delete_many()
        .filter(participant::Column::TenantId.eq(row.tenant_id.as_str()))
        .filter(participant::Column::ConversationId.eq(row.conversation_id))
        .filter(participant::Column::UserId.eq(row.user_id.as_str()))
        .exec(connection)
        .await?;
    Ok(())
}

/// Every participant's user id (for DIRECT conversations: the pair).
pub async fn participant_ids<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    conversation_id: Uuid,
) -> Result<Vec<String>, DbErr> {
    participant::Entity::find()
        .select_only()
        .column(participant::Column::UserId)
        .filter(participant::Column::TenantId.eq(tenant))
        .filter(participant::Column::ConversationId.eq(conversation_id))
        .into_tuple()
        .all(connection)
        .await
}

/// Records who did what, in the caller's transaction.
pub async fn insert_audit<C: ConnectionTrait>(
    connection: &C,
    row: audit_log::Model,
) -> Result<(), DbErr> {
    audit_log::Entity::insert(audit_log::ActiveModel::from(row))
        .exec_without_returning(connection)
        .await?;
    Ok(())
}

/// One page of live conversations visible to `user`, newest activity first, after the keyset
/// position `after` (last activity, id), with `limit` rows at most.
pub async fn list_conversations<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    user: &str,
    filter: &ConversationFilter,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: u64,
) -> Result<Vec<ConversationRow>, DbErr> {
    let joined = || {
        Query::select()
            .column(participant::Column::ConversationId)
            .from(participant::Entity)
            .and_where(participant::Column::TenantId.eq(tenant))
            .and_where(participant::Column::UserId.eq(user))
            .to_owned()
    };
    let is_channel = conversation::Column::Kind.eq(Kind::Channel.as_str());
    let membership = match filter.membership {
        Membership::Joined => Condition::all().add(conversation::Column::Id.in_subquery(joined())),
        Membership::Joinable => Condition::all()
            .add(is_channel)
            .add(conversation::Column::Id.not_in_subquery(joined())),
        Membership::All => Condition::any()
            .add(conversation::Column::Id.in_subquery(joined()))
            .add(is_channel),
    };
    let mut query = conversation::Entity::find()
        .filter(conversation::Column::TenantId.eq(tenant))
        .filter(conversation::Column::DeletedAt.is_null())
        .filter(membership);
    if !filter.kinds.is_empty() {
        query = query.filter(
            conversation::Column::Kind.is_in(filter.kinds.iter().map(|kind| kind.as_str())),
        );
    }
    query = match filter.archived {
        Archived::Active => query.filter(conversation::Column::ArchivedAt.is_null()),
        Archived::Archived => query.filter(conversation::Column::ArchivedAt.is_not_null()),
        Archived::All => query,
    };
    if let Some((activity, id)) = after {
        query = query.filter(
            Condition::any()
                .add(conversation::Column::LastActivityAt.lt(activity))
                .add(
                    Condition::all()
                        .add(conversation::Column::LastActivityAt.eq(activity))
                        .add(conversation::Column::Id.lt(id)),
                ),
        );
    }
    query
        .order_by_desc(conversation::Column::LastActivityAt)
        .order_by_desc(conversation::Column::Id)
        .limit(limit)
        .all(connection)
        .await
}

/// The roles of `user` in the given conversations.
pub async fn roles_of<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    user: &str,
    conversation_ids: Vec<Uuid>,
) -> Result<Vec<ParticipantRow>, DbErr> {
    if conversation_ids.is_empty() {
        return Ok(Vec::new());
    }
    participant::Entity::find()
        .filter(participant::Column::TenantId.eq(tenant))
        .filter(participant::Column::UserId.eq(user))
        .filter(participant::Column::ConversationId.is_in(conversation_ids))
        .all(connection)
        .await
}

/// At most `limit` of `user`'s participations in any conversation of the tenant (deleted ones
/// included), by conversation id.
pub async fn participations<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    user: &str,
    limit: u64,
) -> Result<Vec<ParticipantRow>, DbErr> {
    participant::Entity::find()
        .filter(participant::Column::TenantId.eq(tenant))
        .filter(participant::Column::UserId.eq(user))
        .order_by_asc(participant::Column::ConversationId)
        .limit(limit)
        .all(connection)
        .await
}

/// One page of a conversation's participants in join order after the keyset position `after`
/// (join time, user id).
pub async fn list_participants<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    conversation_id: Uuid,
    roles: &[Role],
    after: Option<(DateTime<Utc>, String)>,
    limit: u64,
) -> Result<Vec<ParticipantRow>, DbErr> {
    let mut query = participant::Entity::find()
        .filter(participant::Column::TenantId.eq(tenant))
        .filter(participant::Column::ConversationId.eq(conversation_id));
    if !roles.is_empty() {
        query =
            query.filter(participant::Column::Role.is_in(roles.iter().map(|role| role.as_str())));
    }
    if let Some((joined_at, user)) = after {
        query = query.filter(
            Condition::any()
                .add(participant::Column::JoinedAt.gt(joined_at))
                .add(
                    Condition::all()
                        .add(participant::Column::JoinedAt.eq(joined_at))
                        .add(participant::Column::UserId.gt(user)),
                ),
        );
    }
    query
        .order_by_asc(participant::Column::JoinedAt)
        .order_by_asc(participant::Column::UserId)
        .limit(limit)
        .all(connection)
        .await
}

/// Purges at most `limit` conversations deleted before `deleted_before`, oldest deletion
/// first, with their participants and audit rows (by cascade). Returns the purged rows.
pub async fn purge_deleted<C: ConnectionTrait>(
    connection: &C,
    deleted_before: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<conversation::Model>, DbErr> {
    let rows = conversation::Entity::find()
        .filter(conversation::Column::DeletedAt.is_not_null())
        .filter(conversation::Column::DeletedAt.lt(deleted_before))
        .order_by_asc(conversation::Column::DeletedAt)
        .limit(limit)
        .lock_exclusive()
        .all(connection)
        .await?;
    if !rows.is_empty() {
        conversation::Entity::delete_many()
            .filter(conversation::Column::Id.is_in(rows.iter().map(|row| row.id)))
            .exec(connection)
            .await?;
    }
    Ok(rows)
}
