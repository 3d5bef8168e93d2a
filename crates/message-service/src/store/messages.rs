//! [`MessageStore`] on SQL: messages, thread counters, mentions and revisions, each write in
//! one transaction with its event.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use messaging_platform::db::begin_write;
use messaging_platform::time::now;
use messaging_platform::{TenantId, UserId};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

use super::entity::{deletion, mention, message, revision, sequence};
use super::rows::{message_from_row, message_to_row, messages_from_rows, revision_from_row};
use super::search::{
    filter_condition, hex, index_entries, insert_search_entries, replace_search_entries,
};
use super::{EditRule, MessageStore, Sent, SequenceRange, SqlStore, StoreError, StoreResult, rows};
use crate::domain::{Message, MessageEvent, MessageFilter, NewMessage, Revision};
use crate::events::Rendered;

#[async_trait::async_trait]
impl MessageStore for SqlStore {
    async fn message(
        &self,
        tenant: &TenantId,
        conversation: Uuid,
        id: Uuid,
    ) -> StoreResult<Option<Message>> {
        let tenant = tenant.as_str();
        match find_row(&self.db, tenant, conversation, id, false).await? {
            Some(row) => Ok(Some(message_from_row(&self.keys, &self.db, row).await?)),
            None => Ok(None),
        }
    }

    async fn messages(&self, tenant: &TenantId, ids: &[Uuid]) -> StoreResult<Vec<Message>> {
        let tenant = tenant.as_str();
        let rows = rows_by_id(&self.db, tenant, ids).await?;
        messages_from_rows(&self.keys, &self.db, rows).await
    }

    async fn page(
        &self,
        tenant: &TenantId,
        conversation: Uuid,
        filter: &MessageFilter,
        range: SequenceRange,
        limit: u64,
    ) -> StoreResult<Vec<Message>> {
        let tenant = tenant.as_str();
        let mut query = message::Entity::find()
            .filter(message::Column::TenantId.eq(tenant))
            .filter(message::Column::ConversationId.eq(conversation));
        if let Some(above) = range.above {
            query = query.filter(message::Column::Sequence.gt(above));
        }
        if let Some(below) = range.below {
            query = query.filter(message::Column::Sequence.lt(below));
        }
        query = query.filter(filter_condition(filter, &|name| {
            Expr::col((message::Entity, Alias::new(name)))
        }));
        query = if range.descending {
            query.order_by_desc(message::Column::Sequence)
        } else {
            query.order_by_asc(message::Column::Sequence)
        };
        let rows = query.limit(limit).all(&self.db).await?;
        messages_from_rows(&self.keys, &self.db, rows).await
    }

    async fn send(
        &self,
        tenant: &TenantId,
        sender: &UserId,
        new: &NewMessage,
        fingerprint: &str,
    ) -> StoreResult<Sent> {
        let tenant = tenant.as_str();
        let sender = sender.as_str();
        let search_key = self.keys.search(&self.db, tenant).await?;
        // A bare hash of a short text can be guessed; keyed, it cannot.
        let fingerprint = if self.keys.is_enabled() {
            hex(&search_key.token(&format!("request\0{fingerprint}")))
        } else {
            fingerprint.to_owned()
        };
        let entries = index_entries(&search_key, new.content.as_ref(), &new.search_tokens);
        // Sends with attachments link them in a transaction of their own.
        if !self.sends.groups() || !new.attachments.is_empty() {
            return self
                .send_one(tenant, sender, new, &fingerprint, entries)
                .await;
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        let pending = super::batch::Pending {
            tenant: tenant.to_owned(),
            sender: sender.to_owned(),
            new: new.clone(),
            fingerprint,
            entries,
            reply,
        };
        if let Err(pending) = self.sends.submit(self, pending).await {
            // No writer (the runtime that ran them ended): write it here.
            return self
                .send_one(tenant, sender, new, &pending.fingerprint, pending.entries)
                .await;
        }
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::Rejected(
                messaging_platform::ApiError::Unavailable(
                    "the service is stopping; retry the send with its request id".to_owned(),
                ),
            ))
        })
    }

    async fn edit(
        &self,
        tenant: &TenantId,
        conversation: Uuid,
        id: Uuid,
        editor: &UserId,
        search_tokens: &[Vec<u8>],
        rule: EditRule<'_>,
    ) -> StoreResult<Option<Message>> {
        let tenant = tenant.as_str();
        let editor = editor.as_str();
        let transaction = begin_write(&self.db).await?;
        let Some(row) = find_row(&transaction, tenant, conversation, id, true).await? else {
            return Ok(None);
        };
        let fingerprint = row.payload_hash.clone();
        let current = message_from_row(&self.keys, &transaction, row).await?;
        let at = now();
        let next = rule(&current, at).map_err(StoreError::Rejected)?;
        let key = self.keys.current(&transaction, tenant).await?;
        if next.content != current.content {
            let revision = Revision {
                message: id,
                revision: next.revision_count,
                content: current.content.clone(),
                created_at: current.edited_at.unwrap_or(current.created_at),
            };
            let row = rows::revision_to_row(tenant, conversation, &revision, key.as_deref())?;
            revision::Entity::insert(revision::ActiveModel::from(row))
                .exec_without_returning(&transaction)
                .await?;
            let search_key = self.keys.search(&transaction, tenant).await?;
            let entries = index_entries(&search_key, next.content.as_ref(), search_tokens);
            replace_search_entries(&transaction, tenant, conversation, id, entries).await?;
        }
        if next.mentions != current.mentions {
            replace_mentions(&transaction, tenant, &next, &next.mentions).await?;
        }
        let row = message_to_row(tenant, &next, &fingerprint, key.as_deref())?;
        message::ActiveModel::from(row)
            .reset_all()
            .update(&transaction)
            .await?;
        let event = MessageEvent::Edited(&next);
        self.record(&transaction, key.as_deref(), tenant, editor, at, event)
            .await?;
        transaction.commit().await?;
        self.bus.committed();
        Ok(Some(next))
    }

    async fn delete(
        &self,
        tenant: &TenantId,
        conversation: Uuid,
        id: Uuid,
        actor: &UserId,
    ) -> StoreResult<Option<Message>> {
        let tenant = tenant.as_str();
        let actor = actor.as_str();
        let transaction = begin_write(&self.db).await?;
        let Some(row) = find_row(&transaction, tenant, conversation, id, true).await? else {
            return Ok(None);
        };
        if row.deleted_at.is_some() {
            // End the transaction first: on SQLite it holds the only connection.
            transaction.rollback().await?;
            return Ok(Some(message_from_row(&self.keys, &self.db, row).await?));
        }
        let at = now();
        let (tombstone, detached) = tombstone(&transaction, row, at, false).await?;
        let event = MessageEvent::Deleted {
            conversation,
            message: id,
            sequence: tombstone.sequence,
        };
        self.record(&transaction, None, tenant, actor, at, event)
            .await?;
        transaction.commit().await?;
        self.bus.committed();
        if detached {
            self.sweeps.notify_one();
        }
        Ok(Some(
            message_from_row(&self.keys, &self.db, tombstone).await?,
        ))
    }

    async fn revisions(
        &self,
        tenant: &TenantId,
        conversation: Uuid,
        id: Uuid,
        after: i32,
        limit: u64,
    ) -> StoreResult<Vec<Revision>> {
        let tenant = tenant.as_str();
        let rows = revision::Entity::find()
            .filter(revision::Column::TenantId.eq(tenant))
            .filter(revision::Column::MessageId.eq(id))
            .filter(revision::Column::Revision.gt(after))
            .order_by_asc(revision::Column::Revision)
            .limit(limit)
            .all(&self.db)
            .await?;
        let mut revisions = Vec::with_capacity(rows.len());
        for row in rows {
            revisions.push(revision_from_row(&self.keys, &self.db, conversation, row).await?);
        }
        Ok(revisions)
    }
}

impl SqlStore {
    /// The message `sender` sent before with `new`'s request id, if any.
    pub(super) async fn retried(
        &self,
        tenant: &str,
        sender: &str,
        new: &NewMessage,
        fingerprint: &str,
    ) -> StoreResult<Option<Sent>> {
        let Some(request_id) = &new.request_id else {
            return Ok(None);
        };
        let row = message::Entity::find()
            .filter(message::Column::TenantId.eq(tenant))
            .filter(message::Column::ConversationId.eq(new.conversation))
            .filter(message::Column::SenderId.eq(sender))
            .filter(message::Column::RequestId.eq(request_id.as_str()))
            .one(&self.db)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let stored_fingerprint = row.payload_hash.clone();
        Ok(Some(Sent::Retried {
            message: message_from_row(&self.keys, &self.db, row).await?,
            stored_fingerprint,
            fingerprint: fingerprint.to_owned(),
        }))
    }

    /// Writes one send in a transaction of its own: the path of sends with attachments, and of
    /// those a batch could not settle (see `super::batch`).
    pub(super) async fn send_one(
        &self,
        tenant: &str,
        sender: &str,
        new: &NewMessage,
        fingerprint: &str,
        entries: Vec<(Vec<u8>, i64)>,
    ) -> StoreResult<Sent> {
        // Insert first, and let the unique index on (tenant, conversation, sender, request id)
        // tell a retry: a look-up before every insert would cost a statement per send, and its
        // plan would depend on the planner's statistics (without them PostgreSQL may filter
        // every earlier message of the conversation). A retry rolls its transaction back, so
        // the sequence it took is given back and sequences stay dense.
        match self.insert(tenant, sender, new, fingerprint, entries).await {
            Ok((message, rendered)) => {
                self.bus.committed();
                Ok(Sent::New { message, rendered })
            }
            // The request id is taken: a retry, or a concurrent one that committed first. The
            // stored message answers it, whatever refused this insert (the unique index, or a
            // change since the first send, such as its attachments now being sent).
            Err(error) => match self.retried(tenant, sender, new, fingerprint).await? {
                Some(retried) => Ok(retried),
                None => Err(error),
            },
        }
    }

    /// The send transaction. Work that needs no position (index entries, the parent's thread)
    /// comes before the sequence row is locked, so concurrent senders wait for each other as
    /// briefly as possible.
    async fn insert(
        &self,
        tenant: &str,
        sender: &str,
        new: &NewMessage,
        fingerprint: &str,
        entries: Vec<(Vec<u8>, i64)>,
    ) -> StoreResult<(Message, Rendered)> {
        let transaction = begin_write(&self.db).await?;
        let key = self.keys.current(&transaction, tenant).await?;
        let id = Uuid::now_v7();
        insert_search_entries(&transaction, tenant, new.conversation, id, entries).await?;
        let root = match new.parent {
            Some(parent) => {
                Some(thread_root(&transaction, tenant, new.conversation, parent).await?)
            }
            None => None,
        };
        let sequence = next_sequence(&transaction, tenant, new.conversation).await?;
        let at = now();
        if let Some(root) = root {
            count_replies(&transaction, tenant, new.conversation, root, 1, at).await?;
        }
        let attachments = super::attachments::link(
            &self.keys,
            &transaction,
            tenant,
            sender,
            new.conversation,
            id,
            &new.attachments,
        )
        .await?;
        let message = Message {
            id,
            conversation: new.conversation,
            sequence,
            sender: sender.to_owned(),
            content: new.content.clone(),
            parent: root,
            mentions: new.mentions.clone(),
            metadata: new.metadata.clone(),
            has_attachments: !attachments.is_empty(),
            attachments,
            reply_count: 0,
            last_reply_at: None,
            request_id: new.request_id.clone(),
            created_at: at,
            edited_at: None,
            deleted_at: None,
            revision_count: 0,
        };
        let row = message_to_row(tenant, &message, fingerprint, key.as_deref())?;
        message::Entity::insert(message::ActiveModel::from(row))
            .exec_without_returning(&transaction)
            .await?;
        insert_mentions(&transaction, tenant, &message, &message.mentions).await?;
        // Sending implies having read the conversation up to one's own message.
        super::read_states::raise_read_state(
            &transaction,
            tenant,
            new.conversation,
            sender,
            sequence,
            at,
        )
        .await?;
        // Rendered once: the event carries it and SendMessage returns it.
        let rendered = Rendered::of(&message);
        messaging_outbox::store::record(
            &transaction,
            key.as_deref(),
            tenant,
            message.conversation,
            sender,
            at,
            rendered.created(),
        )
        .await?;
        transaction.commit().await?;
        Ok((message, rendered))
    }
}

/// Makes message `row` a tombstone within `connection`'s transaction at `at`: its content,
/// metadata, mentions, revisions, reactions and search entries go, its attachments are marked
/// for removal (true when it had any), its thread root counts one reply less, and it is
/// counted among the deletions. With `forget_sender` (erasure), the tombstone does not keep its
/// sender, request id or fingerprint either. Returns the tombstone as stored.
pub(super) async fn tombstone<C: ConnectionTrait>(
    connection: &C,
    row: message::Model,
    at: DateTime<Utc>,
    forget_sender: bool,
) -> StoreResult<(message::Model, bool)> {
    let tenant = row.tenant_id.clone();
    let was_deleted = row.deleted_at.is_some();
    let mut tombstone = message::Model {
        content_kind: "none".to_owned(),
        text: None,
        ciphertext: None,
        cipher_algorithm: None,
        cipher_key_id: None,
        metadata: "{}".to_owned(),
        mention_ids: "[]".to_owned(),
        revision_count: 0,
        has_attachments: false,
        deleted_at: Some(row.deleted_at.unwrap_or(at)),
        key_version: None,
        sealed: None,
        ..row
    };
    if forget_sender {
        tombstone.sender_id = String::new();
        tombstone.request_id = None;
        tombstone.payload_hash = String::new();
    }
    let detached = if was_deleted {
        // Its content went with the deletion; only the sender may be left to forget.
        deletion::Entity::update_many()
            .col_expr(
                deletion::Column::SenderId,
                Expr::value(tombstone.sender_id.clone()),
            )
            .filter(deletion::Column::TenantId.eq(tenant.as_str()))
            .filter(deletion::Column::ConversationId.eq(tombstone.conversation_id))
            .filter(deletion::Column::Sequence.eq(tombstone.sequence))
            .exec(connection)
            .await?;
        false
    } else {
        erase_dependents(connection, &tombstone).await?;
        let detached = super::attachments::detach(connection, &tenant, tombstone.id).await?;
        replace_search_entries(
            connection,
            &tenant,
            tombstone.conversation_id,
            tombstone.id,
            Vec::new(),
        )
        .await?;
        if let Some(root) = tombstone.parent_id {
            uncount_reply(connection, &tenant, tombstone.conversation_id, root).await?;
        }
        detached
    };
    let tombstone = message::ActiveModel::from(tombstone)
        .reset_all()
        .update(connection)
        .await?;
    Ok((tombstone, detached))
}

/// A message row of a conversation; `lock` holds it until the transaction ends (PostgreSQL).
pub(super) async fn find_row<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    conversation: Uuid,
    id: Uuid,
    lock: bool,
) -> Result<Option<message::Model>, DbErr> {
    let mut query = message::Entity::find()
        .filter(message::Column::TenantId.eq(tenant))
        .filter(message::Column::ConversationId.eq(conversation))
        .filter(message::Column::Id.eq(id));
    if lock {
        query = query.lock_exclusive();
    }
    query.one(connection).await
}

/// Message rows by id, in no particular order.
pub(crate) async fn rows_by_id<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    ids: &[Uuid],
) -> Result<Vec<message::Model>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    message::Entity::find()
        .filter(message::Column::TenantId.eq(tenant))
        .filter(message::Column::Id.is_in(ids.to_vec()))
        .all(connection)
        .await
}

/// The root of the thread `parent` belongs to (replies attach to roots): one read.
async fn thread_root<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    conversation: Uuid,
    parent: Uuid,
) -> StoreResult<Uuid> {
    let found: Option<(Uuid, Option<Uuid>)> = message::Entity::find()
        .select_only()
        .column(message::Column::Id)
        .column(message::Column::ParentId)
        .filter(message::Column::TenantId.eq(tenant))
        .filter(message::Column::ConversationId.eq(conversation))
        .filter(message::Column::Id.eq(parent))
        .into_tuple()
        .one(connection)
        .await?;
    let (id, root) = found.ok_or(StoreError::UnknownParent)?;
    Ok(root.unwrap_or(id))
}

/// Counts `count` new replies at `at` on a thread root, in one statement.
pub(super) async fn count_replies<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    conversation: Uuid,
    root: Uuid,
    count: i32,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    let updated = message::Entity::update_many()
        .filter(message::Column::TenantId.eq(tenant))
        .filter(message::Column::ConversationId.eq(conversation))
        .filter(message::Column::Id.eq(root))
        .col_expr(
            message::Column::ReplyCount,
            Expr::col(message::Column::ReplyCount).add(count),
        )
        .col_expr(message::Column::LastReplyAt, Expr::value(at))
        .exec(connection)
        .await?;
    if updated.rows_affected == 0 {
        return Err(StoreError::UnknownParent);
    }
    Ok(())
}

/// Takes back a deleted reply's count on its thread root, in one statement.
async fn uncount_reply<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    conversation: Uuid,
    root: Uuid,
) -> StoreResult<()> {
    message::Entity::update_many()
        .filter(message::Column::TenantId.eq(tenant))
        .filter(message::Column::ConversationId.eq(conversation))
        .filter(message::Column::Id.eq(root))
        .filter(message::Column::ReplyCount.gt(0))
        .col_expr(
            message::Column::ReplyCount,
            Expr::col(message::Column::ReplyCount).sub(1),
        )
        .exec(connection)
        .await?;
    Ok(())
}

/// Takes the conversation's next sequence. The row stays locked until the transaction ends, so
/// concurrent senders are numbered in commit order, and a rollback returns the number.
async fn next_sequence<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    conversation: Uuid,
) -> StoreResult<i64> {
    let lasts =
        advance_sequences(connection, &BTreeMap::from([((tenant, conversation), 1)])).await?;
    lasts
        .get(&(tenant.to_owned(), conversation))
        .copied()
        .ok_or_else(|| StoreError::Corrupt("no sequence returned".to_owned()))
}

/// Advances each conversation's sequence by its count in one statement, returning the last
/// sequence each now has (its sends take the numbers up to it). The rows stay locked until the
/// transaction ends, taken in the map's order by every caller.
pub(super) async fn advance_sequences<C: ConnectionTrait>(
    connection: &C,
    counts: &BTreeMap<(&str, Uuid), i64>,
) -> StoreResult<HashMap<(String, Uuid), i64>> {
    let mut statement = Query::insert()
        .into_table(sequence::Entity)
        .columns([
            sequence::Column::TenantId,
            sequence::Column::ConversationId,
            sequence::Column::LastSequence,
        ])
        .to_owned();
    for ((tenant, conversation), count) in counts {
        statement.values_panic([(*tenant).into(), (*conversation).into(), (*count).into()]);
    }
    statement
        .on_conflict(
            OnConflict::columns([sequence::Column::TenantId, sequence::Column::ConversationId])
                .value(
                    sequence::Column::LastSequence,
                    Expr::col((
                        Alias::new("conversation_sequences"),
                        sequence::Column::LastSequence,
                    ))
                    .add(Expr::col((
                        Alias::new("excluded"),
                        sequence::Column::LastSequence,
                    ))),
                )
                .to_owned(),
        )
        .returning(Query::returning().columns([
            sequence::Column::TenantId,
            sequence::Column::ConversationId,
            sequence::Column::LastSequence,
        ]));
    let mut lasts = HashMap::with_capacity(counts.len());
    for row in connection.query_all(&statement).await? {
        lasts.insert(
            (
                row.try_get::<String>("", "tenant_id")?,
                row.try_get::<Uuid>("", "conversation_id")?,
            ),
            row.try_get::<i64>("", "last_sequence")?,
        );
    }
    Ok(lasts)
}

/// Records the users `message` mentions.
async fn insert_mentions<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    message: &Message,
    users: &[String],
) -> Result<(), DbErr> {
    if users.is_empty() {
        return Ok(());
    }
    mention::Entity::insert_many(users.iter().map(|user| {
        mention::ActiveModel::from(mention::Model {
            tenant_id: tenant.to_owned(),
            conversation_id: message.conversation,
            user_id: user.clone(),
            sequence: message.sequence,
            sender_id: message.sender.clone(),
        })
    }))
    .exec_without_returning(connection)
    .await?;
    Ok(())
}

/// Sets the users an existing message mentions.
async fn replace_mentions<C: ConnectionTrait>(
    connection: &C,
    tenant: &str,
    message: &Message,
    users: &[String],
) -> Result<(), DbErr> {
    mention::Entity::delete_many()
        .filter(mention::Column::TenantId.eq(tenant))
        .filter(mention::Column::ConversationId.eq(message.conversation))
        .filter(mention::Column::Sequence.eq(message.sequence))
        .exec(connection)
        .await?;
    insert_mentions(connection, tenant, message, users).await
}

/// Removes a deleted message's revisions, mentions and reactions, and records its sequence
/// among the deletions that unread counts subtract.
async fn erase_dependents<C: ConnectionTrait>(
    connection: &C,
    row: &message::Model,
) -> Result<(), DbErr> {
    let tenant = row.tenant_id.as_str();
    revision::Entity::delete_many()
        .filter(revision::Column::TenantId.eq(tenant))
        .filter(revision::Column::MessageId.eq(row.id))
        .exec(connection)
        .await?;
    mention::Entity::delete_many()
        .filter(mention::Column::TenantId.eq(tenant))
        .filter(mention::Column::ConversationId.eq(row.conversation_id))
        .filter(mention::Column::Sequence.eq(row.sequence))
        .exec(connection)
        .await?;
    super::entity::reaction::Entity::delete_many()
        .filter(super::entity::reaction::Column::TenantId.eq(tenant))
        .filter(super::entity::reaction::Column::MessageId.eq(row.id))
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
