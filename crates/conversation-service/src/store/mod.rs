//! Persistence of conversation-service, in its own schema (`conversation`) or SQLite file. The
//! use cases see the store traits ([`ConversationStore`], and [`ConversationTx`] for one
//! change's transaction, both [`ConversationReads`]) speaking domain types; [`SqlStore`]
//! implements them with the SeaORM queries of `queries`, the same for both backends. Rows
//! become domain values in `rows`; database errors become a [`StoreError`] once.
//!
//! Every query filters by tenant. Each change writes its audit row and its event (see
//! `messaging_outbox`) in its own transaction.

pub mod entity;
pub mod migration;
pub mod queries;
pub mod rows;

use chrono::{DateTime, Utc};
use messaging_platform::config::DatabaseSettings;
use messaging_platform::{ApiError, TenantId, UserId};
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr};
use uuid::Uuid;

use crate::domain::{AuditAction, Conversation, ConversationEvent, Kind, Participant, Role};
pub use entity::conversation::Model as ConversationRow;
pub use entity::participant::Model as ParticipantRow;

/// The default PostgreSQL schema of this service.
pub const DEFAULT_SCHEMA: &str = "conversation";

/// Connects and brings the schema up to date.
pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<DatabaseConnection> {
    messaging_platform::db::connect_and_migrate::<migration::Migrator>(settings, DEFAULT_SCHEMA)
        .await
}

/// Why a store call failed, in terms the use cases act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique key is taken (a DIRECT pair, a request id): another change won the race.
    #[error("a unique key is taken: {0}")]
    Conflict(DbErr),
    /// A stored value this code did not write (an unknown kind or role).
    #[error("{0}")]
    Corrupt(String),
    /// The database failed (unreachable ones become UNAVAILABLE).
    #[error(transparent)]
    Database(DbErr),
}

impl From<DbErr> for StoreError {
    fn from(error: DbErr) -> Self {
        if messaging_platform::db::is_unique_violation(&error) {
            Self::Conflict(error)
        } else {
            Self::Database(error)
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(error) | StoreError::Database(error) => error.into(),
            StoreError::Corrupt(detail) => ApiError::internal(anyhow::anyhow!(detail)),
        }
    }
}

/// Result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// A unique key of a conversation other than its id.
#[derive(Debug, Clone, Copy)]
pub enum ConversationKey<'a> {
    /// The DIRECT pair key.
    Direct(&'a str),
    /// The creator's idempotency key.
    Request {
        /// Who created it.
        creator: &'a str,
        /// Their request id.
        request_id: &'a str,
    },
}

/// Inserts a new conversation row.
/// How ListConversations selects by membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// Conversations the user participates in.
    Joined,
    /// Channels the user has not joined.
    Joinable,
    /// Both.
    All,
}

/// How ListConversations selects by archived state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Archived {
    /// Not archived.
    Active,
    /// Archived only.
    Archived,
    /// Both.
    All,
}

/// The filters of a conversation listing.
#[derive(Debug, Clone)]
pub struct ConversationFilter {
    /// Kinds to include; empty means all.
    pub kinds: Vec<Kind>,
    /// Membership selection.
    pub membership: Membership,
    /// Archived-state selection.
    pub archived: Archived,
}

/// Reads of conversations and participants, the same in and out of a change's transaction.
#[async_trait::async_trait]
pub trait ConversationReads: Send + Sync + std::fmt::Debug {
    /// A conversation by id, deleted or not; `lock` holds its row (PostgreSQL) until the
    /// transaction ends, so concurrent changes to one conversation apply one after the other.
    async fn conversation(
        &self,
        tenant: &TenantId,
        id: Uuid,
        lock: bool,
    ) -> StoreResult<Option<Conversation>>;

    /// A conversation by one of its unique keys.
    async fn conversation_by(
        &self,
        tenant: &TenantId,
        key: ConversationKey<'_>,
    ) -> StoreResult<Option<Conversation>>;

    /// A user's participation.
    async fn participant(
        &self,
        tenant: &TenantId,
        conversation: Uuid,
        user: &str,
    ) -> StoreResult<Option<Participant>>;

    /// The participant with `role` (the owner, say).
    async fn participant_with_role(
        &self,
        tenant: &TenantId,
        conversation: Uuid,
        role: Role,
    ) -> StoreResult<Option<Participant>>;

    /// Every participant's user id.
    async fn participant_ids(
        &self,
        tenant: &TenantId,
        conversation: Uuid,
    ) -> StoreResult<Vec<String>>;

    /// One page of live conversations visible to `user`, newest activity first, after the
    /// keyset position (last activity, id).
    async fn conversations(
        &self,
        tenant: &TenantId,
        user: &UserId,
        filter: &ConversationFilter,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u64,
    ) -> StoreResult<Vec<Conversation>>;

    /// `user`'s participation in each of `conversations` it participates in.
    async fn roles_of(
        &self,
        tenant: &TenantId,
        user: &UserId,
        conversations: &[Uuid],
    ) -> StoreResult<Vec<Participant>>;

    /// One page of a conversation's participants (of `roles`, all when empty) in join order,
    /// after the keyset position (join time, user id).
    async fn participants(
        &self,
        tenant: &TenantId,
        conversation: Uuid,
        roles: &[Role],
        after: Option<(DateTime<Utc>, String)>,
        limit: u64,
    ) -> StoreResult<Vec<Participant>>;
}

/// One change: its writes, in one transaction that [`ConversationTx::commit`] ends (dropped
/// without it, the change rolls back).
#[async_trait::async_trait]
pub trait ConversationTx: ConversationReads {
    /// Stores a new conversation ([`StoreError::Conflict`] when its DIRECT pair or request id
    /// is taken).
    async fn insert_conversation(&self, conversation: &Conversation) -> StoreResult<()>;

    /// Writes every field of a conversation; returns it as stored.
    async fn save_conversation(&self, conversation: &Conversation) -> StoreResult<Conversation>;

    /// Stores new participants.
    async fn insert_participants(&self, participants: &[Participant]) -> StoreResult<()>;

    /// Changes a participant's role; returns it as stored.
    async fn set_role(
        &self,
        participant: &Participant,
        role: Role,
        updater: &UserId,
        at: DateTime<Utc>,
    ) -> StoreResult<Participant>;

    /// Removes a participant.
    async fn delete_participant(&self, participant: &Participant) -> StoreResult<()>;

    /// Writes an audit row: `actor` did `action` (to `subject`) with `details`.
    async fn audit(
        &self,
        conversation: &Conversation,
        actor: &UserId,
        action: AuditAction,
        subject: Option<&str>,
        details: serde_json::Value,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;

    /// Records `event` of `actor` in the outbox.
    async fn event(
        &self,
        conversation: &Conversation,
        actor: &UserId,
        at: DateTime<Utc>,
        event: &ConversationEvent<'_>,
    ) -> StoreResult<()>;

    /// Purges at most `limit` conversations deleted before `deleted_before` (oldest deletion
    /// first), with their participants and audit rows; returns them as they were.
    async fn purge_deleted(
        &self,
        deleted_before: DateTime<Utc>,
        limit: u64,
    ) -> StoreResult<Vec<Conversation>>;

    /// Commits the change.
    async fn commit(self: Box<Self>) -> StoreResult<()>;
}

/// The conversation store.
#[async_trait::async_trait]
pub trait ConversationStore: ConversationReads {
    /// Begins one change (on SQLite, with the write lock taken at once).
    async fn begin(&self) -> StoreResult<Box<dyn ConversationTx>>;

    /// At most `limit` of `user`'s participations, in any conversation of the tenant (deleted
    /// and archived ones included).
    async fn participations(
        &self,
        tenant: &TenantId,
        user: &str,
        limit: u64,
    ) -> StoreResult<Vec<Participant>>;

    /// The position of the newest committed event, after stamping any committed event that
    /// has none yet (then `true`: the relay has new positions to publish). When none waits,
    /// which is the common case, that is two reads and no write.
    async fn event_head(&self) -> StoreResult<(i64, bool)>;
}

/// The SeaORM implementation of [`ConversationStore`], on SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlStore {
    db: DatabaseConnection,
}

impl SqlStore {
    /// The store over `db`.
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

/// [`ConversationTx`] on a SeaORM transaction.
#[derive(Debug)]
pub struct SqlTx {
    tx: DatabaseTransaction,
}

/// Implements [`ConversationReads`] for a type whose field `$field` is a SeaORM connection.
macro_rules! sql_reads {
    ($type:ty, $field:ident) => {
        #[async_trait::async_trait]
        impl ConversationReads for $type {
            async fn conversation(
                &self,
                tenant: &TenantId,
                id: Uuid,
                lock: bool,
            ) -> StoreResult<Option<Conversation>> {
                queries::find_conversation(&self.$field, tenant, id, lock)
                    .await?
                    .map(rows::conversation)
                    .transpose()
            }

            async fn conversation_by(
                &self,
                tenant: &TenantId,
                key: ConversationKey<'_>,
            ) -> StoreResult<Option<Conversation>> {
                queries::find_conversation_by(&self.$field, tenant, key)
                    .await?
                    .map(rows::conversation)
                    .transpose()
            }

            async fn participant(
                &self,
                tenant: &TenantId,
                conversation: Uuid,
                user: &str,
            ) -> StoreResult<Option<Participant>> {
                queries::find_participant(&self.$field, tenant, conversation, user)
                    .await?
                    .map(rows::participant)
                    .transpose()
            }

            async fn participant_with_role(
                &self,
                tenant: &TenantId,
                conversation: Uuid,
                role: Role,
            ) -> StoreResult<Option<Participant>> {
                queries::find_participant_with_role(&self.$field, tenant, conversation, role)
                    .await?
                    .map(rows::participant)
                    .transpose()
            }

            async fn participant_ids(
                &self,
                tenant: &TenantId,
                conversation: Uuid,
            ) -> StoreResult<Vec<String>> {
                Ok(queries::participant_ids(&self.$field, tenant, conversation).await?)
            }

            async fn conversations(
                &self,
                tenant: &TenantId,
                user: &UserId,
                filter: &ConversationFilter,
                after: Option<(DateTime<Utc>, Uuid)>,
                limit: u64,
            ) -> StoreResult<Vec<Conversation>> {
                queries::list_conversations(&self.$field, tenant, user, filter, after, limit)
                    .await?
                    .into_iter()
                    .map(rows::conversation)
                    .collect()
            }

            async fn roles_of(
                &self,
                tenant: &TenantId,
                user: &UserId,
                conversations: &[Uuid],
            ) -> StoreResult<Vec<Participant>> {
                queries::roles_of(&self.$field, tenant, user, conversations.to_vec())
                    .await?
                    .into_iter()
                    .map(rows::participant)
                    .collect()
            }

            async fn participants(
                &self,
                tenant: &TenantId,
                conversation: Uuid,
                roles: &[Role],
                after: Option<(DateTime<Utc>, String)>,
                limit: u64,
            ) -> StoreResult<Vec<Participant>> {
                queries::list_participants(&self.$field, tenant, conversation, roles, after, limit)
                    .await?
                    .into_iter()
                    .map(rows::participant)
                    .collect()
            }
        }
    };
}

sql_reads!(SqlStore, db);
sql_reads!(SqlTx, tx);

#[async_trait::async_trait]
impl ConversationStore for SqlStore {
    async fn begin(&self) -> StoreResult<Box<dyn ConversationTx>> {
        let tx = messaging_platform::db::begin_write(&self.db).await?;
        Ok(Box::new(SqlTx { tx }))
    }

    async fn participations(
        &self,
        tenant: &TenantId,
        user: &str,
        limit: u64,
    ) -> StoreResult<Vec<Participant>> {
        queries::participations(&self.db, tenant, user, limit)
            .await?
            .into_iter()
            .map(rows::participant)
            .collect()
    }

    async fn event_head(&self) -> StoreResult<(i64, bool)> {
        use messaging_outbox::store::{has_unstamped, relay_state, stamp_all};
        let stamped = has_unstamped(&self.db).await? && stamp_all(&self.db).await? > 0;
        let (head, _) = relay_state(&self.db).await?;
        Ok((head, stamped))
    }
}

#[async_trait::async_trait]
impl ConversationTx for SqlTx {
    async fn insert_conversation(&self, conversation: &Conversation) -> StoreResult<()> {
        Ok(queries::insert_conversation(&self.tx, rows::conversation_row(conversation)).await?)
    }

    async fn save_conversation(&self, conversation: &Conversation) -> StoreResult<Conversation> {
        rows::conversation(
            queries::save_conversation(&self.tx, rows::conversation_row(conversation)).await?,
        )
    }

    async fn insert_participants(&self, participants: &[Participant]) -> StoreResult<()> {
        let rows = participants.iter().map(rows::participant_row).collect();
        Ok(queries::insert_participants(&self.tx, rows).await?)
    }

    async fn set_role(
        &self,
        participant: &Participant,
        role: Role,
        updater: &UserId,
        at: DateTime<Utc>,
    ) -> StoreResult<Participant> {
        let row = rows::participant_row(participant);
        rows::participant(queries::set_role(&self.tx, &row, role, updater, at).await?)
    }

    async fn delete_participant(&self, participant: &Participant) -> StoreResult<()> {
        Ok(queries::delete_participant(&self.tx, &rows::participant_row(participant)).await?)
    }

    async fn audit(
        &self,
        conversation: &Conversation,
        actor: &UserId,
        action: AuditAction,
        subject: Option<&str>,
        details: serde_json::Value,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let row = entity::audit_log::Model {
            id: Uuid::now_v7(),
            tenant_id: conversation.tenant_id.clone(),
            conversation_id: conversation.id,
            actor_id: actor.to_string(),
            action: action.as_str().to_owned(),
            subject_id: subject.map(str::to_owned),
            details: details.to_string(),
            occurred_at: at,
        };
        Ok(queries::insert_audit(&self.tx, row).await?)
    }

    async fn event(
        &self,
        conversation: &Conversation,
        actor: &UserId,
        at: DateTime<Utc>,
        event: &ConversationEvent<'_>,
    ) -> StoreResult<()> {
        messaging_outbox::store::record(
            &self.tx,
            None,
            &conversation.tenant_id,
            conversation.id,
            actor,
            at,
            crate::events::payload(event),
        )
        .await?;
        Ok(())
    }

    async fn purge_deleted(
        &self,
        deleted_before: DateTime<Utc>,
        limit: u64,
    ) -> StoreResult<Vec<Conversation>> {
        queries::purge_deleted(&self.tx, deleted_before, limit)
            .await?
            .into_iter()
            .map(rows::conversation)
            .collect()
    }

    async fn commit(self: Box<Self>) -> StoreResult<()> {
        Ok(self.tx.commit().await?)
    }
}
