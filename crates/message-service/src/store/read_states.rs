//! [`ReadStateStore`] on SQL: watermarks, and unread counts that cost per conversation and
//! deletion, not per message.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use messaging_platform::db::begin_write;
use messaging_platform::time::now;
use messaging_platform::{TenantId, UserId};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, JoinType, OnConflict, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder,
};
use uuid::Uuid;

use super::entity::{deletion, mention, read_state, sequence};
use super::rows::read_state_from_row;
use super::{ReadStateStore, SqlStore, StoreResult};
use crate::domain::{MessageEvent, ReadState, Unread};

type ReadStateRow = read_state::Model;

#[async_trait::async_trait]
impl ReadStateStore for SqlStore {
    async fn mark_read(
        &self,
        tenant: &TenantId,
        conversation: Uuid,
        user: &UserId,
        up_to: i64,
    ) -> StoreResult<(ReadState, bool)> {
        let tenant = tenant.as_str();
        let user = user.as_str();
        let transaction = begin_write(&self.db).await?;
        let last = last_sequence(&transaction, tenant, conversation).await?;
        let target = std::cmp::min(up_to, last);
        let at = now();
        let moved = raise_watermark(&transaction, tenant, conversation, user, target, at).await?;
        let state = if moved {
            ReadState {
                conversation,
                user: user.to_owned(),
                last_read_sequence: target,
                updated_at: at,
            }
        } else {
            read_state(&transaction, tenant, conversation, user)
                .await?
                .map_or_else(
                    || ReadState {
                        conversation,
                        user: user.to_owned(),
                        last_read_sequence: 0,
                        updated_at: at,
                    },
                    read_state_from_row,
                )
        };
        if moved {
            let event = MessageEvent::ReadStateMoved(&state);
            self.record(&transaction, None, tenant, user, at, event)
                .await?;
        }
        transaction.commit().await?;
        if moved {
            self.bus.committed();
        }
        Ok((state, moved))
    }

    async fn read_states(
        &self,
        tenant: &TenantId,
        conversation: Uuid,
    ) -> StoreResult<Vec<ReadState>> {
        let tenant = tenant.as_str();
        let rows = read_state::Entity::find()
            .filter(read_state::Column::TenantId.eq(tenant))
            .filter(read_state::Column::ConversationId.eq(conversation))
            .order_by_asc(read_state::Column::UserId)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(read_state_from_row).collect())
    }

    async fn unread(
        &self,
        tenant: &TenantId,
        user: &UserId,
        conversations: &[Uuid],
    ) -> StoreResult<HashMap<Uuid, Unread>> {
        let tenant = tenant.as_str();
        let user = user.as_str();
        Ok(unread_counts(&self.db, tenant, user, conversations).await?)
    }
}

/// The conversation's latest sequence (0 before the first message).
async fn last_sequence<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    conversation: Uuid,
) -> Result<i64, DbErr> {
    Ok(
        sequence::Entity::find_by_id((tenant.to_owned(), conversation))
            .one(connection)
            .await?
            .map_or(0, |row| row.last_sequence),
    )
}

/// A user's read state in a conversation.
async fn read_state<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    conversation: Uuid,
    user: &str,
) -> Result<Option<ReadStateRow>, DbErr> {
    read_state::Entity::find_by_id((tenant.to_owned(), conversation, user.to_owned()))
        .one(connection)
        .await
}

/// Moves a user's watermark forward to `sequence`; true when this call moved it. Race-free
/// without a read first: an UPDATE that only raises, else an INSERT that does nothing on a row
/// that exists (a concurrent first MarkRead of the same user may have inserted it meanwhile;
/// then the UPDATE is tried once more). A watermark of 0 is recorded but is no move.
async fn raise_watermark<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    conversation: Uuid,
    user: &str,
    sequence: i64,
    at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let raise = || {
        read_state::Entity::update_many()
            .col_expr(read_state::Column::LastReadSequence, Expr::value(sequence))
            .col_expr(read_state::Column::UpdatedAt, Expr::value(at))
            .filter(read_state::Column::TenantId.eq(tenant))
            .filter(read_state::Column::ConversationId.eq(conversation))
            .filter(read_state::Column::UserId.eq(user))
            .filter(read_state::Column::LastReadSequence.lt(sequence))
            .exec(connection)
    };
    if raise().await?.rows_affected > 0 {
        return Ok(true);
    }
    let inserted = read_state::Entity::insert(read_state::ActiveModel::from(ReadStateRow {
        tenant_id: tenant.to_owned(),
        conversation_id: conversation,
        user_id: user.to_owned(),
        last_read_sequence: sequence,
        updated_at: at,
    }))
    .on_conflict_do_nothing()
    .exec_without_returning(connection)
    .await?;
    if matches!(inserted, sea_orm::TryInsertResult::Inserted(rows) if rows > 0) {
        return Ok(sequence > 0);
    }
    Ok(raise().await?.rows_affected > 0)
}

#[derive(Debug, FromQueryResult)]
struct CountRow {
    conversation_id: Uuid,
    count: i64,
}

/// Unread figures for many conversations in four indexed queries. Sending moves the sender's
/// watermark to its message, so after the watermark there are no own messages; the unread count
/// is then the sequence distance minus the deletions in that range, and the cost depends on the
/// number of conversations and deletions, not on history length.
async fn unread_counts<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    user: &str,
    conversations: &[Uuid],
) -> Result<HashMap<Uuid, Unread>, DbErr> {
    let mut result: HashMap<Uuid, Unread> = conversations
        .iter()
        .map(|id| (*id, Unread::default()))
        .collect();
    if conversations.is_empty() {
        return Ok(result);
    }
    for row in sequence::Entity::find()
        .filter(sequence::Column::TenantId.eq(tenant))
        .filter(sequence::Column::ConversationId.is_in(conversations.to_vec()))
        .all(connection)
        .await?
    {
        if let Some(entry) = result.get_mut(&row.conversation_id) {
            entry.last_sequence = row.last_sequence;
        }
    }
    for row in read_state::Entity::find()
        .filter(read_state::Column::TenantId.eq(tenant))
        .filter(read_state::Column::UserId.eq(user))
        .filter(read_state::Column::ConversationId.is_in(conversations.to_vec()))
        .all(connection)
        .await?
    {
        if let Some(entry) = result.get_mut(&row.conversation_id) {
            entry.last_read_sequence = row.last_read_sequence;
        }
    }
    for row in counts_after_watermark(
        connection,
        deletion::Entity,
        tenant,
        user,
        conversations,
        None,
    )
    .await?
    {
        if let Some(entry) = result.get_mut(&row.conversation_id) {
            entry.unread -= row.count;
        }
    }
    let mentioning_user = Expr::col((Alias::new("t"), mention::Column::UserId)).eq(user);
    for row in counts_after_watermark(
        connection,
        mention::Entity,
        tenant,
        user,
        conversations,
        Some(mentioning_user),
    )
    .await?
    {
        if let Some(entry) = result.get_mut(&row.conversation_id) {
            entry.mentions = row.count;
        }
    }
    for entry in result.values_mut() {
        entry.unread += std::cmp::max(entry.last_sequence - entry.last_read_sequence, 0);
        entry.unread = std::cmp::max(entry.unread, 0);
    }
    Ok(result)
}

/// Per conversation, the rows of `table` (deletions or mentions: both have `tenant_id`,
/// `conversation_id`, `sequence` and `sender_id`) after `user`'s watermark and not sent by
/// `user`, further restricted by `extra` (on alias `t`).
async fn counts_after_watermark<C: ConnectionTrait, E: EntityTrait>(
    connection: &C,
    table: E,
    tenant: &str,
    user: &str,
    conversations: &[Uuid],
    extra: Option<sea_orm::sea_query::SimpleExpr>,
) -> Result<Vec<CountRow>, DbErr> {
    let column = |name: &str| Expr::col((Alias::new("t"), Alias::new(name)));
    let read = |name: &str| Expr::col((Alias::new("r"), Alias::new(name)));
    let join = Condition::all()
        .add(read("tenant_id").equals((Alias::new("t"), Alias::new("tenant_id"))))
        .add(read("conversation_id").equals((Alias::new("t"), Alias::new("conversation_id"))))
        .add(read("user_id").eq(user));
    let mut query = Query::select();
    query
        .expr_as(column("conversation_id"), Alias::new("conversation_id"))
        .expr_as(column("sequence").count(), Alias::new("count"))
        .from_as(table, Alias::new("t"))
        .join_as(
            JoinType::LeftJoin,
            read_state::Entity,
            Alias::new("r"),
            join,
        )
        .and_where(column("tenant_id").eq(tenant))
        .and_where(column("conversation_id").is_in(conversations.to_vec()))
        .and_where(column("sender_id").ne(user))
        .and_where(read("last_read_sequence").if_null(0).lt(column("sequence")))
        .group_by_col((Alias::new("t"), Alias::new("conversation_id")));
    if let Some(extra) = extra {
        query.and_where(extra);
    }
    CountRow::find_by_statement(connection.get_database_backend().build(&query))
        .all(connection)
        .await
}

/// Moves a user's watermark to `sequence` if that is forward, in one statement (an upsert
/// that keeps the higher of the two): for sending, inside its transaction.
pub(super) async fn raise_read_state<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    conversation: Uuid,
    user: &str,
    sequence: i64,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    raise_read_states(
        connection,
        vec![read_state::Model {
            tenant_id: tenant.to_owned(),
            conversation_id: conversation,
            user_id: user.to_owned(),
            last_read_sequence: sequence,
            updated_at: at,
        }],
    )
    .await
}

/// Moves each row's watermark forward to its sequence, a few hundred rows a statement (an
/// upsert that keeps the higher of the two). The rows name distinct users of conversations;
/// given in one order by every caller, concurrent transactions lock them in that order.
pub(super) async fn raise_read_states<C: ConnectionTrait>(
    connection: &C,
    rows: Vec<read_state::Model>,
) -> Result<(), DbErr> {
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let statement = raise_read_states_statement(rows.by_ref().take(500).collect());
        connection.execute(&statement).await?;
    }
    Ok(())
}

/// [`raise_read_states_statement`] with its rows in placeholder `$parameter` (PostgreSQL; see
/// [`messaging_platform::db::json_rows`]), locked in the rows' order.
pub(super) fn raise_read_states_json(parameter: usize) -> String {
    let higher = |column: &str| {
        format!(
            "\"{column}\" = CASE WHEN excluded.\"last_read_sequence\" > \"read_states\".\"last_read_sequence\" \
             THEN excluded.\"{column}\" ELSE \"read_states\".\"{column}\" END"
        )
    };
    format!(
        "{} ON CONFLICT (\"tenant_id\", \"conversation_id\", \"user_id\") DO UPDATE SET {}, {}",
        messaging_platform::db::json_rows::insert::<read_state::Entity>(parameter, &[]),
        higher("last_read_sequence"),
        higher("updated_at"),
    )
}

/// The statement of [`raise_read_states`] for `rows` (at least one).
pub(super) fn raise_read_states_statement(
    rows: Vec<read_state::Model>,
) -> sea_orm::sea_query::InsertStatement {
    use sea_orm::QueryTrait as _;
    let current = || Expr::col((read_state::Entity, read_state::Column::LastReadSequence));
    let proposed = || Expr::col((Alias::new("excluded"), read_state::Column::LastReadSequence));
    let higher = |column: read_state::Column| {
        Expr::case(
            proposed().gt(current()),
            Expr::col((Alias::new("excluded"), column)),
        )
        .finally(Expr::col((read_state::Entity, column)))
    };
    read_state::Entity::insert_many(rows.into_iter().map(read_state::ActiveModel::from))
        .on_conflict(
            OnConflict::columns([
                read_state::Column::TenantId,
                read_state::Column::ConversationId,
                read_state::Column::UserId,
            ])
            .value(
                read_state::Column::LastReadSequence,
                higher(read_state::Column::LastReadSequence),
            )
            .value(
                read_state::Column::UpdatedAt,
                higher(read_state::Column::UpdatedAt),
            )
            .to_owned(),
        )
        .into_query()
}
