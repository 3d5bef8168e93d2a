//! Persistence of message-service, in its own schema (`message`) or SQLite file. The use cases
//! see a trait per aggregate ([`MessageStore`], [`ReactionStore`], [`ReadStateStore`],
//! [`SearchStore`], [`ParticipantStore`]) speaking domain types; [`SqlStore`] implements them
//! with SeaORM queries that are the same for both backends. Everything about rows stays here:
//! transactions, sealing with the tenant's keys (`keys`), keyed search tokens, JSON columns,
//! and database errors, which become a [`StoreError`] once.
//!
//! Every query filters by tenant. Each write records its event (`crate::events`) in the outbox
//! within its own transaction.

mod attachments;
mod batch;
pub mod compliance;
pub mod entity;
pub mod keys;
mod messages;
pub mod migration;
pub mod participants;
mod reactions;
mod read_states;
pub mod rotation;
pub mod rows;
pub mod search;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use messaging_platform::config::DatabaseSettings;
use messaging_platform::{ApiError, TenantId, UserId};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use uuid::Uuid;

use crate::blobs::Layout;
use crate::domain::attachment::{Attachment, AttachmentState};
use crate::domain::{
    Message, MessageEvent, MessageFilter, NewMessage, Reaction, ReactionSummary, ReadState,
    Revision, Unread,
};
use crate::events::{EventBus, Rendered};
use keys::{KeyError, Keyring};
use messaging_platform::crypto::DataKey;

pub use compliance::{ComplianceStore, RetentionScope};
pub use messaging_outbox::store::{
    EventRow, NewEvent, events_after, insert_event, prune_events, publish_pending, relay_state,
    relay_state_full, stamp_events,
};
pub use search::{SearchMatch, SearchQuery};

/// The default PostgreSQL schema of this service.
pub const DEFAULT_SCHEMA: &str = "message";

/// Connects and brings the schema up to date.
pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<DatabaseConnection> {
    messaging_platform::db::connect_and_migrate::<migration::Migrator>(settings, DEFAULT_SCHEMA)
        .await
}

/// Why a store call failed, in terms the use cases act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A reply names a parent that is not a message of the conversation.
    #[error("the parent is not a message of this conversation")]
    UnknownParent,
    /// A rule the caller passed in refused the change (an edit's checks).
    #[error(transparent)]
    Rejected(ApiError),
    /// A stored value does not open or decode: tampered, copied or corrupt data.
    #[error("{0}")]
    Corrupt(String),
    /// A key could not be had (the database failed, or encryption is off over sealed data).
    #[error(transparent)]
    Keys(KeyError),
    /// The database failed (unreachable ones become UNAVAILABLE).
    #[error(transparent)]
    Database(#[from] DbErr),
}

impl From<KeyError> for StoreError {
    fn from(error: KeyError) -> Self {
        match error {
            KeyError::Db(error) => Self::Database(error),
            KeyError::Corrupt(detail) => Self::Corrupt(detail),
            other => Self::Keys(other),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::UnknownParent => {
                ApiError::invalid("parent_id", "no such message in this conversation")
            }
            StoreError::Rejected(error) => error,
            StoreError::Corrupt(detail) => ApiError::DataLoss(detail),
            StoreError::Keys(error) => error.into(),
            StoreError::Database(error) => error.into(),
        }
    }
}

/// Result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// A range of sequences, exclusive at both ends, and the order to walk it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequenceRange {
    /// Only sequences above this.
    pub above: Option<i64>,
    /// Only sequences below this.
    pub below: Option<i64>,
    /// Newest first.
    pub descending: bool,
}

/// What [`MessageStore::send`] did.
#[derive(Debug, Clone)]
pub enum Sent {
    /// Stored the message (and its event).
    New {
        /// The message.
        message: Message,
        /// It, as its event carried it (the response can return it as is).
        rendered: Rendered,
    },
    /// The sender had sent a message with this request id already; nothing was stored.
    /// `fingerprint` is the new request's, `stored_fingerprint` the first one's, for
    /// `messaging_platform::idempotency::replay`.
    Retried {
        /// The message sent first, as it is now.
        message: Message,
        /// The first request's fingerprint.
        stored_fingerprint: String,
        /// This request's fingerprint (keyed like the stored one).
        fingerprint: String,
    },
}

/// The rule an edit must pass, applied to the message as locked in the edit's transaction at
/// the edit's time: the message after the edit, or why it may not be made.
pub type EditRule<'a> =
    &'a (dyn Fn(&Message, DateTime<Utc>) -> Result<Message, ApiError> + Send + Sync);

/// Messages, their threads and their revisions.
#[async_trait::async_trait]
pub trait MessageStore: Send + Sync + std::fmt::Debug {
    /// A message of a conversation, deleted ones included.
    async fn message(
        &self,
        tenant: &TenantId,
        conversation: Uuid,
        id: Uuid,
    ) -> StoreResult<Option<Message>>;

    /// Messages of the tenant by id, in no particular order; unknown ids are left out.
    async fn messages(&self, tenant: &TenantId, ids: &[Uuid]) -> StoreResult<Vec<Message>>;

    /// One keyset page of a conversation: the cost depends on the page, not on the
    /// conversation's length.
    async fn page(
        &self,
        tenant: &TenantId,
        conversation: Uuid,
        filter: &MessageFilter,
        range: SequenceRange,
        limit: u64,
    ) -> StoreResult<Vec<Message>>;

    /// Stores `new` from `sender` with the conversation's next sequence, in one transaction
    /// with its thread counters, mentions, search entries, the sender's read watermark (moved
    /// to the new message) and its `Created` event. With a request id the sender used before,
    /// stores nothing and returns the first message. `fingerprint` is
    /// [`NewMessage::fingerprint`]; it is stored keyed when encryption at rest is on.
    async fn send(
        &self,
        tenant: &TenantId,
        sender: &UserId,
        new: &NewMessage,
        fingerprint: &str,
    ) -> StoreResult<Sent>;

    /// Edits a message under `rule` in one transaction: a changed content keeps the old one
    /// as a revision and re-indexes (with `search_tokens` for an end-to-end payload), changed
    /// mentions are replaced, and the `Edited` event is recorded with `editor` as its actor.
    /// `Ok(None)` when there is no such message.
    async fn edit(
        &self,
        tenant: &TenantId,
        conversation: Uuid,
        id: Uuid,
        editor: &UserId,
        search_tokens: &[Vec<u8>],
        rule: EditRule<'_>,
    ) -> StoreResult<Option<Message>>;

    /// Deletes a message's content, revisions, reactions, mentions and search entries, keeping
    /// a tombstone, and records the `Deleted` event with `actor`; a deleted message stays as
    /// it is (no event). `Ok(None)` when there is no such message.
    async fn delete(
        &self,
        tenant: &TenantId,
        conversation: Uuid,
        id: Uuid,
        actor: &UserId,
    ) -> StoreResult<Option<Message>>;

    /// Earlier versions of a message after revision `after`, oldest first.
    async fn revisions(
        &self,
        tenant: &TenantId,
        conversation: Uuid,
        id: Uuid,
        after: i32,
        limit: u64,
    ) -> StoreResult<Vec<Revision>>;
}

/// Reactions.
#[async_trait::async_trait]
pub trait ReactionStore: Send + Sync + std::fmt::Debug {
    /// Adds (`add`) or removes a reaction, recording its event when that changed anything;
    /// returns whether it did.
    async fn react(&self, tenant: &TenantId, reaction: &Reaction, add: bool) -> StoreResult<bool>;

    /// Per message of `ids`, its reactions by emoji in first-reaction order, with whether
    /// `user` is among each emoji's users. Messages without reactions are left out.
    async fn summaries(
        &self,
        tenant: &TenantId,
        ids: &[Uuid],
        user: &UserId,
    ) -> StoreResult<HashMap<Uuid, Vec<ReactionSummary>>>;

    /// A page of a message's reactions (of one emoji, if given) after the keyset position
    /// (time, user, emoji), oldest first.
    async fn reactions(
        &self,
        tenant: &TenantId,
        message: Uuid,
        emoji: Option<&str>,
        after: Option<(DateTime<Utc>, String, String)>,
        limit: u64,
    ) -> StoreResult<Vec<Reaction>>;
}

/// Read watermarks and unread counts.
#[async_trait::async_trait]
pub trait ReadStateStore: Send + Sync + std::fmt::Debug {
    /// Moves `user`'s watermark forward to `up_to` (clamped to the latest sequence), recording
    /// the `ReadStateMoved` event when it moved; returns the state after and whether it moved.
    async fn mark_read(
        &self,
        tenant: &TenantId,
        conversation: Uuid,
        user: &UserId,
        up_to: i64,
    ) -> StoreResult<(ReadState, bool)>;

    /// Every read state of a conversation, by user.
    async fn read_states(
        &self,
        tenant: &TenantId,
        conversation: Uuid,
    ) -> StoreResult<Vec<ReadState>>;

    /// Unread figures of `user` for each of `conversations` (zeros for unknown ones).
    async fn unread(
        &self,
        tenant: &TenantId,
        user: &UserId,
        conversations: &[Uuid],
    ) -> StoreResult<HashMap<Uuid, Unread>>;
}

/// The blind index.
#[async_trait::async_trait]
pub trait SearchStore: Send + Sync + std::fmt::Debug {
    /// Messages with every term and client token of `query`, best first; `Ok(None)` when
    /// `within` passed first (the query is cancelled in the database too).
    async fn search(
        &self,
        tenant: &TenantId,
        query: &SearchQuery,
        within: Duration,
    ) -> StoreResult<Option<Vec<SearchMatch>>>;
}

/// The participant projection (maintained by `crate::jobs::membership`).
#[async_trait::async_trait]
pub trait ParticipantStore: Send + Sync + std::fmt::Debug {
    /// Those of `users` who participate in `conversation`, as of the newest event the
    /// follower applied.
    async fn participants_among(
        &self,
        tenant: &TenantId,
        conversation: Uuid,
        users: &[String],
    ) -> StoreResult<HashSet<String>>;
}

/// Attachments: their rows and their content's layout (the content itself is in
/// `crate::blobs`). Deleted attachments are invisible here but for the sweeper.
#[async_trait::async_trait]
pub trait AttachmentStore: Send + Sync + std::fmt::Debug {
    /// Attachment `id` of `tenant` and where its content is.
    async fn attachment(
        &self,
        tenant: &TenantId,
        id: Uuid,
    ) -> StoreResult<Option<(Attachment, Layout)>>;

    /// The data key to seal a new upload's content with (`None`: the current one), or that
    /// version (0: none, encryption was off). `None` with encryption off.
    async fn upload_key(
        &self,
        tenant: &TenantId,
        version: Option<u32>,
    ) -> StoreResult<Option<std::sync::Arc<DataKey>>>;

    /// Records a new upload; false when its id is taken in the tenant already.
    async fn start_upload(
        &self,
        tenant: &TenantId,
        attachment: &Attachment,
        layout: &Layout,
    ) -> StoreResult<bool>;

    /// Records `layout` (with a new segment) and `uploaded` bytes, if the upload still had
    /// `uploaded_before` bytes (false: another stream of it committed first).
    async fn add_segment(
        &self,
        tenant: &TenantId,
        id: Uuid,
        layout: &Layout,
        uploaded_before: i64,
        uploaded: i64,
    ) -> StoreResult<bool>;

    /// Moves the attachment from state `from` to `to` (and sets its content type); false when
    /// it was not in `from`.
    async fn set_state(
        &self,
        tenant: &TenantId,
        id: Uuid,
        from: AttachmentState,
        to: AttachmentState,
        content_type: Option<&str>,
    ) -> StoreResult<bool>;

    /// Marks the attachment for removal: invisible at once, its objects removed by the sweeper.
    async fn discard(&self, tenant: &TenantId, id: Uuid) -> StoreResult<()>;

    /// Attachments whose objects are to be removed (marked, or abandoned: no message carries
    /// them and nothing changed since `abandoned_before`, which marks them), with their
    /// storage keys.
    async fn sweepable(
        &self,
        abandoned_before: DateTime<Utc>,
        limit: u64,
    ) -> StoreResult<Vec<(TenantId, Uuid, String)>>;

    /// Forgets a marked attachment once its objects are gone.
    async fn forget(&self, tenant: &TenantId, id: Uuid) -> StoreResult<()>;

    /// Attachments waiting for the scanner, the longest waiting first.
    async fn unscanned(&self, limit: u64) -> StoreResult<Vec<(TenantId, Uuid)>>;
}

/// Every store trait at once, for the use cases.
pub trait Store:
    MessageStore
    + ReactionStore
    + ReadStateStore
    + SearchStore
    + ParticipantStore
    + AttachmentStore
    + ComplianceStore
{
}

impl<T> Store for T where
    T: MessageStore
        + ReactionStore
        + ReadStateStore
        + SearchStore
        + ParticipantStore
        + AttachmentStore
        + ComplianceStore
{
}

/// The SeaORM implementation of the store traits, on SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlStore {
    db: DatabaseConnection,
    keys: Keyring,
    bus: EventBus,
    sweeps: std::sync::Arc<tokio::sync::Notify>,
    sends: std::sync::Arc<batch::SendQueue>,
}

impl SqlStore {
    /// The store over `db`, sealing with `keys`, waking `bus`'s relay after each commit that
    /// recorded an event.
    pub fn new(db: DatabaseConnection, keys: Keyring, bus: EventBus) -> Self {
        Self {
            db,
            keys,
            bus,
            sweeps: std::sync::Arc::default(),
            sends: std::sync::Arc::new(batch::SendQueue::new(
                crate::config::WriteSettings::default(),
            )),
        }
    }

    /// The store with sends grouped as `settings` says.
    pub fn with_writes(mut self, settings: crate::config::WriteSettings) -> Self {
        self.sends = std::sync::Arc::new(batch::SendQueue::new(settings));
        self
    }

    /// A copy for a writer task: its own queue is never started, so the writers end when the
    /// last store that hands them sends is dropped.
    fn detached(&self) -> Self {
        Self {
            sends: std::sync::Arc::new(batch::SendQueue::new(crate::config::WriteSettings {
                writers: 1,
                max_batch: 1,
            })),
            ..self.clone()
        }
    }

    /// Notified after a commit that left attachment objects to remove (a deleted message's).
    pub fn sweeps(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.sweeps.clone()
    }

    /// The tenants' keys.
    pub fn keys(&self) -> &Keyring {
        &self.keys
    }

    /// Records `event` of `actor` within `connection`'s transaction, sealed with `key` (the
    /// tenant's current data key, read in the transaction) when it carries content.
    async fn record<C: ConnectionTrait>(
        &self,
        connection: &C,
        key: Option<&DataKey>,
        tenant: &str,
        actor: &str,
        at: DateTime<Utc>,
        event: MessageEvent<'_>,
    ) -> StoreResult<()> {
        messaging_outbox::store::record(
            connection,
            key.filter(|_| event.carries_content()),
            tenant,
            event.conversation(),
            actor,
            at,
            crate::events::payload(event),
        )
        .await?;
        Ok(())
    }
}
