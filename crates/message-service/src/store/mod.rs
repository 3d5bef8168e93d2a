//! Persistence of message-service, in its own schema (`message`) or SQLite file: SeaORM
//! queries that are the same for both backends. Every function filters by tenant.

pub mod entity;
pub mod migration;
pub mod participants;

use chrono::{DateTime, Utc};
use messaging_platform::config::DatabaseSettings;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, JoinType, OnConflict, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

pub use entity::message::Model as MessageRow;
pub use entity::reaction::Model as ReactionRow;
pub use entity::read_state::Model as ReadStateRow;
pub use entity::revision::Model as RevisionRow;
use entity::{deletion, mention, message, reaction, read_state, revision, search_token, sequence};
pub use messaging_platform::outbox::store::{
    EventRow, NewEvent, events_after, insert_event, prune_events, publish_pending, relay_state,
    relay_state_full, stamp_events,
};

/// The default PostgreSQL schema of this service.
pub const DEFAULT_SCHEMA: &str = "message";

/// Connects and brings the schema up to date.
pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<DatabaseConnection> {
    messaging_platform::db::connect_and_migrate::<migration::Migrator>(settings, DEFAULT_SCHEMA)
        .await
}

pub use messaging_platform::db::is_unique_violation;

/// Takes the conversation's next sequence. The row stays locked until the transaction ends, so
/// concurrent senders are numbered in commit order, and a rollback returns the number.
pub async fn next_sequence<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    conversation: Uuid,
) -> Result<i64, DbErr> {
    let last = Alias::new("last_sequence");
    let statement = Query::insert()
        .into_table(sequence::Entity)
        .columns([
            sequence::Column::TenantId,
            sequence::Column::ConversationId,
            sequence::Column::LastSequence,
        ])
        .values_panic([tenant.into(), conversation.into(), 1_i64.into()])
        .on_conflict(
            OnConflict::columns([sequence::Column::TenantId, sequence::Column::ConversationId])
                .value(
                    sequence::Column::LastSequence,
                    Expr::col((Alias::new("conversation_sequences"), last.clone())).add(1),
                )
                .to_owned(),
        )
        .returning_col(sequence::Column::LastSequence)
        .to_owned();
    let row = connection
        .query_one(&statement)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("no sequence returned".to_owned()))?;
    row.try_get("", "last_sequence")
}

/// The conversation's latest sequence (0 before the first message).
pub async fn last_sequence<C: ConnectionTrait>(
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

/// A message of a conversation; `lock` holds its row until the transaction ends (PostgreSQL).
pub async fn find_message<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    conversation: Uuid,
    id: Uuid,
    lock: bool,
) -> Result<Option<MessageRow>, DbErr> {
    let mut query = message::Entity::find()
        .filter(message::Column::TenantId.eq(tenant))
        .filter(message::Column::ConversationId.eq(conversation))
        .filter(message::Column::Id.eq(id));
    if lock {
        query = query.lock_exclusive();
    }
    query.one(connection).await
}

/// The message a sender sent with a request id.
pub async fn find_by_request<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    conversation: Uuid,
    sender: &str,
    request_id: &str,
) -> Result<Option<MessageRow>, DbErr> {
    message::Entity::find()
        .filter(message::Column::TenantId.eq(tenant))
        .filter(message::Column::ConversationId.eq(conversation))
        .filter(message::Column::SenderId.eq(sender))
        .filter(message::Column::RequestId.eq(request_id))
        .one(connection)
        .await
}

/// Inserts a message.
pub async fn insert_message<C: ConnectionTrait>(
    connection: &C,
    row: MessageRow,
) -> Result<(), DbErr> {
    message::Entity::insert(message::ActiveModel::from(row))
        .exec_without_returning(connection)
        .await?;
    Ok(())
}

/// Writes every column of a message.
pub async fn save_message<C: ConnectionTrait>(
    connection: &C,
    row: MessageRow,
) -> Result<MessageRow, DbErr> {
    message::ActiveModel::from(row)
        .reset_all()
        .update(connection)
        .await
}

/// Stores an earlier version of a message.
pub async fn insert_revision<C: ConnectionTrait>(
    connection: &C,
    row: RevisionRow,
) -> Result<(), DbErr> {
    revision::Entity::insert(revision::ActiveModel::from(row))
        .exec_without_returning(connection)
        .await?;
    Ok(())
}

/// Earlier versions of a message after revision `after`, oldest first.
pub async fn list_revisions<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    message_id: Uuid,
    after: i32,
    limit: u64,
) -> Result<Vec<RevisionRow>, DbErr> {
    revision::Entity::find()
        .filter(revision::Column::TenantId.eq(tenant))
        .filter(revision::Column::MessageId.eq(message_id))
        .filter(revision::Column::Revision.gt(after))
        .order_by_asc(revision::Column::Revision)
        .limit(limit)
        .all(connection)
        .await
}

/// Removes a deleted message's revisions, mentions and reactions, and records its sequence
/// among the deletions that unread counts subtract.
pub async fn erase_message_dependents<C: ConnectionTrait>(
    connection: &C,
    row: &MessageRow,
) -> Result<(), DbErr> {
    revision::Entity::delete_many()
        .filter(revision::Column::TenantId.eq(row.tenant_id.as_str()))
        .filter(revision::Column::MessageId.eq(row.id))
        .exec(connection)
        .await?;
    replace_mentions(connection, row, &[]).await?;
    reaction::Entity::delete_many()
        .filter(reaction::Column::TenantId.eq(row.tenant_id.as_str()))
        .filter(reaction::Column::MessageId.eq(row.id))
        .exec(connection)
        .await?;
    deletion::Entity::insert(deletion::ActiveModel::from(deletion::Model {
        tenant_id: row.tenant_id.clone(),
        conversation_id: row.conversation_id,
        sequence: row.sequence,
        sender_id: row.sender_id.clone(),
    }))
    .on_conflict_do_nothing()
    .exec_without_returning(connection)
    .await?;
    Ok(())
}

/// Records the users a new message mentions.
pub async fn insert_mentions<C: ConnectionTrait>(
    connection: &C,
    row: &MessageRow,
    users: &[String],
) -> Result<(), DbErr> {
    if users.is_empty() {
        return Ok(());
    }
    mention::Entity::insert_many(users.iter().map(|user| {
        mention::ActiveModel::from(mention::Model {
            tenant_id: row.tenant_id.clone(),
            conversation_id: row.conversation_id,
            user_id: user.clone(),
            sequence: row.sequence,
            sender_id: row.sender_id.clone(),
        })
    }))
    .exec_without_returning(connection)
    .await?;
    Ok(())
}

/// Sets the users an existing message mentions.
pub async fn replace_mentions<C: ConnectionTrait>(
    connection: &C,
    row: &MessageRow,
    users: &[String],
) -> Result<(), DbErr> {
    mention::Entity::delete_many()
        .filter(mention::Column::TenantId.eq(row.tenant_id.as_str()))
        .filter(mention::Column::ConversationId.eq(row.conversation_id))
        .filter(mention::Column::Sequence.eq(row.sequence))
        .exec(connection)
        .await?;
    insert_mentions(connection, row, users).await
}

/// Filters of a message listing.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    /// Only this sender.
    pub sender: Option<String>,
    /// Only replies of this root.
    pub thread: Option<Uuid>,
    /// Only messages with attachments.
    pub has_attachments: bool,
    /// Sent at or after.
    pub start: Option<DateTime<Utc>>,
    /// Sent before.
    pub end: Option<DateTime<Utc>>,
}

impl MessageFilter {
    /// The filter as a condition on message columns, named through `column`.
    pub fn condition(&self, column: &dyn Fn(&str) -> Expr) -> Condition {
        let mut condition = Condition::all();
        if let Some(sender) = &self.sender {
            condition = condition.add(column("sender_id").eq(sender.as_str()));
        }
        if let Some(thread) = self.thread {
            condition = condition.add(column("parent_id").eq(thread));
        }
        if self.has_attachments {
            condition = condition.add(column("has_attachments").eq(true));
        }
        if let Some(start) = self.start {
            condition = condition.add(column("created_at").gte(start));
        }
        if let Some(end) = self.end {
            condition = condition.add(column("created_at").lt(end));
        }
        condition
    }

    /// The filter as strings, for page-token fingerprints: a token is valid only with the
    /// filter it was made for.
    pub fn fingerprint_parts(&self) -> [String; 5] {
        let micros = |time: Option<DateTime<Utc>>| {
            time.map(|time| time.timestamp_micros().to_string())
                .unwrap_or_default()
        };
        [
            self.sender.clone().unwrap_or_default(),
            self.thread.map(|id| id.to_string()).unwrap_or_default(),
            if self.has_attachments { "1" } else { "0" }.to_owned(),
            micros(self.start),
            micros(self.end),
        ]
    }
}

/// A range of sequences, exclusive at both ends, and the order to walk it.
#[derive(Debug, Clone, Copy)]
pub struct SequenceRange {
    /// Only sequences above this.
    pub above: Option<i64>,
    /// Only sequences below this.
    pub below: Option<i64>,
    /// Newest first.
    pub descending: bool,
}

/// One keyset page of a conversation's messages: the cost depends on the page, not on the
/// conversation's length (the `(tenant, conversation, sequence)` index serves the range).
pub async fn list_messages<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    conversation: Uuid,
    filter: &MessageFilter,
    range: SequenceRange,
    limit: u64,
) -> Result<Vec<MessageRow>, DbErr> {
    let mut query = message::Entity::find()
        .filter(message::Column::TenantId.eq(tenant))
        .filter(message::Column::ConversationId.eq(conversation));
    if let Some(above) = range.above {
        query = query.filter(message::Column::Sequence.gt(above));
    }
    if let Some(below) = range.below {
        query = query.filter(message::Column::Sequence.lt(below));
    }
    query = query.filter(filter.condition(&|name| Expr::col((message::Entity, Alias::new(name)))));
    query = if range.descending {
        query.order_by_desc(message::Column::Sequence)
    } else {
        query.order_by_asc(message::Column::Sequence)
    };
    query.limit(limit).all(connection).await
}

/// Adds a reaction; adding it twice changes nothing.
pub async fn add_reaction<C: ConnectionTrait>(
    connection: &C,
    row: ReactionRow,
) -> Result<bool, DbErr> {
    let inserted = reaction::Entity::insert(reaction::ActiveModel::from(row))
        .on_conflict_do_nothing()
        .exec_without_returning(connection)
        .await?;
    Ok(matches!(inserted, sea_orm::TryInsertResult::Inserted(rows) if rows > 0))
}

/// Removes a reaction if present.
pub async fn remove_reaction<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    message_id: Uuid,
    user: &str,
    emoji: &str,
) -> Result<bool, DbErr> {
    let deleted = reaction::Entity::delete_many()
        .filter(reaction::Column::TenantId.eq(tenant))
        .filter(reaction::Column::MessageId.eq(message_id))
        .filter(reaction::Column::UserId.eq(user))
        .filter(reaction::Column::Emoji.eq(emoji))
        .exec(connection)
        .await?;
    Ok(deleted.rows_affected > 0)
}

/// Per message and emoji: how many reacted, and whether `user` did.
#[derive(Debug, Clone, FromQueryResult)]
pub struct ReactionCount {
    /// The message.
    pub message_id: Uuid,
    /// The emoji.
    pub emoji: String,
    /// How many users.
    pub count: i64,
    /// 1 when `user` is among them.
    pub mine: i64,
}

/// Reaction counts for a page of messages, in first-reaction order per message.
pub async fn reaction_counts<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    message_ids: Vec<Uuid>,
    user: &str,
) -> Result<Vec<ReactionCount>, DbErr> {
    if message_ids.is_empty() {
        return Ok(Vec::new());
    }
    reaction::Entity::find()
        .select_only()
        .column(reaction::Column::MessageId)
        .column(reaction::Column::Emoji)
        .column_as(reaction::Column::UserId.count(), "count")
        .column_as(
            Expr::case(reaction::Column::UserId.eq(user), 1_i64)
                .finally(0_i64)
                .max(),
            "mine",
        )
        .filter(reaction::Column::TenantId.eq(tenant))
        .filter(reaction::Column::MessageId.is_in(message_ids))
        .group_by(reaction::Column::MessageId)
        .group_by(reaction::Column::Emoji)
        .order_by_asc(reaction::Column::CreatedAt.min())
        .order_by_asc(reaction::Column::Emoji)
        .into_model::<ReactionCount>()
        .all(connection)
        .await
}

/// A page of a message's reactions after the keyset position (time, user, emoji).
pub async fn list_reactions<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    message_id: Uuid,
    emoji: Option<&str>,
    after: Option<(DateTime<Utc>, String, String)>,
    limit: u64,
) -> Result<Vec<ReactionRow>, DbErr> {
    let mut query = reaction::Entity::find()
        .filter(reaction::Column::TenantId.eq(tenant))
        .filter(reaction::Column::MessageId.eq(message_id));
    if let Some(emoji) = emoji {
        query = query.filter(reaction::Column::Emoji.eq(emoji));
    }
    if let Some((time, user, emoji)) = after {
        query = query.filter(
            Condition::any()
                .add(reaction::Column::CreatedAt.gt(time))
                .add(
                    Condition::all()
                        .add(reaction::Column::CreatedAt.eq(time))
                        .add(reaction::Column::UserId.gt(user.as_str())),
                )
                .add(
                    Condition::all()
                        .add(reaction::Column::CreatedAt.eq(time))
                        .add(reaction::Column::UserId.eq(user.as_str()))
                        .add(reaction::Column::Emoji.gt(emoji.as_str())),
                ),
        );
    }
    query
        .order_by_asc(reaction::Column::CreatedAt)
        .order_by_asc(reaction::Column::UserId)
        .order_by_asc(reaction::Column::Emoji)
        .limit(limit)
        .all(connection)
        .await
}

/// A user's read state in a conversation.
pub async fn read_state<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    conversation: Uuid,
    user: &str,
) -> Result<Option<ReadStateRow>, DbErr> {
    read_state::Entity::find_by_id((tenant.to_owned(), conversation, user.to_owned()))
        .one(connection)
        .await
}

/// Moves a user's watermark to `sequence` if that is forward; returns the state after.
pub async fn advance_read_state<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    conversation: Uuid,
    user: &str,
    sequence: i64,
    at: DateTime<Utc>,
) -> Result<ReadStateRow, DbErr> {
    match read_state(connection, tenant, conversation, user).await? {
        Some(current) if current.last_read_sequence >= sequence => Ok(current),
        Some(current) => {
            let mut active = read_state::ActiveModel::from(current);
            active.last_read_sequence = sea_orm::Set(sequence);
            active.updated_at = sea_orm::Set(at);
            active.update(connection).await
        }
        None => {
            let row = ReadStateRow {
                tenant_id: tenant.to_owned(),
                conversation_id: conversation,
                user_id: user.to_owned(),
                last_read_sequence: sequence,
                updated_at: at,
            };
            read_state::Entity::insert(read_state::ActiveModel::from(row.clone()))
                .exec_without_returning(connection)
                .await?;
            Ok(row)
        }
    }
}

/// Moves a user's watermark to `sequence` if that is forward, in one statement (an upsert
/// that keeps the higher of the two), returning nothing: for sending, inside its transaction.
pub async fn raise_read_state<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    conversation: Uuid,
    user: &str,
    sequence: i64,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    let row = ReadStateRow {
        tenant_id: tenant.to_owned(),
        conversation_id: conversation,
        user_id: user.to_owned(),
        last_read_sequence: sequence,
        updated_at: at,
    };
    let current = || Expr::col((read_state::Entity, read_state::Column::LastReadSequence));
    let proposed = || Expr::col((Alias::new("excluded"), read_state::Column::LastReadSequence));
    let higher = |column: read_state::Column| {
        Expr::case(
            proposed().gt(current()),
            Expr::col((Alias::new("excluded"), column)),
        )
        .finally(Expr::col((read_state::Entity, column)))
    };
    read_state::Entity::insert(read_state::ActiveModel::from(row))
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
        .exec_without_returning(connection)
        .await?;
    Ok(())
}

/// Every read state of a conversation.
pub async fn read_states<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    conversation: Uuid,
) -> Result<Vec<ReadStateRow>, DbErr> {
    read_state::Entity::find()
        .filter(read_state::Column::TenantId.eq(tenant))
        .filter(read_state::Column::ConversationId.eq(conversation))
        .order_by_asc(read_state::Column::UserId)
        .all(connection)
        .await
}

/// Unread figures of one conversation for one user.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unread {
    /// Latest sequence.
    pub last_sequence: i64,
    /// The user's watermark.
    pub last_read_sequence: i64,
    /// Messages after the watermark, neither own nor deleted.
    pub unread: i64,
    /// Of those, mentioning the user.
    pub mentions: i64,
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
pub async fn unread_counts<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    user: &str,
    conversations: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, Unread>, DbErr> {
    let mut result: std::collections::HashMap<Uuid, Unread> = conversations
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

/// Sets a message's blind-index entries (token, weight); empty removes them.
pub async fn replace_search_entries<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    conversation: Uuid,
    message_id: Uuid,
    entries: Vec<(Vec<u8>, i64)>,
) -> Result<(), DbErr> {
    search_token::Entity::delete_many()
        .filter(search_token::Column::TenantId.eq(tenant))
        .filter(search_token::Column::MessageId.eq(message_id))
        .exec(connection)
        .await?;
    insert_search_entries(connection, tenant, conversation, message_id, entries).await
}

/// Adds the blind-index entries of a message that has none yet.
pub async fn insert_search_entries<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    conversation: Uuid,
    message_id: Uuid,
    entries: Vec<(Vec<u8>, i64)>,
) -> Result<(), DbErr> {
    if entries.is_empty() {
        return Ok(());
    }
    search_token::Entity::insert_many(entries.into_iter().map(|(token, weight)| {
        search_token::ActiveModel::from(search_token::Model {
            tenant_id: tenant.to_owned(),
            token,
            conversation_id: conversation,
            message_id,
            weight,
        })
    }))
    .exec_without_returning(connection)
    .await?;
    Ok(())
}

/// A search: every token must match.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    /// Keyed tokens, at least one.
    pub tokens: Vec<Vec<u8>>,
    /// Only these conversations (the caller's readable ones).
    pub conversations: Vec<Uuid>,
    /// Further filters.
    pub filter: MessageFilter,
    /// Continue after this (score, message id), in ranking order.
    pub after: Option<(i64, Uuid)>,
    /// Most hits.
    pub limit: u64,
}

/// One match: the message and its score (sum of the matched tokens' weights).
#[derive(Debug, Clone, FromQueryResult)]
pub struct SearchMatch {
    /// The message.
    pub message_id: Uuid,
    /// Relevance.
    pub score: i64,
}

/// Messages of `tenant` that have every token, by score, then newest first (message ids are
/// UUIDv7, ordered by send time). The first token's entries are read per conversation (the
/// index is keyed by tenant, token, conversation), each further token is a primary-key probe,
/// and messages themselves are joined only for the sender, thread, attachment and time
/// filters. Deleted messages have no entries (deleting removes them in the same transaction).
pub async fn search<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    query: &SearchQuery,
) -> Result<Vec<SearchMatch>, DbErr> {
    let Some((first, rest)) = query.tokens.split_first() else {
        return Ok(Vec::new());
    };
    if query.conversations.is_empty() {
        return Ok(Vec::new());
    }
    let term = |index: usize| Alias::new(format!("t{index}"));
    let m = Alias::new("m");
    let column = |table: &Alias, name: &str| Expr::col((table.clone(), Alias::new(name)));
    let same = |alias: &Alias, name: &str| column(alias, name).equals((term(0), Alias::new(name)));
    let mut score = column(&term(0), "weight");
    for index in 1..=rest.len() {
        score = score.add(column(&term(index), "weight"));
    }
    let id = || column(&term(0), "message_id");
    let mut select = Query::select();
    select
        .expr_as(id(), Alias::new("message_id"))
        .expr_as(score.clone(), Alias::new("score"))
        .from_as(search_token::Entity, term(0));
    for (offset, token) in rest.iter().enumerate() {
        let alias = term(offset + 1);
        select.join_as(
            JoinType::InnerJoin,
            search_token::Entity,
            alias.clone(),
            Condition::all()
                .add(same(&alias, "tenant_id"))
                .add(column(&alias, "token").eq(token.clone()))
                .add(same(&alias, "conversation_id"))
                .add(same(&alias, "message_id")),
        );
    }
    select
        .and_where(column(&term(0), "tenant_id").eq(tenant))
        .and_where(column(&term(0), "token").eq(first.clone()))
        .and_where(column(&term(0), "conversation_id").is_in(query.conversations.clone()));
    let filter = &query.filter;
    let needs_messages = filter.sender.is_some()
        || filter.thread.is_some()
        || filter.has_attachments
        || filter.start.is_some()
        || filter.end.is_some();
    if needs_messages {
        select.join_as(
            JoinType::InnerJoin,
            message::Entity,
            m.clone(),
            Condition::all()
                .add(column(&m, "tenant_id").equals((term(0), Alias::new("tenant_id"))))
                .add(column(&m, "id").equals((term(0), Alias::new("message_id")))),
        );
    }
    select.cond_where(filter.condition(&|name| column(&m, name)));
    if let Some((last_score, last_id)) = query.after {
        select.cond_where(
            Condition::any().add(score.clone().lt(last_score)).add(
                Condition::all()
                    .add(score.clone().eq(last_score))
                    .add(id().lt(last_id)),
            ),
        );
    }
    select
        .order_by_expr(score, sea_orm::Order::Desc)
        .order_by_expr(id(), sea_orm::Order::Desc)
        .limit(query.limit);
    SearchMatch::find_by_statement(connection.get_database_backend().build(&select))
        .all(connection)
        .await
}

/// [`search`] that stops when `within` has passed: on PostgreSQL the statement is cancelled
/// there (`statement_timeout`), so no abandoned search keeps a connection busy; on both, the
/// wait ends. `Ok(None)` when the time ran out.
pub async fn search_within(
    db: &DatabaseConnection,
    tenant: &str,
    query: &SearchQuery,
    within: std::time::Duration,
) -> Result<Option<Vec<SearchMatch>>, DbErr> {
    use sea_orm::TransactionTrait;
    let within = within.max(std::time::Duration::from_millis(1));
    let transaction = db.begin().await?;
    if transaction.get_database_backend() == sea_orm::DbBackend::Postgres {
        transaction
            .execute_unprepared(&format!(
                "SET LOCAL statement_timeout = {}",
                within.as_millis()
            ))
            .await?;
    }
    let found = match tokio::time::timeout(within, search(&transaction, tenant, query)).await {
        Err(_) => None,
        Ok(Err(error)) if is_statement_timeout(&error) => None,
        Ok(result) => Some(result?),
    };
    transaction.rollback().await?;
    Ok(found)
}

fn is_statement_timeout(error: &DbErr) -> bool {
    // query_canceled: what statement_timeout raises.
    messaging_platform::db::sqlstate(error).as_deref() == Some("57014")
}

/// Messages by id, in no particular order.
pub async fn messages_by_id<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    ids: Vec<Uuid>,
) -> Result<Vec<MessageRow>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    message::Entity::find()
        .filter(message::Column::TenantId.eq(tenant))
        .filter(message::Column::Id.is_in(ids))
        .all(connection)
        .await
}
