//! Group commit for SendMessage: sends that arrive while a commit is in flight are written
//! together in the next transaction with multi-row statements, each conversation's sequence
//! advanced once per batch. Every caller is answered after the commit that holds its message.
//!
//! A conversation's sends always go to the same writer (one of `writers`, chosen by a hash of
//! tenant and conversation), so its messages are numbered in arrival order without waiting on
//! another writer. A writer takes whatever waits in its queue when its previous commit
//! returns (up to `max_batch`): a lone send waits for nothing. Rows that transactions of
//! several writers (or processes) may both lock — sequences, thread roots, read states — are
//! locked in one order, so concurrent batches cannot deadlock each other.
//!
//! What a batch cannot settle alone goes through the single-message path
//! ([`SqlStore::send_one`]):
//! - a request id that is taken already: the batch is rolled back and written again without
//!   it, and the stored message answers it;
//! - a batch that failed as a whole: each of its sends is written on its own, so one bad
//!   message fails only itself;
//! - sends with attachments, which link their attachments in a transaction of their own.
//!
//! Two sends of one request in the same batch are written once: the first is written, the
//! others are answered as retries of it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use messaging_platform::ApiError;
use messaging_platform::crypto::DataKey;
use messaging_platform::db::begin_write;
use messaging_platform::time::now;
use sea_orm::sea_query::{InsertStatement, OnConflict, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, QueryTrait};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::entity::{mention, message, read_state, search_token};
use super::rows::message_to_row;
use super::search::{insert_search_rows, search_rows};
use super::{Sent, SqlStore, StoreError, StoreResult};
use crate::config::WriteSettings;
use crate::domain::{Message, NewMessage};
use crate::events::Rendered;

/// A send waiting for its writer.
pub(super) struct Pending {
    pub tenant: String,
    pub sender: String,
    pub new: NewMessage,
    /// The request's fingerprint, keyed when encryption at rest is on.
    pub fingerprint: String,
    /// Its blind-index entries.
    pub entries: Vec<(Vec<u8>, i64)>,
    pub reply: oneshot::Sender<StoreResult<Sent>>,
}

/// The writers' queues, started on the first send.
pub(super) struct SendQueue {
    settings: WriteSettings,
    writers: OnceLock<Vec<mpsc::Sender<Pending>>>,
}

impl std::fmt::Debug for SendQueue {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SendQueue")
            .field("settings", &self.settings)
            .field("started", &self.writers.get().is_some())
            .finish()
    }
}

impl SendQueue {
    pub(super) fn new(settings: WriteSettings) -> Self {
        Self {
            settings,
            writers: OnceLock::new(),
        }
    }

    /// Whether sends are grouped at all (`max_batch` above 1).
    pub(super) fn groups(&self) -> bool {
        self.settings.max_batch > 1
    }

    /// Hands `pending` to its conversation's writer (starting the writers on `store` at the
    /// first call); gives it back when the writer is gone (its runtime ended).
    pub(super) async fn submit(&self, store: &SqlStore, pending: Pending) -> Result<(), Pending> {
        let writers = self.writers.get_or_init(|| {
            let count = if messaging_platform::db::is_postgres(&store.db) {
                self.settings.writers.max(1)
            } else {
                // One connection: more writers would only take turns on it.
                1
            };
            let max_batch = self.settings.max_batch.max(1);
            (0..count)
                .map(|_| {
                    let (sender, queue) = mpsc::channel(max_batch * 2);
                    tokio::spawn(write(store.detached(), queue, max_batch));
                    sender
                })
                .collect()
        });
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (&pending.tenant, pending.new.conversation).hash(&mut hasher);
        let index = usize::try_from(hasher.finish() % writers.len() as u64).unwrap_or(0);
        writers[index]
            .send(pending)
            .await
            .map_err(|refused| refused.0)
    }
}

/// A writer: takes what waits in its queue, writes it, answers, and takes again.
async fn write(store: SqlStore, mut queue: mpsc::Receiver<Pending>, max_batch: usize) {
    let mut batch = Vec::with_capacity(max_batch);
    while queue.recv_many(&mut batch, max_batch).await > 0 {
        store.write_batch(std::mem::take(&mut batch)).await;
    }
}

/// What one attempt at a batch did.
enum Written {
    /// Committed: each open send's outcome.
    Committed(Vec<(usize, StoreResult<Sent>)>),
    /// Rolled back: these sends' request ids are taken already.
    Taken(Vec<usize>),
}

/// How often a batch is tried again without sends whose request ids turned out taken before
/// its sends are written on their own.
const ATTEMPTS: usize = 3;

impl SqlStore {
    /// Writes a batch and answers every send of it.
    async fn write_batch(&self, batch: Vec<Pending>) {
        let mut leaders: Vec<Pending> = Vec::with_capacity(batch.len());
        let mut followers: Vec<(usize, Pending)> = Vec::new();
        let mut requests: HashMap<(String, Uuid, String, String), usize> = HashMap::new();
        for pending in batch {
            if let Some(request) = &pending.new.request_id {
                let key = (
                    pending.tenant.clone(),
                    pending.new.conversation,
                    pending.sender.clone(),
                    request.as_str().to_owned(),
                );
                if let Some(&leader) = requests.get(&key) {
                    followers.push((leader, pending));
                    continue;
                }
                requests.insert(key, leaders.len());
            }
            leaders.push(pending);
        }
        let outcomes = self.write_leaders(&leaders).await;
        for (leader, follower) in followers {
            let outcome = match &outcomes[leader] {
                Ok(Sent::New { message, .. }) => Ok(Sent::Retried {
                    message: message.clone(),
                    stored_fingerprint: leaders[leader].fingerprint.clone(),
                    fingerprint: follower.fingerprint.clone(),
                }),
                Ok(Sent::Retried {
                    message,
                    stored_fingerprint,
                    ..
                }) => Ok(Sent::Retried {
                    message: message.clone(),
                    stored_fingerprint: stored_fingerprint.clone(),
                    fingerprint: follower.fingerprint.clone(),
                }),
                // The first one failed on its own: this one tries on its own too.
                Err(_) => self.send_alone(&follower).await,
            };
            let _ = follower.reply.send(outcome);
        }
        for (pending, outcome) in leaders.into_iter().zip(outcomes) {
            let _ = pending.reply.send(outcome);
        }
    }

    /// The outcome of each of `leaders` (distinct requests).
    async fn write_leaders(&self, leaders: &[Pending]) -> Vec<StoreResult<Sent>> {
        let mut outcomes: Vec<Option<StoreResult<Sent>>> = std::iter::repeat_with(|| None)
            .take(leaders.len())
            .collect();
        let mut open: Vec<usize> = (0..leaders.len()).collect();
        for _ in 0..ATTEMPTS {
            if open.is_empty() {
                break;
            }
            match self.insert_batch(leaders, &open).await {
                Ok(Written::Committed(written)) => {
                    for (index, outcome) in written {
                        outcomes[index] = Some(outcome);
                    }
                    open.clear();
                }
                Ok(Written::Taken(taken)) => {
                    for index in taken {
                        outcomes[index] = Some(self.answer_taken(&leaders[index]).await);
                        open.retain(|&other| other != index);
                    }
                }
                Err(error) => {
                    if open.len() > 1 {
                        tracing::debug!(%error, sends = open.len(), "a batch of sends failed; writing each on its own");
                    }
                    break;
                }
            }
        }
        for index in open {
            outcomes[index] = Some(self.send_alone(&leaders[index]).await);
        }
        outcomes
            .into_iter()
            .map(|outcome| {
                outcome.unwrap_or_else(|| {
                    Err(StoreError::Rejected(ApiError::Unavailable(
                        "the send was not written; retry".to_owned(),
                    )))
                })
            })
            .collect()
    }

    /// A send whose request id was taken when its batch was written: the stored message
    /// answers it (or, if that is gone again, it is written on its own).
    async fn answer_taken(&self, pending: &Pending) -> StoreResult<Sent> {
        match self
            .retried(
                &pending.tenant,
                &pending.sender,
                &pending.new,
                &pending.fingerprint,
            )
            .await?
        {
            Some(sent) => Ok(sent),
            None => self.send_alone(pending).await,
        }
    }

    async fn send_alone(&self, pending: &Pending) -> StoreResult<Sent> {
        self.send_one(
            &pending.tenant,
            &pending.sender,
            &pending.new,
            &pending.fingerprint,
            pending.entries.clone(),
        )
        .await
    }

    /// One attempt at writing the `open` ones of `leaders` in one transaction.
    async fn insert_batch(&self, leaders: &[Pending], open: &[usize]) -> StoreResult<Written> {
        let transaction = begin_write(&self.db).await?;
        let at = now();
        let mut keys: HashMap<&str, Option<Arc<DataKey>>> = HashMap::new();
        for &index in open {
            let tenant = leaders[index].tenant.as_str();
            if !keys.contains_key(tenant) {
                keys.insert(tenant, self.keys.current(&transaction, tenant).await?);
            }
        }
        let (roots, refused) = thread_roots(&transaction, leaders, open).await?;
        let mut outcomes: Vec<(usize, StoreResult<Sent>)> = refused
            .into_iter()
            .map(|index| (index, Err(StoreError::UnknownParent)))
            .collect();
        let active: Vec<usize> = open
            .iter()
            .copied()
            .filter(|index| outcomes.iter().all(|(refused, _)| refused != index))
            .collect();
        if active.is_empty() {
            transaction.rollback().await?;
            return Ok(Written::Committed(outcomes));
        }

        // Each conversation's sequence, advanced once for all its sends, in one statement.
        let mut counts: BTreeMap<(&str, Uuid), i64> = BTreeMap::new();
        for &index in &active {
            let pending = &leaders[index];
            *counts
                .entry((pending.tenant.as_str(), pending.new.conversation))
                .or_default() += 1;
        }
        let lasts = super::messages::advance_sequences(&transaction, &counts).await?;
        let mut next: HashMap<(&str, Uuid), i64> = HashMap::new();
        for (conversation, count) in &counts {
            let last = lasts
                .get(&(conversation.0.to_owned(), conversation.1))
                .copied()
                .ok_or_else(|| StoreError::Corrupt("a sequence was not returned".to_owned()))?;
            next.insert(*conversation, last - count + 1);
        }

        let mut written = Vec::with_capacity(active.len());
        let mut rows = Vec::with_capacity(active.len());
        let mut index_rows = Vec::new();
        let mut mentions = Vec::new();
        let mut replies: BTreeMap<(&str, Uuid, Uuid), i32> = BTreeMap::new();
        let mut read: BTreeMap<(&str, Uuid, &str), i64> = BTreeMap::new();
        let mut events = Vec::with_capacity(active.len());
        for &index in &active {
            let pending = &leaders[index];
            let (tenant, conversation) = (pending.tenant.as_str(), pending.new.conversation);
            let sequence = next.get_mut(&(tenant, conversation)).map_or(0, |next| {
                *next += 1;
                *next - 1
            });
            let id = Uuid::now_v7();
            let root = roots.get(&index).copied();
            let message = Message {
                id,
                conversation,
                sequence,
                sender: pending.sender.clone(),
                content: pending.new.content.clone(),
                parent: root,
                mentions: pending.new.mentions.clone(),
                metadata: pending.new.metadata.clone(),
                has_attachments: false,
                attachments: Vec::new(),
                reply_count: 0,
                last_reply_at: None,
                request_id: pending.new.request_id.clone(),
                created_at: at,
                edited_at: None,
                deleted_at: None,
                revision_count: 0,
            };
            let key = keys.get(tenant).cloned().flatten();
            rows.push(message_to_row(
                tenant,
                &message,
                &pending.fingerprint,
                key.as_deref(),
            )?);
            index_rows.extend(search_rows(
                tenant,
                conversation,
                id,
                pending.entries.clone(),
            ));
            mentions.extend(message.mentions.iter().map(|user| mention::Model {
                tenant_id: tenant.to_owned(),
                conversation_id: conversation,
                user_id: user.clone(),
                sequence,
                sender_id: message.sender.clone(),
            }));
            if let Some(root) = root {
                *replies.entry((tenant, conversation, root)).or_default() += 1;
            }
            // Sending implies having read the conversation up to one's own message.
            let watermark = read
                .entry((tenant, conversation, pending.sender.as_str()))
                .or_default();
            *watermark = (*watermark).max(sequence);
            let rendered = Rendered::of(&message);
            events.push(messaging_outbox::store::new_event(
                key.as_deref(),
                tenant,
                conversation,
                &pending.sender,
                at,
                rendered.created(),
            )?);
            written.push((index, message, rendered));
        }

        let read: Vec<read_state::Model> = read
            .into_iter()
            .map(
                |((tenant, conversation, user), sequence)| read_state::Model {
                    tenant_id: tenant.to_owned(),
                    conversation_id: conversation,
                    user_id: user.to_owned(),
                    last_read_sequence: sequence,
                    updated_at: at,
                },
            )
            .collect();
        let rows = Rows {
            messages: rows,
            index: index_rows,
            mentions,
            read,
            events,
        };
        // The messages, each request id once: a taken one rolls the batch back.
        let (inserted, rest) = if messaging_platform::db::is_postgres(&self.db) {
            (rows.write_together(&transaction).await?, None)
        } else {
            (
                insert_messages(&transaction, &rows.messages).await?,
                Some(rows),
            )
        };
        if inserted.len() < written.len() {
            transaction.rollback().await?;
            return Ok(Written::Taken(
                written
                    .iter()
                    .filter(|(_, message, _)| !inserted.contains(&message.id))
                    .map(|(index, _, _)| *index)
                    .collect(),
            ));
        }
        if let Some(rows) = rest {
            rows.write_apart(&transaction).await?;
        }
        for ((tenant, conversation, root), count) in replies {
            super::messages::count_replies(&transaction, tenant, conversation, root, count, at)
                .await?;
        }
        transaction.commit().await?;
        self.bus.committed();
        outcomes.extend(
            written
                .into_iter()
                .map(|(index, message, rendered)| (index, Ok(Sent::New { message, rendered }))),
        );
        Ok(Written::Committed(outcomes))
    }
}

/// The rows of a batch.
struct Rows {
    messages: Vec<message::Model>,
    index: Vec<search_token::Model>,
    mentions: Vec<mention::Model>,
    read: Vec<read_state::Model>,
    events: Vec<messaging_outbox::store::NewEvent>,
}

/// The one statement that writes a batch on PostgreSQL: the inserts other than the messages'
/// are data-modifying `WITH` clauses of the messages' insert, each table's rows one JSON
/// parameter. Its text is the same for every batch, so each connection parses it once.
fn together_statement() -> &'static str {
    static STATEMENT: OnceLock<String> = OnceLock::new();
    STATEMENT.get_or_init(|| {
        use messaging_platform::db::json_rows::insert;
        format!(
            "WITH write_index AS ({}), write_mentions AS ({}), write_read AS ({}), \
             write_events AS ({}) {} ON CONFLICT DO NOTHING RETURNING \"id\"",
            insert::<search_token::Entity>(1, &[]),
            insert::<mention::Entity>(2, &[]),
            super::read_states::raise_read_states_json(3),
            messaging_outbox::store::insert_events_json(4),
            insert::<message::Entity>(5, &[]),
        )
    })
}

impl Rows {
    /// Writes every row in one statement, one round trip (PostgreSQL; see
    /// [`together_statement`]); returns the ids of the messages inserted (a taken request
    /// id's is missing).
    async fn write_together<C: ConnectionTrait>(
        self,
        connection: &C,
    ) -> StoreResult<HashSet<Uuid>> {
        use messaging_platform::db::json_rows::encode;
        let statement = sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            together_statement(),
            [
                encode(self.index.into_iter().map(search_token::ActiveModel::from))?,
                encode(self.mentions.into_iter().map(mention::ActiveModel::from))?,
                encode(self.read.into_iter().map(read_state::ActiveModel::from))?,
                messaging_outbox::store::events_json(self.events)?,
                encode(self.messages.into_iter().map(message::ActiveModel::from))?,
            ],
        );
        let mut inserted = HashSet::new();
        for row in connection.query_all_raw(statement).await? {
            inserted.insert(row.try_get::<Uuid>("", "id")?);
        }
        Ok(inserted)
    }

    /// Writes the rows other than the messages' a table at a time.
    async fn write_apart<C: ConnectionTrait>(self, connection: &C) -> StoreResult<()> {
        insert_search_rows(connection, self.index).await?;
        let mut mentions = self.mentions.into_iter().peekable();
        while mentions.peek().is_some() {
            mention::Entity::insert_many(
                mentions.by_ref().take(500).map(mention::ActiveModel::from),
            )
            .exec_without_returning(connection)
            .await?;
        }
        super::read_states::raise_read_states(connection, self.read).await?;
        messaging_outbox::store::insert_events(connection, self.events).await?;
        Ok(())
    }
}

/// The insert of message rows that skips a taken request id and returns the ids inserted.
fn messages_statement(rows: impl Iterator<Item = message::Model>) -> InsertStatement {
    let mut statement = message::Entity::insert_many(rows.map(message::ActiveModel::from))
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .into_query();
    statement.returning(Query::returning().column(message::Column::Id));
    statement
}

/// Inserts message rows, 200 a statement; returns the ids inserted.
async fn insert_messages<C: ConnectionTrait>(
    connection: &C,
    rows: &[message::Model],
) -> StoreResult<HashSet<Uuid>> {
    let mut inserted = HashSet::with_capacity(rows.len());
    for chunk in rows.chunks(200) {
        let statement = messages_statement(chunk.iter().cloned());
        for row in connection.query_all(&statement).await? {
            inserted.insert(row.try_get::<Uuid>("", "id")?);
        }
    }
    Ok(inserted)
}

/// The thread root of each reply among `open`, read in one statement per tenant; and the
/// replies whose parent is not a message of their conversation.
async fn thread_roots<C: ConnectionTrait>(
    connection: &C,
    leaders: &[Pending],
    open: &[usize],
) -> StoreResult<(HashMap<usize, Uuid>, Vec<usize>)> {
    let mut parents: BTreeMap<&str, Vec<Uuid>> = BTreeMap::new();
    for &index in open {
        if let Some(parent) = leaders[index].new.parent {
            parents
                .entry(leaders[index].tenant.as_str())
                .or_default()
                .push(parent);
        }
    }
    let mut found: HashMap<(&str, Uuid), (Uuid, Uuid)> = HashMap::new();
    for (tenant, ids) in parents {
        let rows: Vec<(Uuid, Option<Uuid>, Uuid)> = message::Entity::find()
            .select_only()
            .column(message::Column::Id)
            .column(message::Column::ParentId)
            .column(message::Column::ConversationId)
            .filter(message::Column::TenantId.eq(tenant))
            .filter(message::Column::Id.is_in(ids))
            .into_tuple()
            .all(connection)
            .await?;
        for (id, root, conversation) in rows {
            found.insert((tenant, id), (conversation, root.unwrap_or(id)));
        }
    }
    let mut roots = HashMap::new();
    let mut refused = Vec::new();
    for &index in open {
        let pending = &leaders[index];
        if let Some(parent) = pending.new.parent {
            match found.get(&(pending.tenant.as_str(), parent)) {
                Some(&(conversation, root)) if conversation == pending.new.conversation => {
                    roots.insert(index, root);
                }
                _ => refused.push(index),
            }
        }
    }
    Ok((roots, refused))
}
